//! Reclaiming expired connections.
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

use aya::maps::{Array, HashMap, Map, MapData};
use lvs_common::{
    flow::{ConnEntry, ConnRef, FlowKey},
    map_names,
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
}

fn open(dir: &std::path::Path) -> anyhow::Result<ConnMaps> {
    let m = |n: &str| -> anyhow::Result<Map> {
        Ok(Map::from_map_data(MapData::from_pin(dir.join(n))?)?)
    };
    Ok(ConnMaps {
        conns: HashMap::try_from(m(map_names::CONNS)?)?,
        conns_raw: MapData::from_pin(dir.join(map_names::CONNS))?,
        out: HashMap::try_from(m(map_names::CONNS_OUT)?)?,
        dests: Array::try_from(m(map_names::DESTS)?)?,
        counters: CounterMemory::map(&MapData::from_pin(dir.join(map_names::DEST_COUNTERS))?)?,
    })
}

/// `BPF_MAP_LOOKUP_AND_DELETE_ELEM` on a hash map: removes the entry and returns what it was.
fn lookup_and_delete(map: &MapData, key: &FlowKey) -> Option<ConnEntry> {
    #[repr(C)]
    struct Attr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;
    let mut value = ConnEntry::default();
    let attr = Attr {
        map_fd: map.fd().as_fd().as_raw_fd() as u32,
        _pad: 0,
        key: key as *const FlowKey as u64,
        value: &mut value as *mut ConnEntry as u64,
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
    let expired: Vec<(FlowKey, ConnEntry)> = m
        .conns
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, e)| e.expires_ns <= now)
        .collect();
    let mut n = 0;
    for (k, _) in &expired {
        let Some(e) = lookup_and_delete(&m.conns_raw, k) else { continue };
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
    n
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
