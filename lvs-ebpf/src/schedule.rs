//! Picking a real server for a new connection.

use core::ffi::c_void;

use aya_ebpf::helpers::bpf_loop;
use lvs_common::service::{
    dest_flags, rr_index, rr_start, sched, DestConf, ServiceConf, MAX_DESTS_PER_SVC,
};

use crate::maps::{DESTS, SCHED_STATE, SERVICES};

/// Whether a real server may take a new connection: live, weight > 0, not overloaded. The same
/// test gates every IPVS scheduler.
#[inline(always)]
fn eligible(d: &DestConf) -> bool {
    d.flags & dest_flags::AVAILABLE != 0 && d.flags & dest_flags::OVERLOAD == 0 && d.weight > 0
}

/// The `DESTS` slot chosen for a new connection to service `svc_id`, or `None` when no real
/// server is available.
#[inline(always)]
pub fn pick(svc_id: u32, svc: &ServiceConf) -> Option<u32> {
    match svc.sched {
        sched::RR => round_robin(svc_id, svc),
        _ => None,
    }
}

/// State shared with the `bpf_loop` callback (lives on the caller's stack).
#[repr(C)]
struct RrWalk {
    svc_id: u32,
    start: u32,
    count: u32,
    /// Index into `ServiceConf::dests` of the server found, or `u32::MAX`.
    found: u32,
}

/// One step of the rr walk. Runs under `bpf_loop`, so the verifier checks this body once
/// instead of unrolling up to 256 iterations, which blew its 1M-instruction budget.
extern "C" fn rr_step(i: u64, ctx: *mut c_void) -> i64 {
    let w = unsafe { &mut *(ctx as *mut RrWalk) };
    let idx = rr_index(w.start, i as u32, w.count);
    // The service is looked up again rather than passed as a pointer through the stack.
    let Some(svc) = SERVICES.get(w.svc_id) else { return 1 };
    let Some(id) = svc.dests.get(idx as usize) else { return 1 };
    match DESTS.get(*id) {
        Some(d) if eligible(d) => {
            w.found = idx;
            1
        }
        _ => 0,
    }
}

/// IPVS rr: walk on from the server after the last one chosen, wrapping once.
///
/// The position is read and written without a lock: two CPUs scheduling the same service at
/// the same instant may pick the same server. Sequential connections alternate exactly.
#[inline(always)]
fn round_robin(svc_id: u32, svc: &ServiceConf) -> Option<u32> {
    let state = SCHED_STATE.get_ptr_mut(svc_id)?;
    let count = svc.dest_count;
    if count == 0 || count as usize > MAX_DESTS_PER_SVC {
        return None;
    }
    let mut walk =
        RrWalk { svc_id, start: rr_start(unsafe { (*state).rr_next }, count), count, found: u32::MAX };
    unsafe {
        bpf_loop(count, rr_step as *mut c_void, &mut walk as *mut RrWalk as *mut c_void, 0);
    }
    let idx = walk.found;
    let dest = *svc.dests.get(idx as usize)?;
    unsafe { (*state).rr_next = idx + 1 };
    Some(dest)
}
