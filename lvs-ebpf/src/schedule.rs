//! Picking a real server for a new connection.

use core::ffi::c_void;

use aya_ebpf::helpers::bpf_loop;
use lvs_common::{
    sched_dynamic::{is_dynamic, Chooser, NONE},
    service::{dest_flags, rr_index, rr_start, sched, DestConf, ServiceConf, MAX_DESTS_PER_SVC},
};

use crate::maps::{DESTS, DEST_COUNTERS, SCHED_STATE, SERVICES};

/// Whether a real server may take any new connection: live and not overloaded (thresholds).
#[inline(always)]
fn usable(id: u32, d: &DestConf) -> bool {
    let overloaded = match DEST_COUNTERS.get(id) {
        Some(c) => c.overload != 0,
        None => true,
    };
    d.flags & dest_flags::AVAILABLE != 0 && d.flags & dest_flags::OVERLOAD == 0 && !overloaded
}

/// rr's test, the same for most IPVS schedulers: usable and weight > 0.
#[inline(always)]
fn eligible(id: u32, d: &DestConf) -> bool {
    usable(id, d) && d.weight > 0
}

/// The `DESTS` slot chosen for a new connection to service `svc_id`, or `None` when no real
/// server is available.
#[inline(always)]
pub fn pick(svc_id: u32, svc: &ServiceConf) -> Option<u32> {
    match svc.sched {
        sched::RR => round_robin(svc_id, svc),
        s if is_dynamic(s) => least_loaded(svc_id, svc),
        _ => None,
    }
}

/// State shared with the `bpf_loop` callback of [`least_loaded`].
#[repr(C)]
struct DynWalk {
    svc_id: u32,
    _pad: u32,
    chooser: Chooser,
}

/// Offers the `i`-th real server in kernel order to the chooser.
extern "C" fn dyn_step(i: u64, ctx: *mut c_void) -> i64 {
    let w = unsafe { &mut *(ctx as *mut DynWalk) };
    let Some(svc) = SERVICES.get(w.svc_id) else { return 1 };
    let Some(id) = svc.dests.get(i as usize) else { return 1 };
    let (Some(d), Some(c)) = (DESTS.get(*id), DEST_COUNTERS.get(*id)) else { return 0 };
    w.chooser.offer(i as u32, usable(*id, d), d.weight, c);
    if w.chooser.done != 0 {
        1
    } else {
        0
    }
}

/// lc, wlc, sed, nq, fo, ovf: one walk over the real servers in kernel order comparing their
/// live connection counters (`DEST_COUNTERS`). The counters are read without a lock while
/// other CPUs may be adding connections, as the kernel reads its atomics.
#[inline(always)]
fn least_loaded(svc_id: u32, svc: &ServiceConf) -> Option<u32> {
    let count = svc.dest_count;
    if count == 0 || count as usize > MAX_DESTS_PER_SVC {
        return None;
    }
    let mut walk = DynWalk { svc_id, _pad: 0, chooser: Chooser::new(svc.sched) };
    unsafe {
        bpf_loop(count, dyn_step as *mut c_void, &mut walk as *mut DynWalk as *mut c_void, 0);
    }
    let idx = walk.chooser.found;
    if idx == NONE {
        return None;
    }
    svc.dests.get(idx as usize).copied()
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
        Some(d) if eligible(*id, d) => {
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
