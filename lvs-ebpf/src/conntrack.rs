//! The connection table: lookups in both directions, creation, and IPVS's state machine.

use core::intrinsics::{atomic_cxchg, atomic_xadd, atomic_xchg, AtomicOrdering};

use aya_ebpf::{
    helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns},
    macros::map,
    maps::PerCpuArray,
};
use lvs_common::{
    flow::{self, conn_flags, ConnEntry, ConnRef, FlowKey},
    persist::{conn_dport, TemplateScope},
    service::{overload_clears, overload_sets, DestConf, DestCounters},
    tcp_state::{self, DEFAULT_TIMEOUTS, NEW_CONN_TIMEOUT},
    AF_INET,
};

use crate::{
    maps::{CONNS, CONNS_OUT, CONN_PRIOR, DESTS, DEST_COUNTERS, TIMEOUTS},
    parse::{Packet, IPPROTO_TCP},
    persist,
};

pub const NSEC_PER_SEC: u64 = 1_000_000_000;

/// The flow key of the packet as it arrived.
#[inline(always)]
pub fn key_of(pkt: &Packet) -> FlowKey {
    FlowKey {
        src: [pkt.saddr, 0, 0, 0],
        dst: [pkt.daddr, 0, 0, 0],
        sport: pkt.sport,
        dport: pkt.dport,
        proto: pkt.proto,
        family: AF_INET,
        _pad: [0; 2],
    }
}

#[inline(always)]
fn timeout_ns(state: u8) -> u64 {
    let secs = match TIMEOUTS.get(state as u32) {
        Some(t) if *t != 0 => *t,
        _ => match DEFAULT_TIMEOUTS.get(state as usize) {
            Some(t) => *t,
            None => NEW_CONN_TIMEOUT,
        },
    };
    secs as u64 * NSEC_PER_SEC
}

/// -1 for [`counter_add`]: the only atomic BPF has on every CPU version is an add whose result
/// is unused (`BPF_ATOMIC | BPF_ADD`), so a decrement adds the two's complement.
pub const MINUS_ONE: u64 = u64::MAX;

/// Which of a real server's two connection counters.
#[derive(Clone, Copy)]
enum Count {
    Active,
    Inactive,
    Persist,
}

/// Adds `delta` (wrapping) to a counter of real server `dest_id`. (An enum rather than a field
/// accessor passed as a function: BPF has no indirect calls, and the verifier refuses the
/// `callx` an uninlined function pointer becomes.)
#[inline(always)]
fn counter_add(dest_id: u32, which: Count, delta: u64) {
    if let Some(c) = DEST_COUNTERS.get_ptr_mut(dest_id) {
        let field = match which {
            Count::Active => unsafe { &raw mut (*c).active },
            Count::Inactive => unsafe { &raw mut (*c).inactive },
            Count::Persist => unsafe { &raw mut (*c).persist },
        };
        // `core::sync::atomic` offers no fetch_add on this target (it has no compare-and-swap),
        // so the intrinsic: with its result unused it compiles to the plain BPF atomic add.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(field, delta) };
    }
}

/// Adds `delta` to real server `dest_id`'s persistence templates (PersistConn).
#[inline(always)]
pub fn persist_add(dest_id: u32, delta: u64) {
    counter_add(dest_id, Count::Persist, delta);
}

/// Sets or clears a real server's OVERLOAD mark. A plain store: the mark is a level, and the
/// kernel too sets and clears its flag without ordering against concurrent binds.
#[inline(always)]
fn set_overload(c: *mut DestCounters, v: u64) {
    unsafe { core::ptr::write_volatile(&raw mut (*c).overload, v) };
}

/// Takes a connection's count away from its real server (the entry is being replaced), and
/// clears OVERLOAD if the server dropped below its l-threshold (`ip_vs_unbind_dest`).
#[inline(always)]
fn uncount(active: u64, dest_id: u32) {
    let which = if active != 0 { Count::Active } else { Count::Inactive };
    counter_add(dest_id, which, MINUS_ONE);
    let (Some(c), Some(d)) = (DEST_COUNTERS.get_ptr_mut(dest_id), DESTS.get(dest_id)) else { return };
    unsafe {
        let total = (*c).active.wrapping_add((*c).inactive);
        if (*c).overload != 0 && overload_clears(total, d.u_threshold, d.l_threshold) {
            set_overload(c, 0);
        }
    }
}

