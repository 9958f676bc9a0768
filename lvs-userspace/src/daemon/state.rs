//! The virtual-server table with IPVS's rules, mirrored into the maps on every change.
//!
//! Each operation validates first and writes the maps only when it cannot fail half-way, and
//! answers errors with the errno kernel IPVS gives for the same request.

use std::collections::BTreeMap;

use lvs_common::{
    maglev, sched_hash,
    stats::{dest_index, svc_index, Estimator, IpvsStats, TOTAL_INDEX},
    wrr,
};
use lvs_common::service::{
    dest_flags, sched, svc_conf_flags, DestConf, HashTable, MhTable, SchedState, ServiceConf, MAX_DESTS,
    MAX_DESTS_PER_SVC, MAX_SERVICES,
};
use tracing::info;

use super::tables::{self, Tables};
use crate::{
    control::Errno,
    model::{DestSpec, DestStatus, Forward, ServiceKey, ServiceSpec, ServiceStatus, Stats, TunType},
};

/// Every scheduler name kernel IPVS knows.
pub const IPVS_SCHEDULERS: [&str; 14] =
    ["rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf", "twos"];

/// An operation failure: the errno ipvsadm turns into its message, and a detail for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    pub errno: Errno,
    pub detail: String,
}

fn err<T>(errno: Errno, detail: impl Into<String>) -> Result<T, OpError> {
    Err(OpError { errno, detail: detail.into() })
}

/// What this dataplane can run today. Kept in one place so ipvsadm requests and the YAML
/// config are refused for the same reasons.
pub fn check_service_supported(spec: &ServiceSpec) -> Result<u32, OpError> {
    if !IPVS_SCHEDULERS.contains(&spec.scheduler.as_str()) {
        return err(Errno::NoEnt, format!("unknown scheduler '{}'", spec.scheduler));
    }
    let Some(id) = sched::from_name(&spec.scheduler) else {
        return err(
            Errno::NotImplemented,
            format!(
                "scheduler '{}' is not supported by lvsd yet (only {})",
                spec.scheduler,
                sched::supported_names()
            ),
        );
    };
    // --pe: ip_vs_pe_getbyname fails for any name but sip (ENOENT, after the scheduler).
    match spec.pe.as_deref() {
        None => {}
        Some(crate::model::PE_SIP) => {
            // The dataplane keys a SIP template on the Call-ID in place of the mark a firewall-
            // mark service's controlled connections carry; there is room for one of the two.
            if matches!(spec.key, ServiceKey::Fwmark { .. }) {
                return err(
                    Errno::NotImplemented,
                    "the sip persistence engine (--pe) on a firewall-mark service is not supported by lvsd yet",
                );
            }
            // The Call-ID search is in the IPv4 program only.
            if spec.key.is_ipv6() {
                return err(
                    Errno::NotImplemented,
                    "the sip persistence engine (--pe) on an IPv6 service is not supported by lvsd yet",
                );
            }
        }
        Some(other) => return err(Errno::NoEnt, format!("unknown persistence engine '{other}'")),
    }
    // IPv6 services (address or firewall mark) are served by the dataplane's IPv6 programs.
    // ONEPACKET is accepted on any service, as by the kernel; the dataplane honours it for
    // UDP only, as the kernel does (ipvsadm itself refuses -o on a TCP service).
    Ok(id)
}

