//! Typed access to the pinned maps, and conversions between the model and the map layouts.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::Path,
};

use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use anyhow::Context;
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use lvs_common::{
    classify::{ClassRuleSet, CTL_PORT0_SERVICES, CTL_RULE_SET, REWRITE_GRACE_MS},
    counters::{Counter, COUNTER_COUNT},
    flow::{ConnEntry, FlowKey},
    map_names,
    persist::Template,
    sysctl::Sysctls,
    service::{
        DestConf, DestCounters, HashTable, MhTable, LblcEntry, LblcKey, LblcrEntry, SchedState, ServiceConf, SvcKey, MAX_DESTS,
    },
    stats::IpvsStats,
    AF_INET, AF_INET6,
};

use crate::model::{DestSpec, Forward, Protocol, ServiceKey};

/// Handles on every map the control plane writes or reads.
pub struct Tables {
    pub svc_index: HashMap<MapData, SvcKey, u32>,
    pub services: Array<MapData, ServiceConf>,
    pub sched_state: Array<MapData, SchedState>,
    pub dests: Array<MapData, DestConf>,
    pub conns: HashMap<MapData, FlowKey, ConnEntry>,
    pub timeouts: Array<MapData, u32>,
    pub stats: PerCpuArray<MapData, u64>,
    pub dest_counters: Array<MapData, DestCounters>,
    /// The same map mapped into memory, for atomic updates of single fields.
    pub counter_memory: CounterMemory,
    pub lblc_cache: HashMap<MapData, LblcKey, LblcEntry>,
    pub lblcr_cache: HashMap<MapData, LblcKey, LblcrEntry>,
    pub hash_tables: Array<MapData, HashTable>,
    pub mh_tables: HashMap<MapData, u32, MhTable>,
    pub templates: HashMap<MapData, FlowKey, Template>,
    pub sysctls: Array<MapData, Sysctls>,
    /// Traffic statistics, per CPU (`lvs_common::stats` has the layout).
    pub ipvs_stats: PerCpuArray<MapData, IpvsStats>,
    /// Their zero points.
    pub ipvs_stats_zero: Array<MapData, IpvsStats>,
    /// The classifier's two rule sets and the lookup control words (`lvs_common::classify`).
    pub classifier: Array<MapData, ClassRuleSet>,
    pub lookup_ctl: Array<MapData, u32>,
    /// The address prefilter's bitmap (`lvs_common::prefilter`).
    pub addr_filter: Array<MapData, u64>,
    /// When this process last flipped the live classifier set.
    classifier_flipped: Option<std::time::Instant>,
}

fn open(dir: &Path, name: &str) -> anyhow::Result<Map> {
    let path = dir.join(name);
    let data =
        MapData::from_pin(&path).with_context(|| format!("opening pinned map {}", path.display()))?;
    Ok(Map::from_map_data(data)?)
}