/// Counts a new connection on its real server (inactive as IPVS binds it, or already active
/// when its first packet made it so) and sets OVERLOAD when that brings the server to its
/// u-threshold (`ip_vs_bind_dest`): exactly u connections are admitted.
#[inline(always)]
fn count_new(dest_id: u32, dest: &DestConf, active: u64) {
    counter_add(dest_id, if active != 0 { Count::Active } else { Count::Inactive }, 1);
    if dest.u_threshold == 0 {
        return;
    }
    let Some(c) = DEST_COUNTERS.get_ptr_mut(dest_id) else { return };
    unsafe {
        if overload_sets((*c).active.wrapping_add((*c).inactive), dest.u_threshold) {
            set_overload(c, 1);
        }
    }
}

/// A one-packet (`--ops`) connection's whole life on its real server: bound (counted as
/// inactive, possibly setting OVERLOAD at the u-threshold) and at once unbound (uncounted,
/// clearing OVERLOAD by the unbind rule), as the kernel's zero-timeout expiry does. The net
/// count is 0, but the threshold marks move exactly as the kernel's do.
#[inline(always)]
pub fn one_packet(dest_id: u32, dest: &DestConf) {
    count_new(dest_id, dest, 0);
    counter_add(dest_id, Count::Inactive, MINUS_ONE);
    let Some(c) = DEST_COUNTERS.get_ptr_mut(dest_id) else { return };
    unsafe {
        let total = (*c).active.wrapping_add((*c).inactive);
        if (*c).overload != 0 && overload_clears(total, dest.u_threshold, dest.l_threshold) {
            set_overload(c, 0);
        }
    }
}

/// Runs the state machine for one packet and restarts the entry's timer, as IPVS does at the
/// end of every packet. Entering or leaving an active TCP state moves the connection's count
/// between its server's active and inactive counters (`set_tcp_state` in the kernel).
#[inline(always)]
pub fn update(entry: *mut ConnEntry, pkt: &Packet, dir: usize, now: u64) {
    // The client is the source going in, the destination coming back.
    update_with(entry, pkt.proto, pkt.tcp_flags, dir, now, |dir| {
        if dir == tcp_state::DIR_OUTPUT {
            ([pkt.daddr, 0, 0, 0], pkt.dport, AF_INET)
        } else {
            ([pkt.saddr, 0, 0, 0], pkt.sport, AF_INET)
        }
    })
}

/// [`update`] for either family: `client(dir)` gives the client's address, port and family
/// as the connection's key holds them (only asked for when a persistence template is to be
/// marked assured).
#[inline(always)]
pub fn update_with<F: FnOnce(usize) -> ([u32; 4], u16, u8)>(
    entry: *mut ConnEntry,
    proto: u8,
    tcp_flags: u8,
    dir: usize,
    now: u64,
    client: F,
) {
    let pkt_proto = proto;
    unsafe {
        // The state, the flags that choose the table and the change itself go through one
        // word (`flow::STATE_WORD_OFFSET`): see the exchange below.
        let word_ptr = (entry as *mut u8).add(flow::STATE_WORD_OFFSET) as *mut u64;
        // Packets of one connection can be handled on two CPUs at once (the client's and the
        // server's side). A packet that leaves the state as it is writes nothing (so an ACK
        // cannot put back the ESTABLISHED it read after the other side's FIN moved it on), and
        // a change is made only if the word still holds the state it was computed from. The
        // loser of such a race computes its transition again from the winner's state and
        // tries once more, as IPVS applies both in turn under the connection's lock: FINs
        // crossing (the client's to CLOSE_WAIT, the server's to FIN_WAIT) must end in
        // TIME_WAIT, not in whichever of the two was written first.
        let mut state = 0;
        let mut changed = false;
        for _ in 0..2 {
            let word = core::ptr::read_volatile(word_ptr);
            // The state as a byte load of its own, not taken out of `word`: the verifier
            // bounds a byte load (the state indexes the transition table) but not a byte
            // shifted out of a 64-bit word. The exchange expects `word` with this state in
            // it, so a change in between makes it fail rather than apply a transition to a
            // state it was not computed from.
            let old = core::ptr::read_volatile(&raw const (*entry).state);
            let word = flow::with_state(word, old);
            state = if pkt_proto == IPPROTO_TCP {
                // DR/TUN connections have no output path: IPVS's INPUT_ONLY table, until a
                // reply has been seen (IPVS clears IP_VS_CONN_F_NOOUTPUT then).
                let dir = if dir == tcp_state::DIR_INPUT
                    && flow::flags_of_word(word) & (conn_flags::NAT | conn_flags::SEEN_OUTPUT) == 0
                {
                    tcp_state::DIR_INPUT_ONLY
                } else {
                    dir
                };
                tcp_state::next_state(old, dir, tcp_flags)
            } else {
                tcp_state::UDP
            };
            if state == old {
                break;
            }
            changed = atomic_cxchg::<u64, { AtomicOrdering::Relaxed }, { AtomicOrdering::Relaxed }>(
                word_ptr,
                word,
                flow::with_state(word, state),
            )
            .1;
            if changed {
                break;
            }
        }
        if (*entry).flags & conn_flags::CONTROLLED != 0 {
            let assured = if pkt_proto == IPPROTO_TCP {
                changed && state == tcp_state::ESTABLISHED
            } else {
                dir == tcp_state::DIR_OUTPUT
            };
            if assured {
                let (addr, port, family) = client(dir);
                persist::assure(entry, addr, port, pkt_proto, family);
            }
        }
        if changed {
            // The exchange makes exactly one CPU move the count (a synced or replaced entry
            // may race the state machine here too).
            let want = tcp_state::is_active(state) as u64;
            let was = atomic_xchg::<u64, { AtomicOrdering::Relaxed }>(&raw mut (*entry).active, want);
            let dest_id = (*entry).dest_id;
            if was == 0 && want == 1 {
                counter_add(dest_id, Count::Inactive, MINUS_ONE);
                counter_add(dest_id, Count::Active, 1);
            } else if was == 1 && want == 0 {
                counter_add(dest_id, Count::Active, MINUS_ONE);
                counter_add(dest_id, Count::Inactive, 1);
            }
        }
        // The timeout of the state the entry holds now (re-read: another CPU may have moved
        // it since this packet read it).
        let held = if changed { state } else { core::ptr::read_volatile(&raw const (*entry).state) };
        (*entry).expires_ns = now + timeout_ns(held);
    }
}