/// The same for a real server of `svc`.
pub fn check_dest_supported(svc: &ServiceKey, d: &DestSpec) -> Result<(), OpError> {
    if d.weight < 0 {
        return err(Errno::Range, "negative weight");
    }
    // The kernel refuses l > u even when u is 0 (no upper threshold).
    if d.l_threshold > d.u_threshold {
        return err(Errno::Range, "l_threshold is greater than u_threshold");
    }
    // ip_vs_add_dest: a real server must be a unicast (or local) address; inet_addr_type()
    // calls 0.0.0.0/8 and 255.255.255.255 broadcast. (A subnet's directed broadcast is refused
    // by the kernel after a route lookup; lvsd does not look routes up.)
    if let std::net::IpAddr::V4(a) = d.addr {
        if a.is_multicast() || a.is_broadcast() || a.octets()[0] == 0 {
            return err(Errno::Inval, format!("{a} is not a unicast address"));
        }
    }
    // The kernel takes a real server of the other family for a tunnel only (ip_vs_ctl.c;
    // ipvsadm refuses the rest itself): the dataplane encapsulates IPv4 in IPv6 and IPv6 in
    // IPv4 for it.
    if d.addr.is_ipv6() != svc.is_ipv6() && d.forward != Forward::Tunnel {
        return err(Errno::Inval, "a real server's address family must be the service's (except for tunnels)");
    }
    // ip_vs_add_dest/ip_vs_edit_dest: GUE needs a destination port.
    if d.forward == Forward::Tunnel && d.tun_type == TunType::Gue && d.tun_port == 0 {
        return err(Errno::Inval, "a GUE tunnel needs a port (tun_port 0)");
    }
    if !matches!(d.forward, Forward::Masq | Forward::Route | Forward::Tunnel) {
        return err(
            Errno::NotImplemented,
            format!(
                "forwarding method {} is not supported by lvsd (only -m, -g and -i)",
                d.forward.ipvs_name()
            ),
        );
    }
    Ok(())
}

struct Dest {
    slot: u32,
    spec: DestSpec,
    /// The latest non-zero weight (the kernel's `last_weight`; mh builds its table from it, so
    /// a server edited to weight 0 keeps its slots).
    last_weight: i32,
}

/// How long a deleted real server with no connections left stays revivable (the kernel's
/// `IP_VS_DEST_TRASH_PERIOD`).
const DEST_TRASH_PERIOD: std::time::Duration = std::time::Duration::from_secs(120);

/// A deleted real server, kept as IPVS keeps it in its dest trash: adding the same address and
/// port to the same service again revives it, with the connections still bound to it (they
/// count in ActiveConn/InActConn and forward again). Its `DESTS` slot keeps the address and
/// service but loses `AVAILABLE`, so meanwhile their packets are dropped, as in IPVS. The slot
/// (and its `DEST_COUNTERS` entry) stays reserved while any connection still counts on it.
struct Trashed {
    /// The service it was deleted from. A service deleted and created again with the same
    /// key revives it too (`ip_vs_trash_get_dest` matches on the service's address, port,
    /// protocol and mark), so persistence templates pointing at it work again.
    svc: Option<ServiceKey>,
    addr: std::net::IpAddr,
    port: u16,
    slot: u32,
    since: std::time::Instant,
}

struct Service {
    slot: u32,
    spec: ServiceSpec,
    sched_id: u32,
    /// Kernel order: newest first.
    dests: Vec<Dest>,
}

/// The daemon's view of the virtual servers; the maps are always a copy of it.
pub struct VirtualServers {
    services: BTreeMap<u32, Service>,
    /// Slot of each service by key: every request names its service by key, and a scan of
    /// `services` made `ipvsadm -R` of 10 000 services quadratic.
    by_key: std::collections::HashMap<ServiceKey, u32>,
    next_svc_slot: u32,
    next_dest_slot: u32,
    used_dest_slots: std::collections::HashSet<u32>,
    trash: Vec<Trashed>,
    /// Rate estimators by stats slot (services, real servers, the totals). Kept in memory
    /// only: after a restart they start again from the pinned counters.
    rates: std::collections::HashMap<u32, Estimator>,
}

impl VirtualServers {
    /// Sets the prefilter bit of every address the recovered view acts on (services, their
    /// real servers, and deleted real servers that connections still count on), then turns
    /// the filter on (`lvs_common::prefilter`). After [`Self::recover`], before traffic
    /// depends on the view; later additions set their bits as they are made.
    pub fn rebuild_filter(&self, t: &mut Tables) -> anyhow::Result<()> {
        for svc in self.services.values() {
            if let ServiceKey::Addr { addr, .. } = svc.spec.key {
                t.filter_addr(addr)?;
            }
            for d in &svc.dests {
                t.filter_addr(d.spec.addr)?;
            }
        }
        for tr in &self.trash {
            t.filter_addr(tr.addr)?;
        }
        t.filter_ready()
    }

