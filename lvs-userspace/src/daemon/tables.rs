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
    stats::{IpvsStats, STATS_SLOTS},
    AF_INET, AF_INET6,
};

use crate::model::{DestSpec, Forward, Protocol, ServiceKey, TunType};

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
    /// The Call-IDs of sip persistence templates (same keys as `templates`).
    pub sip_callids: HashMap<MapData, FlowKey, lvs_common::sip::CallId>,
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

/// A pinned map of the dataplane by name (shared by every part of lvsd that opens the pins).
pub(crate) fn open_pinned(dir: &Path, name: &str) -> anyhow::Result<Map> {
    let path = dir.join(name);
    let data =
        MapData::from_pin(&path).with_context(|| format!("opening pinned map {}", path.display()))?;
    Ok(Map::from_map_data(data)?)
}

impl Tables {
    /// Opens the maps pinned in `dir` (the loader pins every map there).
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        Ok(Tables {
            svc_index: HashMap::try_from(open_pinned(dir, map_names::SVC_INDEX)?)?,
            services: Array::try_from(open_pinned(dir, map_names::SERVICES)?)?,
            sched_state: Array::try_from(open_pinned(dir, map_names::SCHED_STATE)?)?,
            dests: Array::try_from(open_pinned(dir, map_names::DESTS)?)?,
            conns: HashMap::try_from(open_pinned(dir, map_names::CONNS)?)?,
            timeouts: Array::try_from(open_pinned(dir, map_names::TIMEOUTS)?)?,
            stats: PerCpuArray::try_from(open_pinned(dir, map_names::STATS)?)?,
            dest_counters: Array::try_from(open_pinned(dir, map_names::DEST_COUNTERS)?)?,
            counter_memory: CounterMemory::map(&MapData::from_pin(dir.join(map_names::DEST_COUNTERS))?)?,
            lblc_cache: HashMap::try_from(open_pinned(dir, map_names::LBLC_CACHE)?)?,
            lblcr_cache: HashMap::try_from(open_pinned(dir, map_names::LBLCR_CACHE)?)?,
            hash_tables: Array::try_from(open_pinned(dir, map_names::HASH_TABLES)?)?,
            mh_tables: HashMap::try_from(open_pinned(dir, map_names::MH_TABLES)?)?,
            templates: HashMap::try_from(open_pinned(dir, map_names::TEMPLATES)?)?,
            sip_callids: HashMap::try_from(open_pinned(dir, map_names::SIP_CALLIDS)?)?,
            sysctls: Array::try_from(open_pinned(dir, map_names::SYSCTLS)?)?,
            ipvs_stats: PerCpuArray::try_from(open_pinned(dir, map_names::IPVS_STATS)?)?,
            ipvs_stats_zero: Array::try_from(open_pinned(dir, map_names::IPVS_STATS_ZERO)?)?,
            classifier: Array::try_from(open_pinned(dir, map_names::CLASSIFIER)?)?,
            lookup_ctl: Array::try_from(open_pinned(dir, map_names::LOOKUP_CTL)?)?,
            addr_filter: Array::try_from(open_pinned(dir, map_names::ADDR_FILTER)?)?,
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
            sip_callids: HashMap::try_from(take(map_names::SIP_CALLIDS)?)?,
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

    /// The traffic statistics of every stats slot since it was last zeroed, read in a few
    /// batched syscalls (`BPF_MAP_LOOKUP_BATCH`) instead of two lookups per slot: what a full
    /// listing and the rate estimator need at 10 000 services x 10 real servers. Falls back
    /// to one lookup per slot on a kernel without batch lookups of arrays (before 5.6).
    pub fn stats_snapshot(&self) -> StatsSnapshot {
        match self.read_stats_batched() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "batched stats lookup unavailable; reading slot by slot");
                StatsSnapshot { stats: (0..STATS_SLOTS).map(|i| self.stats(i)).collect() }
            }
        }
    }

    fn read_stats_batched(&self) -> std::io::Result<StatsSnapshot> {
        use aya::maps::IterableMap;
        const SIZE: usize = std::mem::size_of::<IpvsStats>();
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        let per_cpu = array_batch(self.ipvs_stats.map().fd().as_fd().as_raw_fd(), STATS_SLOTS, SIZE * cpus)?;
        let zero = array_batch(self.ipvs_stats_zero.map().fd().as_fd().as_raw_fd(), STATS_SLOTS, SIZE)?;
        let stats = per_cpu
            .chunks_exact(SIZE * cpus)
            .zip(zero.chunks_exact(SIZE))
            .map(|(all, z)| {
                all.chunks_exact(SIZE).fold(IpvsStats::default(), |acc, c| acc.add(&stats_from(c))).since(&stats_from(z))
            })
            .collect();
        Ok(StatsSnapshot { stats })
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

    /// The connection counters of real server slot `dest_id` (zero if out of range), read
    /// from the map's memory: no syscall, so a listing of 100 000 real servers or the scan
    /// of every slot at start costs no more than the loads.
    pub fn dest_counters(&self, dest_id: u32) -> DestCounters {
        self.counter_memory.read(dest_id).unwrap_or_default()
    }
}

