//! Reclaiming expired connections, and expiring persistence templates.
//!
//! The dataplane stops matching an entry the moment it expires (it compares `expires_ns` with
//! the clock on every lookup); this thread frees the slots so the table does not fill up,
//! once per second, from its own handles on the pinned maps.
//!
//! Whoever removes an entry takes its count away from its real server's `DEST_COUNTERS`
//! (ActiveConn/InActConn): here that is an atomic subtraction on the array's memory, mapped
//! from the kernel (`BPF_F_MMAPABLE`), so it never loses an add made by the dataplane at the
//! same moment. The entry is removed with `BPF_MAP_LOOKUP_AND_DELETE_ELEM`, so we know exactly
//! what was removed: if a new connection took the same 5-tuple between our read and the
//! delete, it is put back (`BPF_NOEXIST`), or, if yet another one already took the key, its
//! count is taken away too.
//!
//! Persistence templates are swept after the connections: the walk over the connection table
//! has just told, for each template, until when a connection it controls stays alive, which is
//! what the kernel's template timer asks (`n_control`) when it fires.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use std::os::fd::{AsFd, AsRawFd};

use aya::maps::{Array, HashMap, MapData};
use std::collections::HashMap as StdHashMap;

use lvs_common::{
    flow::{conn_flags, ConnEntry, ConnRef, FlowKey},
    map_names,
    persist::{self, template_key, Template},
    service::DestConf,
};
use tracing::debug;

use super::tables::{monotonic_ns, out_key, CounterMemory};

struct ConnMaps {
    conns: HashMap<MapData, FlowKey, ConnEntry>,
    /// A second handle on CONNS for the raw lookup-and-delete.
    conns_raw: MapData,
    out: HashMap<MapData, FlowKey, ConnRef>,
    dests: Array<MapData, DestConf>,
    counters: CounterMemory,
    templates: HashMap<MapData, FlowKey, Template>,
    /// A second handle on TEMPLATES for the raw lookup-and-delete.
    templates_raw: MapData,
    /// The Call-IDs of sip templates, which go with them.
    sip_callids: HashMap<MapData, FlowKey, lvs_common::sip::CallId>,
    /// Call-IDs found without a template at the last sweep (see [`sweep_callids`]).
    orphans: std::collections::HashSet<FlowKey>,
}

fn open(dir: &std::path::Path) -> anyhow::Result<ConnMaps> {
    let m = |n: &str| crate::daemon::tables::open_pinned(dir, n);
    Ok(ConnMaps {
        conns: HashMap::try_from(m(map_names::CONNS)?)?,
        conns_raw: MapData::from_pin(dir.join(map_names::CONNS))?,
        out: HashMap::try_from(m(map_names::CONNS_OUT)?)?,
        dests: Array::try_from(m(map_names::DESTS)?)?,
        counters: CounterMemory::map(&MapData::from_pin(dir.join(map_names::DEST_COUNTERS))?)?,
        templates: HashMap::try_from(m(map_names::TEMPLATES)?)?,
        templates_raw: MapData::from_pin(dir.join(map_names::TEMPLATES))?,
        sip_callids: HashMap::try_from(m(map_names::SIP_CALLIDS)?)?,
        orphans: Default::default(),
    })
}

/// `BPF_MAP_LOOKUP_AND_DELETE_ELEM` on a hash map: removes the entry and returns what it was.
fn lookup_and_delete<V: aya::Pod + Default>(map: &MapData, key: &FlowKey) -> Option<V> {
    #[repr(C)]
    struct Attr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;
    let mut value = V::default();
    let attr = Attr {
        map_fd: map.fd().as_fd().as_raw_fd() as u32,
        _pad: 0,
        key: key as *const FlowKey as u64,
        value: &mut value as *mut V as u64,
        flags: 0,
    };
    // SAFETY: the attr points at a key and a value buffer of the map's sizes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_AND_DELETE_ELEM,
            &attr as *const Attr,
            std::mem::size_of::<Attr>() as u32,
        )
    };
    (r == 0).then_some(value)
}

/// Takes a removed connection's count away from its real server and clears the server's
/// OVERLOAD mark if that brings it below its threshold (`ip_vs_unbind_dest`).
fn unbind(m: &ConnMaps, e: &ConnEntry) {
    if m.counters.uncount(e).is_none() {
        return;
    }
    if let Ok(d) = m.dests.get(&e.dest_id, 0) {
        m.counters.clear_overload_if(e.dest_id, |total| {
            lvs_common::service::overload_clears(total, d.u_threshold, d.l_threshold)
        });
    }
}