    /// Rebuilds the view from the maps (after a restart, the pinned maps are the truth).
    pub fn recover(t: &Tables) -> anyhow::Result<Self> {
        let mut vs = VirtualServers {
            services: BTreeMap::new(),
            by_key: Default::default(),
            next_svc_slot: 0,
            next_dest_slot: 0,
            used_dest_slots: Default::default(),
            // Not rebuilt after a restart: trashed slots are not told apart from free ones.
            trash: Vec::new(),
            rates: Default::default(),
        };
        for item in t.svc_index.iter() {
            let (k, slot) = item?;
            let conf = t.services.get(&slot, 0)?;
            if conf.flags & svc_conf_flags::IN_USE == 0 {
                continue;
            }
            let Some(key) = tables::model_key(&k) else { continue };
            let scheduler = sched::name(conf.sched).unwrap_or("rr").to_string();
            let spec = ServiceSpec {
                key,
                scheduler,
                flags: conf.flags & svc_conf_flags::IPVS_MASK,
                timeout: conf.timeout,
                netmask: conf.netmask,
                pe: (conf.flags & svc_conf_flags::PE_SIP != 0).then(|| crate::model::PE_SIP.to_string()),
            };
            let mut dests = Vec::new();
            for &ds in conf.dests.iter().take(conf.dest_count as usize) {
                let d = t.dests.get(&ds, 0)?;
                vs.used_dest_slots.insert(ds);
                vs.next_dest_slot = vs.next_dest_slot.max(ds + 1) % MAX_DESTS;
                let spec = tables::dest_spec(&d);
                // Not kept across restarts: the current weight stands in for it.
                dests.push(Dest { slot: ds, last_weight: spec.weight, spec });
            }
            vs.next_svc_slot = vs.next_svc_slot.max(slot + 1) % MAX_SERVICES;
            vs.by_key.insert(spec.key, slot);
            vs.services.insert(slot, Service { slot, spec, sched_id: conf.sched, dests });
        }
        // Slots of deleted real servers that connections still count on stay reserved (the
        // trash itself, and so revival, does not survive a restart).
        for ds in 0..MAX_DESTS {
            if vs.used_dest_slots.contains(&ds) {
                continue;
            }
            let c = t.dest_counters(ds);
            if c.active != 0 || c.inactive != 0 || c.persist != 0 {
                let d = tables::dest_spec(&t.dests.get(&ds, 0)?);
                vs.used_dest_slots.insert(ds);
                vs.trash.push(Trashed {
                    svc: None,
                    addr: d.addr,
                    port: d.port,
                    slot: ds,
                    since: std::time::Instant::now(),
                });
            }
        }
        Ok(vs)
    }

    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    fn find(&self, key: &ServiceKey) -> Option<u32> {
        self.by_key.get(key).copied()
    }

    pub fn exists(&self, key: &ServiceKey) -> bool {
        self.by_key.contains_key(key)
    }

    /// Whether any service has a real server of the other address family (IPVS's
    /// `mixed_address_family_dests`).
    pub fn has_mixed_family(&self) -> bool {
        self.services.values().any(|s| s.dests.iter().any(|d| d.spec.addr.is_ipv6() != s.spec.key.is_ipv6()))
    }

    fn alloc_svc_slot(&mut self) -> Option<u32> {
        for i in 0..MAX_SERVICES {
            let slot = (self.next_svc_slot + i) % MAX_SERVICES;
            if !self.services.contains_key(&slot) {
                self.next_svc_slot = (slot + 1) % MAX_SERVICES;
                return Some(slot);
            }
        }
        None
    }

    /// Next-fit, so a freed slot is reused as late as possible: connections of a deleted real
    /// server still name its slot until they expire.
    fn alloc_dest_slot(&mut self) -> Option<u32> {
        for i in 0..MAX_DESTS {
            let slot = (self.next_dest_slot + i) % MAX_DESTS;
            if !self.used_dest_slots.contains(&slot) {
                self.next_dest_slot = (slot + 1) % MAX_DESTS;
                self.used_dest_slots.insert(slot);
                return Some(slot);
            }
        }
        None
    }