/// Every stats slot's counters since its zero point, taken at one moment (see
/// [`Tables::stats_snapshot`]).
pub struct StatsSnapshot {
    stats: Vec<IpvsStats>,
}

impl StatsSnapshot {
    pub fn get(&self, idx: u32) -> IpvsStats {
        self.stats.get(idx as usize).copied().unwrap_or_default()
    }
}

/// An `IpvsStats` from its 40 bytes in a map value (five native-endian u64s).
fn stats_from(b: &[u8]) -> IpvsStats {
    let f = |i: usize| u64::from_ne_bytes(b[8 * i..8 * i + 8].try_into().expect("8 bytes"));
    IpvsStats { conns: f(0), inpkts: f(1), outpkts: f(2), inbytes: f(3), outbytes: f(4) }
}

/// Entries per `BPF_MAP_LOOKUP_BATCH` call: bounds the kernel's temporary buffers (it copies
/// a whole batch out at once) while keeping the syscalls to a handful.
const BATCH: u32 = 8192;

/// The values of entries `0..n` of an array map whose values (all CPUs' for a per-CPU map)
/// take `value_size` bytes, by `BPF_MAP_LOOKUP_BATCH` (aya 0.14 has no batch API).
fn array_batch(fd: std::os::fd::RawFd, n: u32, value_size: usize) -> std::io::Result<Vec<u8>> {
    const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
    let mut values = vec![0u8; n as usize * value_size];
    let mut keys = vec![0u32; BATCH as usize];
    let mut done: u32 = 0;
    let mut token: u32 = 0;
    while done < n {
        let mut out_token: u32 = 0;
        // union bpf_attr, batch: in_batch, out_batch, keys, values, count | map_fd, elem_flags,
        // flags. A null in_batch starts at the first key; for arrays the token is a key.
        let mut attr = [0u64; 8];
        attr[0] = if done == 0 { 0 } else { &token as *const u32 as u64 };
        attr[1] = &mut out_token as *mut u32 as u64;
        attr[2] = keys.as_mut_ptr() as u64;
        attr[3] = values[done as usize * value_size..].as_mut_ptr() as u64;
        let want = BATCH.min(n - done);
        attr[4] = u64::from(want) | (u64::try_from(fd).unwrap_or(0) << 32);
        // SAFETY: the buffers hold `want` keys and values; the kernel writes no more.
        let r = unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_LOOKUP_BATCH, attr.as_mut_ptr(), std::mem::size_of_val(&attr)) };
        let got = (attr[4] & 0xffff_ffff) as u32;
        if r < 0 {
            let e = std::io::Error::last_os_error();
            // ENOENT: the map's last entry was reached (with `got` entries in this batch);
            // fewer than `n` is an error below.
            if e.raw_os_error() == Some(libc::ENOENT) {
                done += got;
                break;
            }
            return Err(e);
        }
        if got == 0 {
            return Err(std::io::Error::other("batch lookup returned no entries"));
        }
        done += got;
        token = out_token;
    }
    if done < n {
        return Err(std::io::Error::other(format!("batch lookup read {done} of {n} entries")));
    }
    Ok(values)
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
        tun_type: d.tun_type.number(),
        tun_flags: d.tun_flags as u8,
        tun_port: d.tun_port.to_be(),
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
        tun_type: TunType::from_number(c.tun_type).unwrap_or_default(),
        tun_port: u16::from_be(c.tun_port),
        tun_flags: c.tun_flags as u16,
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
    /// The batched snapshot reads what slot-by-slot lookups read, across batch boundaries,
    /// CPUs summed and zero points taken off. Needs root (it loads the dataplane unpinned).
    #[test]
    fn batched_stats_equal_slot_by_slot_reads() {
        use aya::maps::PerCpuValues;
        use lvs_common::stats::{dest_index, TOTAL_INDEX};
        // SAFETY: a plain getter.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: loading BPF maps needs root");
            return;
        }
        let mut ebpf = match crate::daemon::dataplane::Dataplane::load_unpinned(1024, crate::daemon::dataplane::Programs::EntryOnly) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("skipped: {e:#}");
                return;
            }
        };
        let mut t = Tables::from_ebpf(&mut ebpf).unwrap();
        let cpus = aya::util::nr_cpus().unwrap();
        let slots = [0, 1, BATCH - 1, BATCH, TOTAL_INDEX, dest_index(0), dest_index(MAX_DESTS - 1)];
        let write = |t: &mut Tables, idx: u32, base: u64| {
            let v: Vec<IpvsStats> = (0..cpus as u64)
                .map(|c| IpvsStats { conns: base + c, inpkts: 2 * base, outpkts: 3, inbytes: 1 << 40, outbytes: u64::from(idx) })
                .collect();
            t.ipvs_stats.set(idx, PerCpuValues::try_from(v).unwrap(), 0).unwrap();
        };
        for (n, &idx) in slots.iter().enumerate() {
            write(&mut t, idx, n as u64 + 1);
        }
        // A zero point on one slot, then more traffic on it.
        t.zero_stats(dest_index(0)).unwrap();
        write(&mut t, dest_index(0), 100);
        let snap = t.read_stats_batched().unwrap();
        assert_eq!(snap.stats.len(), STATS_SLOTS as usize);
        for i in 0..STATS_SLOTS {
            assert_eq!(snap.get(i), t.stats(i), "slot {i}");
        }
        let n = cpus as u64;
        assert_eq!(snap.get(BATCH).conns, n * 4 + n * (n - 1) / 2);
        assert_eq!(snap.get(dest_index(MAX_DESTS - 1)).outbytes, u64::from(dest_index(MAX_DESTS - 1)) * n);
        // 100 + c per CPU now, against 6 + c at the zeroing.
        assert_eq!(snap.get(dest_index(0)).conns, 94 * n);
        assert_eq!(snap.get(2), IpvsStats::default());
    }

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

    /// Real server `dest_id`'s counters, each loaded atomically.
    pub fn read(&self, dest_id: u32) -> Option<DestCounters> {
        let c = self.slot(dest_id)?;
        // SAFETY: as in `uncount`.
        unsafe {
            let l = |p: *mut u64| AtomicU64::from_ptr(p).load(AtomicOrdering::Relaxed);
            Some(DestCounters {
                active: l(&raw mut (*c).active),
                inactive: l(&raw mut (*c).inactive),
                persist: l(&raw mut (*c).persist),
                overload: l(&raw mut (*c).overload),
            })
        }
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