/// A live (unexpired) connection for the client-side key.
#[inline(always)]
pub fn lookup_in(key: &FlowKey, now: u64) -> Option<*mut ConnEntry> {
    let e = CONNS.get_ptr_mut(key)?;
    if unsafe { (*e).expires_ns } <= now {
        return None;
    }
    Some(e)
}

/// For a reply from a real server: the live connection it belongs to.
#[inline(always)]
pub fn lookup_out(key: &FlowKey, now: u64) -> Option<*mut ConnEntry> {
    let r: *const ConnRef = CONNS_OUT.get_ptr(key)?;
    // The key is passed where it lies, in the reverse entry (a helper takes a map value as a
    // key): a copy of its 40 bytes to the stack was 20 more loads and stores per reply.
    let e = lookup_in(unsafe { &(*r).in_key }, now)?;
    // The client-side entry may have been replaced by a newer connection to another real
    // server while this reverse entry waits for reclaim: it must still point back at us.
    unsafe {
        if (*e).daddr != key.src || (*e).dport != key.sport {
            return None;
        }
    }
    Some(e)
}

/// Whether a SYN may replace this entry with a fresh connection (IPVS `conn_reuse_mode` 1:
/// an uncontrolled entry in TIME_WAIT or CLOSE is expired and the packet scheduled again). A
/// connection under a persistence template is not (`is_new_conn_expected` refuses controlled
/// ones): the SYN goes on through the entry, to the same real server, as no new connection.
#[inline(always)]
pub fn reusable(entry: *const ConnEntry, pkt: &Packet) -> bool {
    let (st, flags) = unsafe { ((*entry).state, (*entry).flags) };
    pkt.proto == IPPROTO_TCP
        && pkt.tcp_flags & (tcp_state::TCP_SYN | tcp_state::TCP_RST | tcp_state::TCP_ACK)
            == tcp_state::TCP_SYN
        && (st == tcp_state::TIME_WAIT || st == tcp_state::CLOSE)
        && flags & conn_flags::CONTROLLED == 0
}

/// Expires a connection at once (`ip_vs_conn_expire_now`): it stops matching, and whoever
/// replaces or reclaims it takes its count away.
#[inline(always)]
pub fn expire_now(entry: *mut ConnEntry, now: u64) {
    unsafe { (*entry).expires_ns = now };
}