    fn conf_of(svc: &Service) -> anyhow::Result<ServiceConf> {
        let mut conf = ServiceConf {
            key: tables::svc_key(&svc.spec.key)?,
            sched: svc.sched_id,
            flags: svc_conf_flags::IN_USE
                | (svc.spec.flags & svc_conf_flags::IPVS_MASK)
                | if svc.spec.pe.as_deref() == Some(crate::model::PE_SIP) { svc_conf_flags::PE_SIP } else { 0 },
            timeout: svc.spec.timeout,
            netmask: svc.spec.netmask,
            dest_count: svc.dests.len() as u32,
            ..Default::default()
        };
        for (i, d) in svc.dests.iter().enumerate() {
            conf.dests[i] = d.slot;
        }
        Ok(conf)
    }

    fn write_service(t: &mut Tables, svc: &Service) -> Result<(), OpError> {
        let conf = Self::conf_of(svc).map_err(internal)?;
        t.services.set(svc.slot, conf, 0).map_err(internal)
    }

    /// Rebuilds the service's dh or sh table from its servers in kernel order. Called where the
    /// kernel rebuilds it: binding the scheduler, adding and deleting a server, and for sh (not
    /// dh) editing one.
    fn build_hash_table(t: &mut Tables, svc: &Service) -> Result<(), OpError> {
        if svc.sched_id != sched::MH {
            let _ = t.mh_tables.remove(&svc.slot);
        } else {
            let dests: Vec<(u32, u16, i32)> = svc
                .dests
                .iter()
                .map(|d| {
                    let fold = match d.spec.addr {
                        std::net::IpAddr::V4(a) => u32::from(a),
                        std::net::IpAddr::V6(a) => {
                            let o = a.octets();
                            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
                            w(0) ^ w(4) ^ w(8) ^ w(12)
                        }
                    };
                    (fold, d.spec.port, d.last_weight)
                })
                .collect();
            let mut table = MhTable { slots: [sched_hash::EMPTY; 4093], _pad: 0 };
            maglev::mh_build(&dests, &mut table.slots).map_err(|_| internal("too many real servers for mh"))?;
            t.mh_tables.insert(svc.slot, table, 0).map_err(internal)?;
            return Ok(());
        }
        let mut table = HashTable::default();
        match svc.sched_id {
            sched::DH => sched_hash::dh_build(svc.dests.len(), &mut table.slots),
            sched::SH => {
                let weights: Vec<i32> = svc.dests.iter().map(|d| d.spec.weight).collect();
                sched_hash::sh_build(&weights, &mut table.slots)
            }
            _ => return Ok(()),
        }
        t.hash_tables.set(svc.slot, table, 0).map_err(internal)
    }

    /// The scheduler state of a service whose scheduler is (re)bound now
    /// (`init_service`): rr at the list head, wrr's mark computed from the current weights.
    fn fresh_sched_state(svc: &Service) -> SchedState {
        SchedState { wrr: wrr::wrr_init(&Self::weights(svc)), ..Default::default() }
    }

    fn weights(svc: &Service) -> Vec<i32> {
        svc.dests.iter().map(|d| d.spec.weight).collect()
    }

    /// wrr's `dest_changed` after a real server was added, edited or deleted: back to the
    /// head, `mw`/`di` from the new weights, `cw` kept or realigned. Only wrr has this hook.
    fn wrr_dest_changed(t: &mut Tables, svc: &Service) -> Result<(), OpError> {
        if svc.sched_id != sched::WRR {
            return Ok(());
        }
        let mut st = t.sched_state.get(&svc.slot, 0).map_err(internal)?;
        wrr::wrr_dest_changed(&mut st.wrr, &Self::weights(svc));
        t.sched_state.set(svc.slot, st, 0).map_err(internal)
    }