/// One sweep: returns how many connections were reclaimed.
fn sweep(m: &mut ConnMaps) -> usize {
    let now = monotonic_ns();
    // Collect first: deleting while walking with get_next_key restarts the walk.
    let mut expired: Vec<FlowKey> = Vec::new();
    // For each persistence template: until when a connection it controls stays alive.
    let mut controlled: StdHashMap<FlowKey, u64> = StdHashMap::new();
    for (k, e) in m.conns.iter().filter_map(Result::ok) {
        if e.expires_ns <= now {
            expired.push(k);
        } else if e.flags & conn_flags::CONTROLLED != 0 {
            let mut tk = template_key(&k, &conn_flags::scope(&e));
            lvs_common::sip::mark_key(&mut tk, conn_flags::pe(&e));
            let until = controlled.entry(tk).or_default();
            *until = (*until).max(e.expires_ns);
        }
    }
    let mut n = 0;
    for k in &expired {
        let Some(e) = lookup_and_delete::<ConnEntry>(&m.conns_raw, k) else { continue };
        if e.expires_ns > now {
            // A new connection took this 5-tuple after our read: put it back, unless yet
            // another one has taken the key since, in which case this one is gone for good.
            const BPF_NOEXIST: u64 = 1;
            if m.conns.insert(k, e, BPF_NOEXIST).is_err() {
                unbind(m, &e);
            }
            continue;
        }
        unbind(m, &e);
        n += 1;
        let e = &e;
        let ok = out_key(k, e);
        if matches!(m.out.get(&ok, 0), Ok(r) if r.in_key == *k) {
            let _ = m.out.remove(&ok);
        }
    }
    // Reverse entries whose connection is gone or was replaced by one to another server.
    let stale: Vec<FlowKey> = m
        .out
        .iter()
        .filter_map(Result::ok)
        .filter(|(ok, r)| match m.conns.get(&r.in_key, 0) {
            Ok(e) => e.daddr != ok.src || e.dport != ok.sport,
            Err(_) => true,
        })
        .map(|(ok, _)| ok)
        .collect();
    for ok in stale {
        let _ = m.out.remove(&ok);
    }
    sweep_templates(m, &controlled, now);
    sweep_callids(m);
    n
}

/// Removes the Call-IDs whose template is gone other than by expiry (invalidated: moved to
/// its 0xffff key; or never made: the template table was full). The dataplane records a
/// Call-ID just before it makes the template, so only one found alone at two sweeps in a row
/// goes.
fn sweep_callids(m: &mut ConnMaps) {
    let keys: Vec<FlowKey> = m.sip_callids.keys().filter_map(Result::ok).collect();
    let mut alone = std::collections::HashSet::new();
    for k in keys {
        if m.templates.get(&k, 0).is_err() {
            if m.orphans.contains(&k) {
                let _ = m.sip_callids.remove(&k);
            } else {
                alone.insert(k);
            }
        }
    }
    m.orphans = alone;
}

/// How far ahead of its due time a template is postponed: a little more than one sweep, so
/// that the dataplane never sees a template expire that the kernel's timer would have
/// postponed (it finds a controlled connection alive at the due time).
const POSTPONE_AHEAD_NS: u64 = 1_500_000_000;

/// Postpones or removes persistence templates that are due (`ip_vs_conn_expire` on a
/// template): one that still controls a connection alive past its due time gets 60 s more,
/// the others go, and their server loses a PersistConn.
fn sweep_templates(m: &mut ConnMaps, controlled: &StdHashMap<FlowKey, u64>, now: u64) {
    let due: Vec<(FlowKey, Template)> = m
        .templates
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, t)| t.expires_ns <= now + POSTPONE_AHEAD_NS)
        .collect();
    for (k, t) in due {
        let alive_until = controlled.get(&k).copied().unwrap_or(0);
        if let Some(expires_ns) = persist::postponed(t.expires_ns, alive_until, now) {
            // Written back only if the dataplane did not touch it since we read it. (It may
            // still restart the timer between this read and the write: then the restart is
            // lost and the template keeps the postponed expiry, at least 60 s away.)
            if matches!(m.templates.get(&k, 0), Ok(cur) if cur == t) {
                const BPF_EXIST: u64 = 2;
                let _ = m.templates.insert(k, Template { expires_ns, timeout_s: persist::POSTPONE_SECS, ..t }, BPF_EXIST);
            }
            continue;
        }
        if t.expires_ns > now {
            continue;
        }
        let Some(gone) = lookup_and_delete::<Template>(&m.templates_raw, &k) else { continue };
        if gone.expires_ns > now {
            // Used again after our read: put it back unless a newer one took the key.
            const BPF_NOEXIST: u64 = 1;
            if m.templates.insert(k, gone, BPF_NOEXIST).is_ok() {
                continue;
            }
        }
        m.counters.uncount_template(gone.dest_id);
        if lvs_common::sip::key_mark(&k) != 0 {
            let _ = m.sip_callids.remove(&k);
        }
    }
}

/// Starts the reclaim thread; it stops when `stop` is set.
pub fn spawn(maps_dir: PathBuf, stop: Arc<AtomicBool>) -> anyhow::Result<thread::JoinHandle<()>> {
    let mut maps = open(&maps_dir)?;
    Ok(thread::Builder::new().name("lvs-reclaim".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let n = sweep(&mut maps);
            if n > 0 {
                debug!(reclaimed = n, "expired connections reclaimed");
            }
            for _ in 0..10 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                thread::sleep(Duration::from_millis(100));
            }
        }
    })?)
}