/// CLOCK_MONOTONIC_COARSE: the same clock as userspace's CLOCK_MONOTONIC, a tick or two behind
/// it. Every time the dataplane keeps is a timeout of a second or more, and the exact clock
/// (`bpf_ktime_get_ns`, a clocksource read) cost about 27 ns of every packet here, about a
/// fifth of a packet for no service; the coarse one is a read of the timekeeper's last tick.
///
/// Even that read is a helper call, and a call's return costs here (the kernel's return
/// thunk, its mitigation for speculative return stack overflow on these CPUs): about 12 ns of
/// an established TUN packet's 120. `bpf_jiffies64` is no call (the verifier inlines it as one
/// load of `jiffies`), and the coarse clock only moves when the tick moves `jiffies`; so each
/// CPU reads the coarse clock once per jiffy and reuses that reading while `jiffies` stays
/// the same. The reading is then at most two ticks behind (the tick advances `jiffies` just
/// before the timekeeper: a packet in between keeps the old reading for that jiffy), and
/// never goes backwards on a CPU.
#[inline(always)]
pub fn now_ns() -> u64 {
    let j = unsafe { bpf_jiffies64() };
    let Some(c) = CLOCK_CACHE.get_ptr_mut(0) else { return unsafe { bpf_ktime_get_coarse_ns() } };
    // Both ways end in the same load: the verifier's states meet again after the `if` (two
    // different returns kept them apart through the rest of every program, ~60k more
    // verified instructions in `lvs_xdp`).
    unsafe {
        if (*c).jiffies != j || (*c).now_ns == 0 {
            (*c).now_ns = bpf_ktime_get_coarse_ns();
            (*c).jiffies = j;
        }
        core::ptr::read_volatile(&raw const (*c).now_ns)
    }
}

/// [`now_ns`]'s per-CPU reading: `jiffies` when it was taken, and the coarse clock then.
#[repr(C)]
pub struct ClockCache {
    pub jiffies: u64,
    pub now_ns: u64,
}

/// Not pinned: a restarted dataplane starts with an empty reading.
#[map]
static CLOCK_CACHE: PerCpuArray<ClockCache> = PerCpuArray::with_max_entries(1, 0);

/// What the lookup of a new connection's key found in `CONNS`, for [`create`]: an entry
/// there (live but reusable, expired now, or expired and not reclaimed yet) is replaced and
/// its count taken away. [`PRIOR_NONE`]: nothing; [`PRIOR_UNKNOWN`]: not looked up
/// ([`create`] looks itself); otherwise [`PRIOR_FOUND`] with the entry's active bit at bit 32
/// and its real server in the low half. Passed in `CONN_PRIOR` (see there).
pub const PRIOR_NONE: u64 = 0;
pub const PRIOR_UNKNOWN: u64 = u64::MAX;
pub const PRIOR_FOUND: u64 = 1 << 63;

/// Leaves `prior` for [`create`]: every path to it writes this first, so that nothing of an
/// earlier packet is taken for this one's.
#[inline(always)]
pub fn note_prior(prior: u64) {
    if let Some(p) = CONN_PRIOR.get_ptr_mut(0) {
        unsafe { *p = prior };
    }
}

/// [`PRIOR_FOUND`] for `entry`.
#[inline(always)]
pub fn prior_of(entry: *const ConnEntry) -> u64 {
    let (active, dest_id) = unsafe { ((*entry).active, (*entry).dest_id) };
    PRIOR_FOUND | ((active != 0) as u64) << 32 | dest_id as u64
}

/// `CONNS`' entry for `key`, live or not, with what [`create`] needs of it noted in `prior`;
/// `None` when the entry has expired (as [`lookup_in`]). One lookup for both: a new
/// connection's key was looked up here before it is scheduled.
#[inline(always)]
pub fn lookup_in_noting(key: &FlowKey, now: u64, prior: &mut u64) -> Option<*mut ConnEntry> {
    let e = CONNS.get_ptr_mut(key)?;
    *prior = prior_of(e);
    if unsafe { (*e).expires_ns } <= now {
        return None;
    }
    Some(e)
}