    /// `ipvsadm -A`.
    pub fn add_service(&mut self, t: &mut Tables, spec: ServiceSpec) -> Result<(), OpError> {
        let sched_id = check_service_supported(&spec)?;
        if self.find(&spec.key).is_some() {
            return err(Errno::Exist, format!("{} already exists", spec.key));
        }
        let Some(slot) = self.alloc_svc_slot() else {
            return err(Errno::NoMem, format!("service table full ({MAX_SERVICES})"));
        };

        let svc = Service { slot, spec, sched_id, dests: Vec::new() };
        let key = tables::svc_key(&svc.spec.key).map_err(internal)?;
        // A reused slot's counters belong to an earlier service.
        self.zero_slot(t, svc_index(slot))?;
        Self::write_service(t, &svc)?;
        Self::build_hash_table(t, &svc)?;
        t.sched_state.set(slot, Self::fresh_sched_state(&svc), 0).map_err(internal)?;
        if let ServiceKey::Addr { addr, .. } = svc.spec.key {
            t.filter_addr(addr).map_err(internal)?;
        }
        // Published last: the dataplane can only find a fully written service.
        t.svc_index.insert(key, slot, 0).map_err(internal)?;
        info!(service = %svc.spec.key, scheduler = %svc.spec.scheduler, "service added");
        let port0 = is_port0(&svc.spec.key);
        self.by_key.insert(svc.spec.key, slot);
        self.services.insert(slot, svc);
        if port0 {
            self.count_port0(t)?;
        }
        Ok(())
    }

    /// `ipvsadm -E`. The scheduler state is reset only when the scheduler changes, as in IPVS.
    pub fn edit_service(&mut self, t: &mut Tables, spec: ServiceSpec) -> Result<(), OpError> {
        let Some(slot) = self.find(&spec.key) else {
            return err(Errno::Srch, format!("{} does not exist", spec.key));
        };
        let sched_id = check_service_supported(&spec)?;
        let svc = self.services.get_mut(&slot).expect("found above");
        let rebind = svc.sched_id != sched_id;
        svc.spec = spec;
        svc.sched_id = sched_id;
        Self::write_service(t, svc)?;
        if rebind {
            t.sched_state.set(slot, Self::fresh_sched_state(svc), 0).map_err(internal)?;
            t.flush_sched_cache(slot);
            Self::build_hash_table(t, svc)?;
        }
        info!(service = %svc.spec.key, scheduler = %svc.spec.scheduler, "service edited");
        Ok(())
    }

    /// `ipvsadm -D`. Connections already scheduled stay in the table until they expire; their
    /// packets are dropped because the real server is no longer available (IPVS with
    /// `expire_nodest_conn=0`).
    pub fn del_service(&mut self, t: &mut Tables, key: &ServiceKey) -> Result<(), OpError> {
        let Some(slot) = self.find(key) else {
            return err(Errno::Srch, format!("{key} does not exist"));
        };
        let svc = self.services.remove(&slot).expect("found above");
        self.by_key.remove(key);
        let k = tables::svc_key(key).map_err(internal)?;
        // Unpublish first so no new connection is scheduled while the rest goes away.
        let _ = t.svc_index.remove(&k);
        let now = std::time::Instant::now();
        for d in &svc.dests {
            let _ = t.dests.set(d.slot, tables::dest_conf(&d.spec, slot, 0), 0);
            self.trash.push(Trashed { svc: Some(*key), addr: d.spec.addr, port: d.spec.port, slot: d.slot, since: now });
        }
        let _ = t.services.set(slot, ServiceConf::default(), 0);
        t.flush_sched_cache(slot);
        let _ = t.mh_tables.remove(&slot);
        info!(service = %key, "service deleted");
        if is_port0(key) {
            self.count_port0(t)?;
        }
        Ok(())
    }

    /// Tells the dataplane how many port-0 address services exist: as the kernel's
    /// `nullsvc_counter`, it gates the `(protocol, address, 0)` fallback lookup.
    /// Only after adding or deleting such a service: the count is a walk of every service,
    /// and made after each of `ipvsadm -R`'s 10 000 service lines it was quadratic (about a
    /// second of the restore).
    fn count_port0(&self, t: &mut Tables) -> Result<(), OpError> {
        let n = self.services.values().filter(|s| is_port0(&s.spec.key)).count();
        t.set_port0_services(n as u32).map_err(internal)
    }

    /// `ipvsadm -C`.
    pub fn clear(&mut self, t: &mut Tables) -> Result<(), OpError> {
        let keys: Vec<ServiceKey> = self.services.values().map(|s| s.spec.key).collect();
        for k in keys {
            self.del_service(t, &k)?;
        }
        Ok(())
    }