impl Tables {
    /// Opens the maps pinned in `dir` (the loader pins every map there).
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        Ok(Tables {
            svc_index: HashMap::try_from(open(dir, map_names::SVC_INDEX)?)?,
            services: Array::try_from(open(dir, map_names::SERVICES)?)?,
            sched_state: Array::try_from(open(dir, map_names::SCHED_STATE)?)?,
            dests: Array::try_from(open(dir, map_names::DESTS)?)?,
            conns: HashMap::try_from(open(dir, map_names::CONNS)?)?,
            timeouts: Array::try_from(open(dir, map_names::TIMEOUTS)?)?,
            stats: PerCpuArray::try_from(open(dir, map_names::STATS)?)?,
            dest_counters: Array::try_from(open(dir, map_names::DEST_COUNTERS)?)?,
            counter_memory: CounterMemory::map(&MapData::from_pin(dir.join(map_names::DEST_COUNTERS))?)?,
            lblc_cache: HashMap::try_from(open(dir, map_names::LBLC_CACHE)?)?,
            lblcr_cache: HashMap::try_from(open(dir, map_names::LBLCR_CACHE)?)?,
            hash_tables: Array::try_from(open(dir, map_names::HASH_TABLES)?)?,
            mh_tables: HashMap::try_from(open(dir, map_names::MH_TABLES)?)?,
            templates: HashMap::try_from(open(dir, map_names::TEMPLATES)?)?,
            sysctls: Array::try_from(open(dir, map_names::SYSCTLS)?)?,
            ipvs_stats: PerCpuArray::try_from(open(dir, map_names::IPVS_STATS)?)?,
            ipvs_stats_zero: Array::try_from(open(dir, map_names::IPVS_STATS_ZERO)?)?,
            classifier: Array::try_from(open(dir, map_names::CLASSIFIER)?)?,
            lookup_ctl: Array::try_from(open(dir, map_names::LOOKUP_CTL)?)?,
            addr_filter: Array::try_from(open(dir, map_names::ADDR_FILTER)?)?,
            classifier_flipped: None,
        })
    }

    /// Takes the maps out of a freshly loaded, unpinned object (benchmarks).
    pub fn from_ebpf(ebpf: &mut aya::Ebpf) -> anyhow::Result<Self> {
        let mut take = |name: &str| {
            ebpf.take_map(name).with_context(|| format!("map {name} missing from the object"))
        };
        let counters = take(map_names::DEST_COUNTERS)?;
        let Map::Array(data) = &counters else { anyhow::bail!("DEST_COUNTERS is not an array") };
        let counter_memory = CounterMemory::map(data)?;
        Ok(Tables {
            svc_index: HashMap::try_from(take(map_names::SVC_INDEX)?)?,
            services: Array::try_from(take(map_names::SERVICES)?)?,
            sched_state: Array::try_from(take(map_names::SCHED_STATE)?)?,
            dests: Array::try_from(take(map_names::DESTS)?)?,
            conns: HashMap::try_from(take(map_names::CONNS)?)?,
            timeouts: Array::try_from(take(map_names::TIMEOUTS)?)?,
            stats: PerCpuArray::try_from(take(map_names::STATS)?)?,
            dest_counters: Array::try_from(counters)?,
            counter_memory,
            lblc_cache: HashMap::try_from(take(map_names::LBLC_CACHE)?)?,
            lblcr_cache: HashMap::try_from(take(map_names::LBLCR_CACHE)?)?,
            hash_tables: Array::try_from(take(map_names::HASH_TABLES)?)?,
            mh_tables: HashMap::try_from(take(map_names::MH_TABLES)?)?,
            templates: HashMap::try_from(take(map_names::TEMPLATES)?)?,
            sysctls: Array::try_from(take(map_names::SYSCTLS)?)?,
            ipvs_stats: PerCpuArray::try_from(take(map_names::IPVS_STATS)?)?,
            ipvs_stats_zero: Array::try_from(take(map_names::IPVS_STATS_ZERO)?)?,
            classifier: Array::try_from(take(map_names::CLASSIFIER)?)?,
            lookup_ctl: Array::try_from(take(map_names::LOOKUP_CTL)?)?,
            addr_filter: Array::try_from(take(map_names::ADDR_FILTER)?)?,
            classifier_flipped: None,
        })
    }

    /// Sets an address's bit in the prefilter (`lvs_common::prefilter`), before anything that
    /// makes the dataplane act on it is published. Bits are never cleared: connections to a
    /// deleted service or server outlive it, and a stale bit only costs the full lookups.
    /// IPv6 addresses have no filter (their programs do not consult one).
    pub fn filter_addr(&mut self, addr: IpAddr) -> anyhow::Result<()> {
        let IpAddr::V4(a) = addr else { return Ok(()) };
        let (word, mask) = lvs_common::prefilter::word_of(u32::from_ne_bytes(a.octets()));
        let old = self.addr_filter.get(&word, 0).context("reading ADDR_FILTER")?;
        if old & mask == 0 {
            self.addr_filter.set(word, old | mask, 0).context("writing ADDR_FILTER")?;
        }
        Ok(())
    }

    /// Turns the prefilter on: every address the maps act on has its bit.
    pub fn filter_ready(&mut self) -> anyhow::Result<()> {
        self.addr_filter.set(lvs_common::prefilter::FILTER_READY, 1, 0).context("writing ADDR_FILTER")
    }

    /// Capacity of the connection table.
    pub fn conn_capacity(dir: &Path) -> anyhow::Result<u32> {
        let data = MapData::from_pin(dir.join(map_names::CONNS))?;
        Ok(data.info()?.max_entries())
    }

    pub fn write_timeouts(&mut self, timeouts: &[u32; 12]) -> anyhow::Result<()> {
        for (i, t) in timeouts.iter().enumerate() {
            self.timeouts.set(i as u32, *t, 0)?;
        }
        Ok(())
    }

    /// Every verdict counter, summed over CPUs.
    pub fn counters(&self) -> anyhow::Result<Vec<(Counter, u64)>> {
        let mut out = Vec::with_capacity(COUNTER_COUNT as usize);
        for c in Counter::ALL {
            let per_cpu = self.stats.get(&(c as u32), 0)?;
            out.push((c, per_cpu.iter().sum()));
        }
        Ok(out)
    }

    /// The counters of stats slot `idx` summed over CPUs, without its zero point.
    fn raw_stats(&self, idx: u32) -> IpvsStats {
        match self.ipvs_stats.get(&idx, 0) {
            Ok(per_cpu) => per_cpu.iter().fold(IpvsStats::default(), |acc, s| acc.add(s)),
            Err(_) => IpvsStats::default(),
        }
    }

    /// The traffic statistics of stats slot `idx` since it was last zeroed.
    pub fn stats(&self, idx: u32) -> IpvsStats {
        let zero = self.ipvs_stats_zero.get(&idx, 0).unwrap_or_default();
        self.raw_stats(idx).since(&zero)
    }

    /// Zeroes stats slot `idx` by making its current counters the zero point (the dataplane's
    /// per-CPU counters are never written from here: a write could undo a concurrent add).
    pub fn zero_stats(&mut self, idx: u32) -> anyhow::Result<()> {
        let now = self.raw_stats(idx);
        self.ipvs_stats_zero.set(idx, now, 0)?;
        Ok(())
    }

    /// Forgets service slot `svc_id`'s scheduler caches (lblc, lblcr), as the kernel's
    /// `init_service`/`done_service` start and end with an empty table.
    pub fn flush_sched_cache(&mut self, svc_id: u32) {
        let keys: Vec<LblcKey> =
            self.lblc_cache.keys().filter_map(Result::ok).filter(|k| k.svc_id == svc_id).collect();
        for k in keys {
            let _ = self.lblc_cache.remove(&k);
        }
        let keys: Vec<LblcKey> =
            self.lblcr_cache.keys().filter_map(Result::ok).filter(|k| k.svc_id == svc_id).collect();
        for k in keys {
            let _ = self.lblcr_cache.remove(&k);
        }
    }

    /// Replaces the classifier's rules in one step for the dataplane: the idle set is written
    /// completely, then the live-set word flips to it (an empty rule set turns the classifier
    /// off). The set being rewritten went idle at the previous flip; if that was less than
    /// `REWRITE_GRACE_MS` ago, this waits out the rest, so no packet can still be walking it.
    pub fn write_classifier(&mut self, rules: &ClassRuleSet) -> anyhow::Result<()> {
        let live = self.lookup_ctl.get(&CTL_RULE_SET, 0)?;
        if rules.count == 0 {
            if live != 0 {
                self.lookup_ctl.set(CTL_RULE_SET, 0, 0)?;
                self.classifier_flipped = Some(std::time::Instant::now());
            }
            return Ok(());
        }
        // Live set 0 (word 1) -> write set 1; live set 1 or none -> write set 0.
        let idle = if live == 1 { 1 } else { 0 };
        if live != 0 && self.classifier.get(&(live - 1), 0)? == *rules {
            return Ok(());
        }
        if let Some(t) = self.classifier_flipped {
            let grace = std::time::Duration::from_millis(REWRITE_GRACE_MS);
            if let Some(rest) = grace.checked_sub(t.elapsed()) {
                std::thread::sleep(rest);
            }
        }
        self.classifier.set(idle, *rules, 0)?;
        self.lookup_ctl.set(CTL_RULE_SET, idle + 1, 0)?;
        self.classifier_flipped = Some(std::time::Instant::now());
        Ok(())
    }

    /// The live classifier rules (empty when the classifier is off).
    pub fn classifier_rules(&self) -> anyhow::Result<ClassRuleSet> {
        match self.lookup_ctl.get(&CTL_RULE_SET, 0)? {
            0 => Ok(ClassRuleSet::default()),
            n => Ok(self.classifier.get(&(n - 1), 0)?),
        }
    }

    /// Tells the dataplane how many port-0 address services exist (it tries the port-0
    /// fallback lookup only when some do).
    pub fn set_port0_services(&mut self, n: u32) -> anyhow::Result<()> {
        Ok(self.lookup_ctl.set(CTL_PORT0_SERVICES, n, 0)?)
    }

    /// The connection counters of real server slot `dest_id` (zero if unreadable).
    pub fn dest_counters(&self, dest_id: u32) -> DestCounters {
        self.dest_counters.get(&dest_id, 0).unwrap_or_default()
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock the dataplane reads (`bpf_ktime_get_coarse_ns`
/// is its coarse form, at most one tick behind).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// An address in the maps' layout: network order, IPv4 in word 0.
pub fn addr_words(addr: IpAddr) -> ([u32; 4], u8) {
    match addr {
        IpAddr::V4(a) => ([u32::from_ne_bytes(a.octets()), 0, 0, 0], AF_INET),
        IpAddr::V6(a) => {
            let o = a.octets();
            let mut w = [0u32; 4];
            for (i, chunk) in o.chunks_exact(4).enumerate() {
                w[i] = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            }
            (w, AF_INET6)
        }
    }
}

/// The inverse of [`addr_words`].
pub fn words_addr(w: [u32; 4], family: u8) -> IpAddr {
    if family == AF_INET6 {
        let mut o = [0u8; 16];
        for (i, word) in w.iter().enumerate() {
            o[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
        }
        IpAddr::from(o)
    } else {
        IpAddr::V4(Ipv4Addr::from(w[0].to_ne_bytes()))
    }
}

/// The `SVC_INDEX` key of an address-based service.
pub fn svc_key(key: &ServiceKey) -> anyhow::Result<SvcKey> {
    match key {
        ServiceKey::Addr { protocol, addr, port } => {
            let (addr, family) = addr_words(*addr);
            Ok(SvcKey { addr, port: port.to_be(), proto: protocol.number(), family })
        }
        ServiceKey::Fwmark { mark, ipv6 } => {
            Ok(SvcKey::fwmark(*mark, if *ipv6 { AF_INET6 } else { AF_INET }))
        }
    }
}

/// The model key of a `SVC_INDEX` key.
pub fn model_key(k: &SvcKey) -> Option<ServiceKey> {
    if k.is_fwmark() {
        return Some(ServiceKey::Fwmark { mark: k.addr[0], ipv6: k.family == AF_INET6 });
    }
    let protocol = match k.proto {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        _ => return None,
    };
    Some(ServiceKey::Addr {
        protocol,
        addr: words_addr(k.addr, k.family),
        port: u16::from_be(k.port),
    })
}

/// A real server in the map layout.
pub fn dest_conf(d: &DestSpec, svc_id: u32, flags: u32) -> DestConf {
    let (addr, family) = addr_words(d.addr);
    DestConf {
        addr,
        port: d.port.to_be(),
        family,
        fwd: d.forward.number(),
        weight: d.weight,
        flags,
        u_threshold: d.u_threshold,
        l_threshold: d.l_threshold,
        svc_id,
    }
}

/// The model form of a `DESTS` entry.
pub fn dest_spec(c: &DestConf) -> DestSpec {
    DestSpec {
        addr: words_addr(c.addr, c.family),
        port: u16::from_be(c.port),
        forward: Forward::from_number(c.fwd).unwrap_or(Forward::Masq),
        weight: c.weight,
        u_threshold: c.u_threshold,
        l_threshold: c.l_threshold,
    }
}

/// The `CONNS_OUT` key of a NAT connection (reply direction: real server -> client).
pub fn out_key(in_key: &FlowKey, e: &ConnEntry) -> FlowKey {
    FlowKey {
        src: e.daddr,
        dst: in_key.src,
        sport: e.dport,
        dport: in_key.sport,
        proto: in_key.proto,
        family: in_key.family,
        _pad: [0; 2],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_in_network_order() {
        let a: IpAddr = "192.0.2.11".parse().unwrap();
        let (w, f) = addr_words(a);
        assert_eq!(w[0].to_ne_bytes(), [192, 0, 2, 11]);
        assert_eq!(words_addr(w, f), a);
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let (w, f) = addr_words(b);
        assert_eq!(words_addr(w, f), b);
    }

    #[test]
    fn ports_are_stored_as_they_sit_in_the_packet() {
        let k = svc_key(&ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: "203.0.113.10".parse().unwrap(),
            port: 80,
        })
        .unwrap();
        assert_eq!(k.port.to_ne_bytes(), [0, 80]);
        assert_eq!(model_key(&k).unwrap().port(), 80);
    }
}

/// `DEST_COUNTERS`, mapped into our memory (the map is created `BPF_F_MMAPABLE`), so that
/// userspace changes single counters atomically with respect to the dataplane's atomic adds.
/// A map update of the whole value would overwrite adds made meanwhile.
pub struct CounterMemory {
    base: *mut DestCounters,
    len: usize,
}

// SAFETY: the mapping is shared memory accessed only through atomics.
unsafe impl Send for CounterMemory {}
unsafe impl Sync for CounterMemory {}

impl CounterMemory {
    pub fn map(data: &MapData) -> anyhow::Result<Self> {
        let len = MAX_DESTS as usize * std::mem::size_of::<DestCounters>();
        // SAFETY: mapping a BPF array map's fd as the kernel documents (offset 0, MAP_SHARED).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            anyhow::bail!("mmap of {}: {}", map_names::DEST_COUNTERS, std::io::Error::last_os_error());
        }
        Ok(CounterMemory { base: p.cast(), len })
    }

    fn slot(&self, dest_id: u32) -> Option<*mut DestCounters> {
        // SAFETY: in bounds of the mapping.
        (dest_id < MAX_DESTS).then(|| unsafe { self.base.add(dest_id as usize) })
    }

    /// Takes one connection's count away from its real server; returns the server's total
    /// (active + inactive) afterwards.
    pub fn uncount(&self, e: &ConnEntry) -> Option<u64> {
        let c = self.slot(e.dest_id)?;
        // SAFETY: 8-byte aligned u64s in shared memory that everyone updates atomically.
        unsafe {
            let (dec, other) = if e.active != 0 {
                (&raw mut (*c).active, &raw mut (*c).inactive)
            } else {
                (&raw mut (*c).inactive, &raw mut (*c).active)
            };
            let after = AtomicU64::from_ptr(dec).fetch_sub(1, AtomicOrdering::Relaxed).wrapping_sub(1);
            Some(after.wrapping_add(AtomicU64::from_ptr(other).load(AtomicOrdering::Relaxed)))
        }
    }

    /// Counts one connection on its real server as the dataplane does for a new one (a sync
    /// backup installing a received connection).
    pub fn count(&self, dest_id: u32, active: bool) {
        let Some(c) = self.slot(dest_id) else { return };
        // SAFETY: as in `uncount`.
        unsafe {
            let p = if active { &raw mut (*c).active } else { &raw mut (*c).inactive };
            AtomicU64::from_ptr(p).fetch_add(1, AtomicOrdering::Relaxed);
        }
    }

    /// Counts one persistence template on real server `dest_id` (PersistConn).
    pub fn count_template(&self, dest_id: u32) {
        let Some(c) = self.slot(dest_id) else { return };
        // SAFETY: as in `uncount`.
        unsafe { AtomicU64::from_ptr(&raw mut (*c).persist).fetch_add(1, AtomicOrdering::Relaxed) };
    }

    /// Takes one persistence template away from real server `dest_id` (PersistConn).
    pub fn uncount_template(&self, dest_id: u32) {
        let Some(c) = self.slot(dest_id) else { return };
        // SAFETY: as in `uncount`.
        unsafe { AtomicU64::from_ptr(&raw mut (*c).persist).fetch_sub(1, AtomicOrdering::Relaxed) };
    }

    /// Every connection counted on any real server: the number of entries in the connection
    /// table (each counts in exactly one ActiveConn/InActConn), without walking it.
    pub fn total_connections(&self) -> u64 {
        let mut total = 0u64;
        for i in 0..MAX_DESTS {
            let c = self.slot(i).expect("in range");
            // SAFETY: as in `uncount`.
            unsafe {
                total = total
                    .wrapping_add(AtomicU64::from_ptr(&raw mut (*c).active).load(AtomicOrdering::Relaxed))
                    .wrapping_add(AtomicU64::from_ptr(&raw mut (*c).inactive).load(AtomicOrdering::Relaxed));
            }
        }
        // A transiently negative sum (a decrement seen before its increment) reads as 0.
        if total > i64::MAX as u64 { 0 } else { total }
    }

    /// Clears real server `dest_id`'s OVERLOAD mark.
    pub fn clear_overload(&self, dest_id: u32) {
        self.clear_overload_if(dest_id, |_| true);
    }

    /// Clears real server `dest_id`'s OVERLOAD mark if it is set and `clear(total)` says so.
    pub fn clear_overload_if(&self, dest_id: u32, clear: impl Fn(u64) -> bool) {
        let Some(c) = self.slot(dest_id) else { return };
        // SAFETY: as in `uncount`.
        unsafe {
            let o = AtomicU64::from_ptr(&raw mut (*c).overload);
            if o.load(AtomicOrdering::Relaxed) == 0 {
                return;
            }
            let total = AtomicU64::from_ptr(&raw mut (*c).active)
                .load(AtomicOrdering::Relaxed)
                .wrapping_add(AtomicU64::from_ptr(&raw mut (*c).inactive).load(AtomicOrdering::Relaxed));
            if clear(total) {
                o.store(0, AtomicOrdering::Relaxed);
            }
        }
    }
}

impl Drop for CounterMemory {
    fn drop(&mut self) {
        // SAFETY: unmapping what `map` mapped.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}
