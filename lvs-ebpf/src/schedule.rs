//! Picking a real server for a new connection.

use core::ffi::c_void;

use aya_ebpf::helpers::{bpf_get_prandom_u32, bpf_loop};
use lvs_common::{
    maglev::{mh_fallback_probe, mh_lookup_slot, MH_TABLE_SIZE},
    sched_dynamic::{is_dynamic, Chooser, NONE},
    sched_hash::{dh_bucket, sh_bucket, sh_fallback_probe, EMPTY},
    service::{
        dest_flags, overhead, rr_index, rr_start, sched, DestConf, DestCounters, LblcEntry, LblcKey,
        LblcrEntry, ServiceConf, LBLCR_EXPIRATION_NS, LBLCR_SET_MAX, LBLC_EXPIRATION_NS,
        MAX_DESTS_PER_SVC, SVC_F_SCHED_FALLBACK, SVC_F_SCHED_PORT,
    },
    twos::{twos_draw, twos_range, TwosPick},
    wrr::{wrr_takes, WrrCall},
    AF_INET,
};

use crate::{
    maps::{DESTS, DEST_COUNTERS, HASH_TABLES, LBLCR_CACHE, LBLC_CACHE, MH_TABLES, SCHED_STATE, SERVICES},
    parse::Packet,
};

/// Whether a real server may take any new connection: live and not overloaded (the OVERLOAD
/// flag, or the thresholds' mark in its counters). Every scheduler's test starts here.
#[inline(always)]
fn takes_new(d: &DestConf, c: &DestCounters) -> bool {
    d.flags & dest_flags::AVAILABLE != 0 && d.flags & dest_flags::OVERLOAD == 0 && c.overload == 0
}

/// [`takes_new`] for a server whose counters the caller has not read.
#[inline(always)]
fn usable(id: u32, d: &DestConf) -> bool {
    DEST_COUNTERS.get(id).is_some_and(|c| takes_new(d, c))
}

/// rr's test, the same for most IPVS schedulers: usable and weight > 0.
#[inline(always)]
fn eligible(id: u32, d: &DestConf) -> bool {
    usable(id, d) && d.weight > 0
}

/// The `DESTS` slot chosen for a new connection to service `svc_id`, or `None` when no real
/// server is available.
#[inline(always)]
pub fn pick(svc_id: u32, svc: &ServiceConf, pkt: &Packet, now: u64) -> Option<u32> {
    match svc.sched {
        sched::RR => round_robin(svc_id, svc),
        sched::WRR => weighted_round_robin(svc_id, svc),
        sched::TWOS => two_choices(svc_id, svc),
        sched::LBLC => lblc(svc_id, svc, pkt, now),
        sched::LBLCR => lblcr(svc_id, svc, pkt, now),
        sched::DH => dh(svc_id, svc, pkt),
        sched::SH => sh(svc_id, svc, pkt),
        sched::MH => mh(svc_id, svc, pkt),
        s if is_dynamic(s) => least_loaded(svc_id, svc, svc.sched),
        _ => None,
    }
}

/// State shared with the `bpf_loop` callback of [`least_loaded`].
#[repr(C)]
struct DynWalk {
    svc_id: u32,
    /// The service's number of real servers (`dest_count`).
    count: u32,
    chooser: Chooser,
}

/// Real servers offered per call of [`dyn_step`]: the call, the service's lookup and the
/// loop's own step are paid once for that many servers (with one server per call the walk
/// cost about 12 ns per server).
const DYN_UNROLL: u32 = 8;
const _: () = assert!(MAX_DESTS_PER_SVC as u32 % DYN_UNROLL == 0 && DYN_UNROLL.is_power_of_two());