    /// `ipvsadm -a`: the new real server goes to the head of the list, as in the kernel.
    pub fn add_dest(&mut self, t: &mut Tables, key: &ServiceKey, d: DestSpec) -> Result<(), OpError> {
        let Some(slot) = self.find(key) else {
            return err(Errno::Srch, format!("{key} does not exist"));
        };
        let svc = &self.services[&slot];
        if svc.dests.iter().any(|x| x.spec.addr == d.addr && x.spec.port == d.port) {
            return err(Errno::Exist, format!("{}:{} already exists in {key}", d.addr, d.port));
        }
        check_dest_supported(key, &d)?;
        if svc.dests.len() >= MAX_DESTS_PER_SVC {
            return err(Errno::NoMem, format!("{key} already has {MAX_DESTS_PER_SVC} real servers"));
        }
        let revived =
            self.trash.iter().position(|tr| tr.svc == Some(*key) && tr.addr == d.addr && tr.port == d.port);
        let ds = match revived {
            Some(i) => {
                let ds = self.trash.remove(i).slot;
                let old_u = t.dests.get(&ds, 0).map(|c| c.u_threshold).unwrap_or(0);
                lift_overload(t, ds, old_u, d.u_threshold);
                ds
            }
            None => {
                self.purge_trash(t);
                let Some(ds) = self.alloc_dest_slot() else {
                    return err(Errno::NoMem, format!("real-server table full ({MAX_DESTS})"));
                };
                t.counter_memory.clear_overload(ds);
                self.zero_slot(t, dest_index(ds))?;
                ds
            }
        };
        t.filter_addr(d.addr).map_err(internal)?;
        t.dests.set(ds, tables::dest_conf(&d, slot, dest_flags::AVAILABLE), 0).map_err(internal)?;
        super::neigh::resolve_dest(&d);
        let svc = self.services.get_mut(&slot).expect("found above");
        info!(service = %key, server = %d.addr, port = d.port, weight = d.weight, "real server added");
        let last_weight = d.weight;
        svc.dests.insert(0, Dest { slot: ds, spec: d, last_weight });
        Self::write_service(t, svc)?;
        Self::build_hash_table(t, svc)?;
        // rr keeps pointing at the same server, which has moved one place down; the list head
        // stays the list head.
        let mut st = t.sched_state.get(&slot, 0).unwrap_or_default();
        if st.rr_next != 0 {
            st.rr_next += 1;
            let _ = t.sched_state.set(slot, st, 0);
        }
        Self::wrr_dest_changed(t, svc)
    }

    /// `ipvsadm -e`.
    pub fn edit_dest(&mut self, t: &mut Tables, key: &ServiceKey, d: DestSpec) -> Result<(), OpError> {
        let Some(slot) = self.find(key) else {
            return err(Errno::Srch, format!("{key} does not exist"));
        };
        let svc = self.services.get_mut(&slot).expect("found above");
        let Some(pos) = svc.dests.iter().position(|x| x.spec.addr == d.addr && x.spec.port == d.port)
        else {
            return err(Errno::NoEnt, format!("{}:{} is not in {key}", d.addr, d.port));
        };
        check_dest_supported(key, &d)?;
        let ds = svc.dests[pos].slot;
        let old_u = svc.dests[pos].spec.u_threshold;
        t.filter_addr(d.addr).map_err(internal)?;
        t.dests.set(ds, tables::dest_conf(&d, slot, dest_flags::AVAILABLE), 0).map_err(internal)?;
        super::neigh::resolve_dest(&d);
        lift_overload(t, ds, old_u, d.u_threshold);
        info!(service = %key, server = %d.addr, port = d.port, weight = d.weight, "real server edited");
        if d.weight != 0 {
            svc.dests[pos].last_weight = d.weight;
        }
        svc.dests[pos].spec = d;
        // dh ignores edits (its table does not depend on weights); sh rebuilds.
        if svc.sched_id == sched::SH || svc.sched_id == sched::MH {
            Self::build_hash_table(t, svc)?;
        }
        Self::wrr_dest_changed(t, svc)
    }

