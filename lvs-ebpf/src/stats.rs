//! Per-CPU counters: every packet bumps exactly one verdict counter; packets of connections
//! also count in their service's and real server's traffic statistics.

use lvs_common::{
    counters::Counter,
    service::{MAX_DESTS, MAX_SERVICES},
    stats::{dest_index, svc_index, TOTAL_INDEX},
};

use crate::maps::{IPVS_STATS, STATS};

#[inline(always)]
pub fn count(c: Counter) {
    if let Some(p) = STATS.get_ptr_mut(c as u32) {
        // Per-CPU slot: no other CPU writes it, a plain add is enough.
        unsafe { *p += 1 };
    }
}

/// Adds one packet of `bytes` (and `conns` new connections) to the real server, its service
/// and the totals, in the direction given: IPVS's `ip_vs_in_stats` / `ip_vs_out_stats` (and
/// `ip_vs_conn_stats` for the first packet). Callers count only while the real server is
/// available, as the kernel does.
#[inline(always)]
pub fn traffic(svc_id: u32, dest_id: u32, inbound: bool, conns: u64, bytes: u64) {
    // Slots come from our own maps, but a bad one must never land in another object's entry.
    if svc_id >= MAX_SERVICES || dest_id >= MAX_DESTS {
        return;
    }
    for idx in [dest_index(dest_id), svc_index(svc_id), TOTAL_INDEX] {
        if let Some(s) = IPVS_STATS.get_ptr_mut(idx) {
            // Per-CPU entry: only this CPU writes it, plain adds are enough.
            unsafe {
                (*s).conns += conns;
                if inbound {
                    (*s).inpkts += 1;
                    (*s).inbytes += bytes;
                } else {
                    (*s).outpkts += 1;
                    (*s).outbytes += bytes;
                }
            }
        }
    }
}