/// Inserts a new connection, counted on its real server as IPVS binds it; NAT ones get their
/// reverse entry too (DR and TUN replies never come back through the director, IPVS's
/// NOOUTPUT). The entry is written in the state the packet creating it moves it to (the first
/// transition of the state machine, its count active or inactive accordingly, its timer), so
/// the caller needs no pointer to it and no lookup after the insert. `tcp_flags` are the
/// creating packet's; it is a SYN without RST for TCP, so the first state is SYN_RECV and
/// never ESTABLISHED: no persistence template is to be marked assured (see
/// `lvs_common::tcp_state`'s `first_transition_never_assures`).
///
/// An entry it replaces (an expired one not reclaimed yet, or a TIME_WAIT one a new SYN
/// reuses) has its count taken away here, once: `prior` is what the caller found under the
/// key, left by [`note_prior`]. The insert checks it (`BPF_EXIST` when an entry was found,
/// `BPF_NOEXIST` when none): if the reclaimer removed the entry meanwhile, or another CPU
/// inserted one, the insert fails and the entry there now is read and replaced as before.
/// What the check cannot see is another CPU replacing the found entry in between (two SYNs of
/// one 5-tuple at once): then the found entry is uncounted twice and the other CPU's never,
/// the totals right but split between real servers or active and inactive as the two were;
/// the read-then-replace before it had the same window. Returns the real server's port,
/// `Err(())` when the table is full.
#[inline(always)]
pub fn create<P: FnOnce() -> u32>(
    key: &FlowKey,
    svc_id: u32,
    dest_id: u32,
    dest: &DestConf,
    svc_port: u16,
    ctl: Option<TemplateScope>,
    pe: P,
    tcp_flags: u8,
    now: u64,
) -> Result<u16, ()> {
    // DR and TUN connections have no reverse entry and keep the virtual port.
    let nat = dest.fwd == 0;
    let nat_flag = if nat { conn_flags::NAT } else { 0 };
    let (dport, flags, ctl_mask, ctl_mark) = match ctl {
        // ip_vs_sched_persist: a port-zero service keeps the client's port.
        // `pe`: a sip template's Call-ID share, which takes the mark's place (such services
        // have none). Its flag is set without a branch ((-pe | pe) has the top bit set when pe
        // is not 0): a branch here doubles the states the verifier walks after it.
        Some(s) => {
            let pe = pe();
            (
            conn_dport(key.dport, svc_port, dest.port),
            nat_flag
                | conn_flags::CONTROLLED
                | if s.any_port { conn_flags::CTL_ANY_PORT } else { 0 }
                | (((0u32.wrapping_sub(pe) | pe) >> 31) as u16) * conn_flags::CTL_PE_SIP,
            s.mask,
            s.mark | pe,
            )
        }
        // ip_vs_schedule: port 0 on a real server means "the virtual port" (ipvsadm -r RIP
        // without port); DR and TUN cannot change the port at all.
        None => (if dest.port == 0 || !nat { key.dport } else { dest.port }, nat_flag, 0, 0),
    };
    // `update`'s first transition from NONE: a new DR/TUN connection has seen no output yet.
    let state = if key.proto == IPPROTO_TCP {
        let dir = if nat { tcp_state::DIR_INPUT } else { tcp_state::DIR_INPUT_ONLY };
        tcp_state::next_state(tcp_state::NONE, dir, tcp_flags)
    } else {
        tcp_state::UDP
    };
    let active = tcp_state::is_active(state) as u64;
    let entry = ConnEntry {
        vaddr: key.dst,
        daddr: dest.addr,
        vport: key.dport,
        dport,
        fwd: dest.fwd,
        state,
        flags,
        svc_id,
        dest_id,
        expires_ns: now + timeout_ns(state),
        active,
        ctl_mask,
        ctl_mark,
    };
    let out_key = FlowKey {
        src: dest.addr,
        dst: key.src,
        sport: dport,
        dport: key.sport,
        proto: key.proto,
        family: key.family,
        _pad: [0; 2],
    };
    const BPF_NOEXIST: u64 = 1;
    const BPF_EXIST: u64 = 2;
    let prior = match CONN_PRIOR.get(0) {
        Some(p) => *p,
        None => PRIOR_UNKNOWN,
    };
    let checked = if prior == PRIOR_UNKNOWN {
        Err(())
    } else {
        let flags = if prior & PRIOR_FOUND != 0 { BPF_EXIST } else { BPF_NOEXIST };
        CONNS.insert(key, &entry, flags).map_err(|_| ())
    };
    if checked.is_ok() {
        if prior & PRIOR_FOUND != 0 {
            uncount((prior >> 32) & 1, prior as u32);
        }
    } else {
        // Not looked up, or the table changed under us (or is full): what is there now is
        // what gets replaced. Only what uncounting needs of it: a copy of all of it cost 88
        // bytes of a stack frame that the IPv6 new-connection program could not spare.
        let replaced = unsafe { CONNS.get(key) }.map(|o| (o.active, o.dest_id));
        // BPF_ANY: an expired entry with the same key may still sit in the table until
        // userspace reclaims it; the new connection takes its place.
        CONNS.insert(key, &entry, 0).map_err(|_| ())?;
        if let Some((active, dest_id)) = replaced {
            uncount(active, dest_id);
        }
    }
    if nat && CONNS_OUT.insert(&out_key, &ConnRef { in_key: *key }, 0).is_err() {
        let _ = CONNS.remove(key);
        return Err(());
    }
    count_new(dest_id, dest, active);
    Ok(dport)
}