    /// `ipvsadm -d`.
    pub fn del_dest(
        &mut self,
        t: &mut Tables,
        key: &ServiceKey,
        addr: std::net::IpAddr,
        port: u16,
    ) -> Result<(), OpError> {
        let Some(slot) = self.find(key) else {
            return err(Errno::Srch, format!("{key} does not exist"));
        };
        let svc = self.services.get_mut(&slot).expect("found above");
        let Some(pos) = svc.dests.iter().position(|x| x.spec.addr == addr && x.spec.port == port)
        else {
            return err(Errno::NoEnt, format!("{addr}:{port} is not in {key}"));
        };
        let removed = svc.dests.remove(pos);
        Self::write_service(t, svc)?;
        Self::build_hash_table(t, svc)?;
        // IPVS rr: if the pointer was on the deleted server it moves back to the previous one
        // (or the head); servers after the deleted one move up a place.
        let mut st = t.sched_state.get(&slot, 0).unwrap_or_default();
        let p = pos as u32;
        if st.rr_next > p {
            st.rr_next -= 1;
            let _ = t.sched_state.set(slot, st, 0);
        }
        // Like the rr update above, not a reason to stop half-way: the server is gone already.
        let _ = Self::wrr_dest_changed(t, svc);
        let _ = t.dests.set(removed.slot, tables::dest_conf(&removed.spec, slot, 0), 0);
        self.trash.push(Trashed {
            svc: Some(*key),
            addr,
            port,
            slot: removed.slot,
            since: std::time::Instant::now(),
        });
        info!(service = %key, server = %addr, port, "real server deleted");
        Ok(())
    }

    /// Frees trashed real servers that no connection counts on any more and that were deleted
    /// at least [`DEST_TRASH_PERIOD`] ago.
    fn purge_trash(&mut self, t: &mut Tables) {
        let (gone, kept): (Vec<Trashed>, Vec<Trashed>) =
            std::mem::take(&mut self.trash).into_iter().partition(|tr| {
                let c = t.dest_counters(tr.slot);
                tr.since.elapsed() >= DEST_TRASH_PERIOD && c.active == 0 && c.inactive == 0 && c.persist == 0
            });
        for tr in gone {
            let _ = t.dests.set(tr.slot, DestConf::default(), 0);
            self.used_dest_slots.remove(&tr.slot);
        }
        self.trash = kept;
    }

    /// Every service with live connection counts, in slot order, dests in kernel order.
    pub fn list(&self, t: &Tables) -> Vec<ServiceStatus> {
        // One batched read of every stats slot, not two lookups per service and real server.
        let snap = t.stats_snapshot();
        self.services.values().map(|s| self.status(s, t, |idx| snap.get(idx))).collect()
    }

    /// One service, or ESRCH.
    pub fn get(&self, t: &Tables, key: &ServiceKey) -> Result<ServiceStatus, OpError> {
        let Some(slot) = self.find(key) else {
            return err(Errno::Srch, format!("{key} does not exist"));
        };
        Ok(self.status(&self.services[&slot], t, |idx| t.stats(idx)))
    }

    /// ActiveConn/InActConn/PersistConn come from the dataplane's counters (`DEST_COUNTERS`),
    /// traffic statistics from `IPVS_STATS`, rates from the estimators.
    fn status(&self, s: &Service, t: &Tables, stats: impl Fn(u32) -> IpvsStats) -> ServiceStatus {
        ServiceStatus {
            stats: self.stats_with(svc_index(s.slot), stats(svc_index(s.slot))),
            spec: s.spec.clone(),
            dests: s
                .dests
                .iter()
                .map(|d| {
                    let c = t.dest_counters(d.slot);
                    DestStatus {
                        spec: d.spec.clone(),
                        active_conns: clamp(c.active),
                        inact_conns: clamp(c.inactive),
                        persist_conns: clamp(c.persist),
                        stats: self.stats_with(dest_index(d.slot), stats(dest_index(d.slot))),
                    }
                })
                .collect(),
        }
    }

    /// Counters and rates of one stats slot.
    fn stats_of(&self, t: &Tables, idx: u32) -> Stats {
        self.stats_with(idx, t.stats(idx))
    }

    /// Counters `c` of stats slot `idx` with its rates.
    fn stats_with(&self, idx: u32, c: IpvsStats) -> Stats {
        let r = self.rates.get(&idx).map(Estimator::rates).unwrap_or_default();
        Stats {
            conns: c.conns,
            inpkts: c.inpkts,
            outpkts: c.outpkts,
            inbytes: c.inbytes,
            outbytes: c.outbytes,
            cps: r.cps,
            inpps: r.inpps,
            outpps: r.outpps,
            inbps: r.inbps,
            outbps: r.outbps,
        }
    }