/// Offers the real servers at positions `DYN_UNROLL * i ..` (kernel order) to the chooser, in
/// order; stops the walk at the end of the list or when the choice is final.
extern "C" fn dyn_step(i: u64, ctx: *mut c_void) -> i64 {
    let w = unsafe { &mut *(ctx as *mut DynWalk) };
    let Some(svc) = SERVICES.get(w.svc_id) else { return 1 };
    // `i` is below `MAX_DESTS_PER_SVC / DYN_UNROLL` (the loop's count); masked so that the
    // verifier sees every position within `dests` (LLVM folds the bounds check of the index
    // into a form it cannot follow).
    let base = (i as u32 & (MAX_DESTS_PER_SVC as u32 / DYN_UNROLL - 1)) * DYN_UNROLL;
    for k in 0..DYN_UNROLL {
        let pos = base + k;
        // Past the end (the last call's tail) nothing is offered; once the choice is final
        // (`done`) `offer` ignores the rest. No early return: every path through the body
        // meets again after each server, which keeps the verifier's work linear in
        // `DYN_UNROLL`.
        if pos < w.count {
            if let Some(id) = svc.dests.get(pos as usize) {
                if let (Some(d), Some(c)) = (DESTS.get(*id), DEST_COUNTERS.get(*id)) {
                    w.chooser.offer(pos, takes_new(d, c), d.weight, c);
                }
            }
        }
    }
    (w.chooser.done != 0) as i64
}

