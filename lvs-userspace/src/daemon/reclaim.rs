//! Reclaiming expired connections.
//!
//! The dataplane stops matching an entry the moment it expires (it compares `expires_ns` with
//! the clock on every lookup); this thread frees the slots so the table does not fill up,
//! once per second, from its own handles on the pinned maps.
//!
//! Race left open: between reading an expired entry and deleting it, a new SYN with the very
//! same 5-tuple may have re-created it in the dataplane; the delete then removes the new
//! connection. The value is re-read right before the delete to keep that window to one
//! syscall.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use aya::maps::{HashMap, Map, MapData};
use lvs_common::{
    flow::{ConnEntry, ConnRef, FlowKey},
    map_names,
};
use tracing::debug;

use super::tables::{monotonic_ns, out_key};

struct ConnMaps {
    conns: HashMap<MapData, FlowKey, ConnEntry>,
    out: HashMap<MapData, FlowKey, ConnRef>,
}

fn open(dir: &std::path::Path) -> anyhow::Result<ConnMaps> {
    let m = |n: &str| -> anyhow::Result<Map> {
        Ok(Map::from_map_data(MapData::from_pin(dir.join(n))?)?)
    };
    Ok(ConnMaps {
        conns: HashMap::try_from(m(map_names::CONNS)?)?,
        out: HashMap::try_from(m(map_names::CONNS_OUT)?)?,
    })
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
    for (k, e) in &expired {
        match m.conns.get(k, 0) {
            Ok(cur) if cur == *e => {}
            _ => continue, // refreshed or replaced meanwhile
        }
        if m.conns.remove(k).is_ok() {
            n += 1;
        }
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