    /// The director's totals (the kernel's `/proc/net/ip_vs_stats`).
    pub fn totals(&self, t: &Tables) -> Stats {
        self.stats_of(t, TOTAL_INDEX)
    }

    /// Zeroes one stats slot and restarts its estimator (`ip_vs_zero_stats`).
    fn zero_slot(&mut self, t: &mut Tables, idx: u32) -> Result<(), OpError> {
        t.zero_stats(idx).map_err(internal)?;
        self.rates.insert(idx, Estimator::starting_at(IpvsStats::default()));
        Ok(())
    }

    /// `ipvsadm -Z [service]`: a service and its real servers, or every service, every real
    /// server and the totals, as `ip_vs_zero_service` / `ip_vs_zero_all` do.
    pub fn zero(&mut self, t: &mut Tables, key: Option<&ServiceKey>) -> Result<(), OpError> {
        let slots: Vec<u32> = match key {
            Some(k) => match self.find(k) {
                Some(slot) => vec![slot],
                None => return err(Errno::Srch, format!("{k} does not exist")),
            },
            None => self.services.keys().copied().collect(),
        };
        for slot in slots {
            let dests: Vec<u32> = self.services[&slot].dests.iter().map(|d| d.slot).collect();
            self.zero_slot(t, svc_index(slot))?;
            for ds in dests {
                self.zero_slot(t, dest_index(ds))?;
            }
        }
        if key.is_none() {
            self.zero_slot(t, TOTAL_INDEX)?;
        }
        match key {
            Some(k) => info!(service = %k, "statistics zeroed"),
            None => info!("all statistics zeroed"),
        }
        Ok(())
    }

    /// One estimator tick (every 2 s) for every service, real server and the totals. An
    /// object seen for the first time (after a restart) starts from its current counters.
    pub fn tick_rates(&mut self, t: &Tables) {
        let mut live: Vec<u32> = vec![TOTAL_INDEX];
        for s in self.services.values() {
            live.push(svc_index(s.slot));
            live.extend(s.dests.iter().map(|d| dest_index(d.slot)));
        }
        let mut next = std::collections::HashMap::with_capacity(live.len());
        let snap = t.stats_snapshot();
        for idx in live {
            let now = snap.get(idx);
            let mut e = self.rates.remove(&idx).unwrap_or_else(|| Estimator::starting_at(now));
            e.tick(now);
            next.insert(idx, e);
        }
        // Estimators of deleted objects go (a revived real server starts a new one).
        self.rates = next;
    }

    /// The specs of every service and its dests, in `ipvsadm -a` order (oldest first), for
    /// diffing against a config.
    pub fn specs(&self) -> Vec<(ServiceSpec, Vec<DestSpec>)> {
        self.services
            .values()
            .map(|s| (s.spec.clone(), s.dests.iter().rev().map(|d| d.spec.clone()).collect()))
            .collect()
    }
}

/// `__ip_vs_update_dest` (`-a`, `-e`): OVERLOAD is cleared when the new u-threshold is 0 or
/// higher than the old one.
fn lift_overload(t: &Tables, ds: u32, old_u: u32, new_u: u32) {
    if new_u == 0 || new_u > old_u {
        t.counter_memory.clear_overload(ds);
    }
}

/// The kernel's counters are 32-bit atomics; ours are 64-bit. A transient negative value (a
/// decrement seen before its increment) reads as 0, not as 2^64 - 1.
fn clamp(v: u64) -> u32 {
    if v > i64::MAX as u64 {
        0
    } else {
        v.min(u32::MAX as u64) as u32
    }
}

fn internal(e: impl std::fmt::Display) -> OpError {
    OpError { errno: Errno::NoMem, detail: format!("map update failed: {e}") }
}

/// A port-0 address service (the `(protocol, address, 0)` fallback of `count_port0`).
fn is_port0(key: &ServiceKey) -> bool {
    matches!(key, ServiceKey::Addr { port: 0, .. })
}