/// lc, wlc, sed, nq, fo, ovf: one walk over the real servers in kernel order comparing their
/// live connection counters (`DEST_COUNTERS`). The counters are read without a lock while
/// other CPUs may be adding connections, as the kernel reads its atomics.
#[inline(always)]
fn least_loaded(svc_id: u32, svc: &ServiceConf, s: u32) -> Option<u32> {
    let count = svc.dest_count;
    if count == 0 || count as usize > MAX_DESTS_PER_SVC {
        return None;
    }
    let mut walk = DynWalk { svc_id, count, chooser: Chooser::new(s) };
    unsafe {
        bpf_loop(count.div_ceil(DYN_UNROLL), dyn_step as *mut c_void, &mut walk as *mut DynWalk as *mut c_void, 0);
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

/// State of wrr's first walk (see [`WrrCall`]), shared with its `bpf_loop` callback. Only
/// `max_ok` and `found` change between calls, and only to values read from the maps or to the
/// loop index, so the verifier sees the callback's state repeat and stops re-checking it.
#[repr(C)]
struct WrrFirst {
    svc_id: u32,
    call: WrrCall,
    /// Highest weight of a server not overloaded read so far.
    max_ok: i32,
    /// Position chosen in the rest of the current pass, or `NONE`.
    found: u32,
}

/// wrr's test for the server at position `pos`: `(weight, overloaded)`, or `None` past the
/// list. "Overloaded" is the kernel's OVERLOAD flag, here also the thresholds' mark and a
/// server no longer available.
#[inline(always)]
fn wrr_dest(svc_id: u32, pos: u32) -> Option<(i32, bool)> {
    let svc = SERVICES.get(svc_id)?;
    let id = *svc.dests.get(pos as usize)?;
    let d = DESTS.get(id)?;
    Some((d.weight, !usable(id, d)))
}

extern "C" fn wrr_first_step(i: u64, ctx: *mut c_void) -> i64 {
    let w = unsafe { &mut *(ctx as *mut WrrFirst) };
    let (pos, in_pass) = w.call.first_walk_pos(i as u32);
    let Some((weight, ov)) = wrr_dest(w.svc_id, pos) else { return 1 };
    if !ov && weight > w.max_ok {
        w.max_ok = weight;
    }
    if in_pass && wrr_takes(weight, ov, w.call.cw) {
        w.found = pos;
        return 1;
    }
    0
}

/// State of wrr's second walk: positions `0..limit` at threshold `cw`.
#[repr(C)]
struct WrrSecond {
    svc_id: u32,
    cw: i32,
    found: u32,
}

extern "C" fn wrr_second_step(i: u64, ctx: *mut c_void) -> i64 {
    let w = unsafe { &mut *(ctx as *mut WrrSecond) };
    let Some((weight, ov)) = wrr_dest(w.svc_id, i as u32) else { return 1 };
    if wrr_takes(weight, ov, w.cw) {
        w.found = i as u32;
        return 1;
    }
    0
}

/// IPVS wrr: the kernel's mark (`SchedState::wrr`, reset by userspace where the kernel resets
/// it) and its pass-by-pass walk, done in at most two walks of the list (`lvs_common::wrr`).
///
/// The kernel takes a per-service spinlock around the walk; BPF cannot hold a lock across
/// `bpf_loop`, so the mark is read at the start and written at the end without one. Two CPUs
/// scheduling the same service at the same instant both start from the same mark, may choose
/// the same server, and the later write wins: the sequence then loses one step (one server
/// gets a connection more and another one fewer in that cycle), and goes on from a valid mark.
/// Sequential connections follow the kernel's sequence exactly.
#[inline(always)]
fn weighted_round_robin(svc_id: u32, svc: &ServiceConf) -> Option<u32> {
    let state = SCHED_STATE.get_ptr_mut(svc_id)?;
    let count = svc.dest_count;
    if count as usize > MAX_DESTS_PER_SVC {
        return None;
    }
    let mut mark = unsafe { (*state).wrr };
    // mw == 0: no server with a weight ("no destination available"); the mark stays.
    let call = WrrCall::new(&mark, count).ok()?;
    let mut first = WrrFirst { svc_id, call, max_ok: 0, found: NONE };
    unsafe {
        bpf_loop(count, wrr_first_step as *mut c_void, &mut first as *mut WrrFirst as *mut c_void, 0);
    }
    let mut pos = first.found;
    if pos == NONE {
        let plan = call.plan(first.max_ok);
        if plan.cw > 0 {
            let mut second = WrrSecond { svc_id, cw: plan.cw, found: NONE };
            let limit = if plan.limit < count { plan.limit } else { count };
            unsafe {
                bpf_loop(limit, wrr_second_step as *mut c_void, &mut second as *mut WrrSecond as *mut c_void, 0);
            }
            pos = second.found;
        }
        if pos == NONE {
            // The kernel gives up ("all destinations are overloaded") and leaves its mark.
            mark.cl = plan.fail_cl;
            mark.cw = plan.fail_cw;
        } else {
            mark.cl = pos as i32;
            mark.cw = plan.cw;
        }
    } else {
        mark.cl = pos as i32;
    }
    unsafe {
        (*state).wrr.cl = mark.cl;
        (*state).wrr.cw = mark.cw;
    }
    if pos == NONE {
        return None;
    }
    svc.dests.get(pos as usize).copied()
}

/// State of twos's first walk: the sum of the eligible servers' weights.
#[repr(C)]
struct TwosSum {
    svc_id: u32,
    sum: u32,
}

extern "C" fn twos_sum_step(i: u64, ctx: *mut c_void) -> i64 {
    let w = unsafe { &mut *(ctx as *mut TwosSum) };
    let Some(svc) = SERVICES.get(w.svc_id) else { return 1 };
    let Some(id) = svc.dests.get(i as usize) else { return 1 };
    if let Some(d) = DESTS.get(*id) {
        if eligible(*id, d) {
            w.sum = w.sum.wrapping_add(d.weight as u32);
        }
    }
    0
}

/// State of twos's second walk.
#[repr(C)]
struct TwosWalk {
    svc_id: u32,
    _pad: u32,
    pick: TwosPick,
}

extern "C" fn twos_pick_step(i: u64, ctx: *mut c_void) -> i64 {
    let w = unsafe { &mut *(ctx as *mut TwosWalk) };
    let Some(svc) = SERVICES.get(w.svc_id) else { return 1 };
    let Some(id) = svc.dests.get(i as usize) else { return 1 };
    let (Some(d), Some(c)) = (DESTS.get(*id), DEST_COUNTERS.get(*id)) else { return 0 };
    if w.pick.offer(i as u32, takes_new(d, c), d.weight, c) {
        1
    } else {
        0
    }
}

/// twos (kernel 6.x): two servers drawn in proportion to their weights with
/// `bpf_get_prandom_u32` (the kernel's `get_random_u32_below`), the less loaded per weight of
/// the two wins. Stateless, so concurrent CPUs only share the counters, read as the kernel
/// reads its atomics. A server whose state changes between the two walks (another CPU sets
/// OVERLOAD) is skipped by the second: if a draw then falls past the end, the other draw (or,
/// with neither, no server) is used, where the kernel, walking once under RCU, would not see
/// the change at all.
#[inline(always)]
fn two_choices(svc_id: u32, svc: &ServiceConf) -> Option<u32> {
    let count = svc.dest_count;
    if count == 0 || count as usize > MAX_DESTS_PER_SVC {
        return None;
    }
    let mut sum = TwosSum { svc_id, sum: 0 };
    unsafe {
        bpf_loop(count, twos_sum_step as *mut c_void, &mut sum as *mut TwosSum as *mut c_void, 0);
    }
    let range = twos_range(sum.sum)?;
    let (r1, r2) = unsafe { (bpf_get_prandom_u32(), bpf_get_prandom_u32()) };
    let mut walk = TwosWalk { svc_id, _pad: 0, pick: TwosPick::new(twos_draw(r1, range), twos_draw(r2, range)) };
    unsafe {
        bpf_loop(count, twos_pick_step as *mut c_void, &mut walk as *mut TwosWalk as *mut c_void, 0);
    }
    let idx = walk.pick.choice()?;
    svc.dests.get(idx as usize).copied()
}

/// State of the walk that looks for a lightly loaded server (lblc's overload test).
#[repr(C)]
struct LightWalk {
    svc_id: u32,
    found: u32,
}

extern "C" fn light_step(i: u64, ctx: *mut c_void) -> i64 {
    let w = unsafe { &mut *(ctx as *mut LightWalk) };
    let Some(svc) = SERVICES.get(w.svc_id) else { return 1 };
    let Some(id) = svc.dests.get(i as usize) else { return 1 };
    let (Some(d), Some(c)) = (DESTS.get(*id), DEST_COUNTERS.get(*id)) else { return 0 };
    // `activeconns * 2 < weight`, in the kernel's int arithmetic.
    if (c.active as i64) * 2 < d.weight as i64 {
        w.found = 1;
        return 1;
    }
    0
}

/// lblc's `is_overloaded`: more active connections than weight while some server of the
/// service is below half its weight.
#[inline(always)]
fn lblc_overloaded(svc_id: u32, svc: &ServiceConf, d: &DestConf, active: u64) -> bool {
    if active <= d.weight.max(0) as u64 {
        return false;
    }
    let count = svc.dest_count;
    if count as usize > MAX_DESTS_PER_SVC {
        return true;
    }
    let mut walk = LightWalk { svc_id, found: 0 };
    unsafe {
        bpf_loop(count, light_step as *mut c_void, &mut walk as *mut LightWalk as *mut c_void, 0);
    }
    walk.found != 0
}

/// lblc (locality-based least connection): the server cached for the packet's destination
/// address, while it is in the service with weight > 0 and not lblc-overloaded (the OVERLOAD
/// mark of the thresholds is not checked on this path, as in the kernel); otherwise wlc, whose
/// choice replaces the cache entry.
#[inline(always)]
fn lblc(svc_id: u32, svc: &ServiceConf, pkt: &Packet, now: u64) -> Option<u32> {
    let key = cache_key(svc_id, pkt);
    if let Some(e) = LBLC_CACHE.get_ptr_mut(&key) {
        let (dest_id, lastuse) = unsafe { ((*e).dest_id, (*e).lastuse_ns) };
        if now.wrapping_sub(lastuse) <= LBLC_EXPIRATION_NS {
            unsafe { (*e).lastuse_ns = now };
            if let (Some(d), Some(c)) = (DESTS.get(dest_id), DEST_COUNTERS.get(dest_id)) {
                // "Available": still one of this service's servers.
                if d.flags & dest_flags::AVAILABLE != 0
                    && d.svc_id == svc_id
                    && d.weight > 0
                    && !lblc_overloaded(svc_id, svc, d, c.active)
                {
                    return Some(dest_id);
                }
            }
        }
    }
    let dest_id = least_loaded(svc_id, svc, sched::WLC)?;
    let _ = LBLC_CACHE.insert(&key, &LblcEntry { dest_id, _pad: 0, lastuse_ns: now }, 0);
    Some(dest_id)
}

#[inline(always)]
fn cache_key(svc_id: u32, pkt: &Packet) -> LblcKey {
    LblcKey { svc_id, addr: [pkt.daddr, 0, 0, 0], family: AF_INET, _pad: [0; 3] }
}

/// A member of service `svc_id`'s lblcr set, with its config and counters, if it is still one
/// of the service's servers (the kernel's AVAILABLE).
#[inline(always)]
fn member(svc_id: u32, id: u32) -> Option<(&'static DestConf, u64, u64, bool)> {
    let d = DESTS.get(id)?;
    let c = DEST_COUNTERS.get(id)?;
    // "Available" also means still one of this service's servers: sets keep deleted ones.
    Some((d, overhead(c), c.active, d.svc_id == svc_id && takes_new(d, c)))
}

/// `ip_vs_dest_set_min`: the first usable member with weight > 0, then the least
/// overhead/weight (signed 64-bit products, as in the kernel); `(slot, active)`.
#[inline(always)]
fn set_min(svc_id: u32, e: &LblcrEntry) -> Option<(u32, u64)> {
    let mut least: Option<(u32, u64, i64, u64)> = None; // slot, overhead, weight, active
    for i in 0..LBLCR_SET_MAX {
        if i >= e.count as usize {
            break;
        }
        let id = e.dests[i];
        let Some((d, doh, active, usable)) = member(svc_id, id) else { continue };
        if !usable {
            continue;
        }
        match least {
            None if d.weight > 0 => least = Some((id, doh, d.weight as i64, active)),
            None => {}
            Some((_, loh, lw, _)) => {
                if (loh as i64).wrapping_mul(d.weight as i64) > (doh as i64).wrapping_mul(lw) {
                    least = Some((id, doh, d.weight as i64, active));
                }
            }
        }
    }
    least.map(|(id, _, _, active)| (id, active))
}

/// `ip_vs_dest_set_max`: the member with the most overhead/weight among weight > 0 (32-bit
/// overheads, as the kernel's `int`s); its index in the set.
#[inline(always)]
fn set_max(e: &LblcrEntry) -> Option<usize> {
    let mut most: Option<(usize, i64, i64)> = None; // index, overhead, weight
    for i in 0..LBLCR_SET_MAX {
        if i >= e.count as usize {
            break;
        }
        let (Some(d), Some(c)) = (DESTS.get(e.dests[i]), DEST_COUNTERS.get(e.dests[i])) else { continue };
        if d.weight <= 0 {
            continue;
        }
        let doh = overhead(c) as i32 as i64;
        match most {
            None => most = Some((i, doh, d.weight as i64)),
            Some((_, moh, mw)) => {
                if moh * (d.weight as i64) < doh * mw {
                    most = Some((i, doh, d.weight as i64));
                }
            }
        }
    }
    most.map(|(i, _, _)| i)
}

/// Removes member `idx`, keeping the order of the others.
#[inline(always)]
fn set_erase(e: &mut LblcrEntry, idx: usize, now: u64) {
    for i in 0..LBLCR_SET_MAX - 1 {
        if i >= idx && i + 1 < e.count as usize {
            e.dests[i] = e.dests[i + 1];
        }
    }
    e.count = e.count.saturating_sub(1);
    e.lastmod_ns = now;
}

/// `ip_vs_dest_set_insert` with its duplicate check: a new member goes to the head.
#[inline(always)]
fn set_insert(e: &mut LblcrEntry, id: u32, now: u64) {
    for i in 0..LBLCR_SET_MAX {
        if i < e.count as usize && e.dests[i] == id {
            return;
        }
    }
    let mut i = LBLCR_SET_MAX - 1;
    while i > 0 {
        e.dests[i] = e.dests[i - 1];
        i -= 1;
    }
    e.dests[0] = id;
    if (e.count as usize) < LBLCR_SET_MAX {
        e.count += 1;
    }
    e.lastmod_ns = now;
}

/// lblcr (lblc with replication): the least loaded usable member of the destination's set,
/// unless lblc-overloaded; then wlc over the service, whose choice joins the set. A set that
/// has not changed for `lblcr_expiration` loses its most loaded member first.
#[inline(always)]
fn lblcr(svc_id: u32, svc: &ServiceConf, pkt: &Packet, now: u64) -> Option<u32> {
    let key = cache_key(svc_id, pkt);
    if let Some(p) = LBLCR_CACHE.get_ptr_mut(&key) {
        let e = unsafe { &mut *p };
        e.lastuse_ns = now;
        let min = set_min(svc_id, e);
        if e.count > 1 && now.wrapping_sub(e.lastmod_ns) > LBLCR_EXPIRATION_NS {
            if let Some(i) = set_max(e) {
                set_erase(e, i, now);
            }
        }
        if let Some((id, active)) = min {
            if let Some(d) = DESTS.get(id) {
                if !lblc_overloaded(svc_id, svc, d, active) {
                    return Some(id);
                }
            }
        }
        let id = least_loaded(svc_id, svc, sched::WLC)?;
        set_insert(e, id, now);
        return Some(id);
    }
    let id = least_loaded(svc_id, svc, sched::WLC)?;
    let mut e = LblcrEntry { count: 1, lastuse_ns: now, lastmod_ns: now, ..Default::default() };
    e.dests[0] = id;
    let _ = LBLCR_CACHE.insert(&key, &e, 0);
    Some(id)
}

/// The real server at position `pos` of the service's list if it may take a new connection
/// (the hash schedulers' "available": weight > 0 and not overloaded).
#[inline(always)]
fn usable_at(svc_id: u32, pos: u16) -> Option<u32> {
    let svc = SERVICES.get(svc_id)?;
    let id = *svc.dests.get(pos as usize)?;
    let d = DESTS.get(id)?;
    eligible(id, d).then_some(id)
}

/// The position in bucket `b` of the service's table.
#[inline(always)]
fn bucket(svc_id: u32, b: u8) -> Option<u16> {
    HASH_TABLES.get(svc_id)?.slots.get(b as usize).copied()
}

/// dh: the server in the bucket of the destination address, or none (no fallback).
#[inline(always)]
fn dh(svc_id: u32, _svc: &ServiceConf, pkt: &Packet) -> Option<u32> {
    let pos = bucket(svc_id, dh_bucket(u32::from_be(pkt.daddr)))?;
    if pos == EMPTY {
        return None;
    }
    usable_at(svc_id, pos)
}

/// State of sh's fallback probe walk.
#[repr(C)]
struct ShProbe {
    svc_id: u32,
    ihash: u32,
    found: u32,
}

/// One probe of a hash scheduler's fallback, as a `bpf_loop` step: stop (1) at an empty or
/// unreadable entry, or at a usable server, which goes to `found`; else go on (0).
#[inline(always)]
fn probe(svc_id: u32, pos: Option<u16>, found: &mut u32) -> i64 {
    let Some(pos) = pos else { return 1 };
    if pos == EMPTY {
        return 1;
    }
    match usable_at(svc_id, pos) {
        Some(id) => {
            *found = id;
            1
        }
        None => 0,
    }
}

extern "C" fn sh_probe_step(i: u64, ctx: *mut c_void) -> i64 {
    let w = unsafe { &mut *(ctx as *mut ShProbe) };
    probe(w.svc_id, bucket(w.svc_id, sh_fallback_probe(w.ihash as u8, i as u8)), &mut w.found)
}

/// sh: the server in the bucket of the client's address (and port with `sh-port`); if it
/// can't take the connection, none, or with `sh-fallback` the first usable server along the
/// kernel's probe sequence.
#[inline(always)]
fn sh(svc_id: u32, svc: &ServiceConf, pkt: &Packet) -> Option<u32> {
    let ihash = sh_bucket(u32::from_be(pkt.saddr), u16::from_be(pkt.sport), svc.flags & SVC_F_SCHED_PORT != 0);
    let pos = bucket(svc_id, ihash)?;
    if pos == EMPTY {
        return None;
    }
    if let Some(id) = usable_at(svc_id, pos) {
        return Some(id);
    }
    if svc.flags & SVC_F_SCHED_FALLBACK == 0 {
        return None;
    }
    let mut walk = ShProbe { svc_id, ihash: ihash as u32, found: NONE };
    unsafe {
        bpf_loop(256, sh_probe_step as *mut c_void, &mut walk as *mut ShProbe as *mut c_void, 0);
    }
    (walk.found != NONE).then_some(walk.found)
}

/// The position in slot `i` of the service's Maglev table.
#[inline(always)]
fn mh_slot(svc_id: u32, i: u16) -> Option<u16> {
    let t = unsafe { MH_TABLES.get(&svc_id) }?;
    // `i` is `hash % 4093`, which LLVM computes by multiply and shift and then knows to be in
    // range, so it drops the bounds check; the verifier cannot follow that arithmetic. A
    // volatile read hides the range from LLVM and keeps the check the verifier needs.
    let i = unsafe { core::ptr::read_volatile(&i) };
    t.slots.get(i as usize).copied()
}

/// State of mh's fallback probe walk.
#[repr(C)]
struct MhProbe {
    svc_id: u32,
    saddr: u32,
    port: u32,
    ihash: u32,
    found: u32,
}

extern "C" fn mh_probe_step(i: u64, ctx: *mut c_void) -> i64 {
    let w = unsafe { &mut *(ctx as *mut MhProbe) };
    let slot = mh_fallback_probe(w.saddr, w.port as u16, w.ihash as u16, i as u16);
    probe(w.svc_id, mh_slot(w.svc_id, slot), &mut w.found)
}

/// mh (Maglev hashing): the server in the client's slot (address, and port with `mh-port`);
/// if it can't take the connection, none, or with `mh-fallback` the first usable server along
/// the kernel's rehashing probe.
#[inline(always)]
fn mh(svc_id: u32, svc: &ServiceConf, pkt: &Packet) -> Option<u32> {
    let with_port = svc.flags & SVC_F_SCHED_PORT != 0;
    let saddr = u32::from_be(pkt.saddr);
    let sport = u16::from_be(pkt.sport);
    let ihash = mh_lookup_slot(saddr, sport, with_port);
    let pos = mh_slot(svc_id, ihash)?;
    if pos == EMPTY {
        return None;
    }
    if let Some(id) = usable_at(svc_id, pos) {
        return Some(id);
    }
    if svc.flags & SVC_F_SCHED_FALLBACK == 0 {
        return None;
    }
    let port = if with_port { sport as u32 } else { 0 };
    let mut walk = MhProbe { svc_id, saddr, port, ihash: ihash as u32, found: NONE };
    unsafe {
        bpf_loop(MH_TABLE_SIZE as u32, mh_probe_step as *mut c_void, &mut walk as *mut MhProbe as *mut c_void, 0);
    }
    (walk.found != NONE).then_some(walk.found)
}
