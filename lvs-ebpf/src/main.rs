//! The XDP dataplane: IPVS-style virtual services with NAT, direct-routing and IP-in-IP
//! forwarding.
//!
//! Entry point only; each concern lives in its own module. Every packet ends in exactly one
//! `Counter`, which also decides the XDP verdict, so no drop is ever silent.
#![no_std]
#![no_main]
// Atomic adds on the connection counters (see conntrack.rs).
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod classify;
mod conntrack;
mod forward;
mod frag;
mod icmp;
mod icmp6_relay;
mod icmp_relay;
mod maps;
mod nat;
mod nexthop;
mod parse;
mod persist;
mod schedule;
mod sip;
mod stats;
mod tun;
mod tunnel;
mod v6;

use aya_ebpf::{macros::xdp, programs::XdpContext};
use lvs_common::{
    counters::Counter,
    flow::{conn_flags, ConnEntry},
    service::{dest_flags, SVC_F_ONEPACKET},
    tcp_state::{DIR_INPUT, DIR_OUTPUT, TCP_RST, TCP_SYN},
    XDP6_ICMP_SLOT, XDP6_SLOT, XDP_FRAG_SLOT, XDP_ICMP_SLOT, XDP_MAIN_SLOT, XDP_SIP_SLOT, XDP_TUN_SLOT,
};

use crate::{
    maps::{DESTS, SERVICES, SVC_INDEX, SYSCTLS},
    parse::{Packet, IPPROTO_TCP, IPPROTO_UDP},
};

#[xdp]
// Inlined into the section's entry function: the tail call below must be in the program's
// main function (the kernel refuses one in a subprogram of an object without BTF function
// information), and this body is large enough for LLVM to keep it apart otherwise.
#[inline(always)]
pub fn lvs_xdp(ctx: XdpContext) -> u32 {
    let c = process(&ctx);
    // IPv6 runs in programs of their own (`lvs_xdp6` and the two it tail-calls, v6.rs),
    // reached by a tail call: this program alone takes about 780k of the verifier's million
    // processed instructions (the schedulers and persistence, explored once), and an IPv6
    // path inline would at least double them; a tail-called program is verified on its own
    // budget and stack. The test sits on the one path that ends in `PassNotIp` (the parser
    // found no IPv4): at the top of the program, before the parser, the same test and tail
    // call cost the verifier 110k more instructions on the IPv4 paths. The jump is in the
    // main function itself: the kernel refuses tail calls from subprograms of an object
    // without BTF function information.
    if matches!(c, Counter::PassNotIp) && parse::is_ipv6(&ctx) {
        maps::tail_call(&ctx, XDP6_SLOT);
        // Only reached when lvsd has not filled the slot (yet): the kernel gets the packet.
    }
    // ICMP errors about our connections (icmp_relay.rs), in a program of their own for the
    // same reason; only reached if that program's slot is empty.
    if matches!(c, Counter::PassNotTcpUdp) {
        maps::tail_call(&ctx, XDP_ICMP_SLOT);
    }
    // Later fragments (no ports) follow their first fragment in a program of their own
    // (frag.rs); only reached if its slot is empty, and then the kernel gets them.
    if matches!(c, Counter::PassFragment) {
        maps::tail_call(&ctx, XDP_FRAG_SLOT);
    }
    // A new datagram of a persistent --pe sip service: the Call-ID search (sip.rs), which
    // comes back here with its result.
    if matches!(c, Counter::PassSipUnscanned) {
        maps::tail_call(&ctx, XDP_SIP_SLOT);
    }
    // GUE, GRE and mixed-family tunnel packets (tun.rs), also in a program of their own;
    // `tun::route_v4` left the real server in `TUN_SCRATCH`. Only reached if that slot is
    // empty: the packet is dropped, unchanged.
    if matches!(c, Counter::DropUnsupportedForward) {
        maps::tail_call(&ctx, XDP_TUN_SLOT);
    }
    stats::count(c);
    verdict(c)
}

/// The sip persistence engine's Call-ID search, tail-called from `lvs_xdp`, which it
/// tail-calls again with the result: see sip.rs.
#[xdp]
#[inline(always)]
pub fn lvs_xdp_sip(ctx: XdpContext) -> u32 {
    let c = match sip::process(&ctx) {
        Some(c) => c,
        None => {
            maps::tail_call(&ctx, XDP_MAIN_SLOT);
            // Only reached while lvsd has not filled the slot.
            Counter::PassSipUnscanned
        }
    };
    stats::count(c);
    verdict(c)
}

/// GUE, GRE and mixed-family tunnels, tail-called from `lvs_xdp`, `lvs_xdp6_send` and
/// `lvs_xdp_icmp`: see tun.rs.
#[xdp]
#[inline(always)]
pub fn lvs_xdp_tun(ctx: XdpContext) -> u32 {
    let c = tun::process(&ctx);
    stats::count(c);
    verdict(c)
}

/// The IPv6 program: see v6.rs.
#[xdp]
#[inline(always)]
pub fn lvs_xdp6(ctx: XdpContext) -> u32 {
    let c = v6::process(&ctx);
    // ICMPv6 errors about our connections (icmp6_relay.rs), in a program of their own as the
    // IPv4 ones; only reached if that program's slot is empty.
    if matches!(c, Counter::PassNotTcpUdp) {
        maps::tail_call(&ctx, XDP6_ICMP_SLOT);
    }
    // A later fragment: see `lvs_xdp`.
    if matches!(c, Counter::PassFragmentV6) {
        maps::tail_call(&ctx, XDP_FRAG_SLOT);
    }
    stats::count(c);
    verdict(c)
}

/// IPv6 packets that start a connection, tail-called from `lvs_xdp6`: see v6.rs.
#[xdp]
#[inline(always)]
pub fn lvs_xdp6_new(ctx: XdpContext) -> u32 {
    let c = v6::process_new(&ctx);
    stats::count(c);
    verdict(c)
}

/// IPv6 packets on their way out, tail-called from the two above: see v6.rs.
#[xdp]
#[inline(always)]
pub fn lvs_xdp6_send(ctx: XdpContext) -> u32 {
    let c = v6::process_send(&ctx);
    stats::count(c);
    verdict(c)
}

/// ICMP errors about tracked connections, tail-called from `lvs_xdp`: see icmp_relay.rs.
#[xdp]
#[inline(always)]
pub fn lvs_xdp_icmp(ctx: XdpContext) -> u32 {
    let c = icmp_relay::process(&ctx);
    stats::count(c);
    verdict(c)
}

/// ICMPv6 errors about tracked connections, tail-called from `lvs_xdp6`: see icmp6_relay.rs.
#[xdp]
#[inline(always)]
pub fn lvs_xdp6_icmp(ctx: XdpContext) -> u32 {
    let c = icmp6_relay::process(&ctx);
    stats::count(c);
    verdict(c)
}

/// Later fragments of IPv4 and IPv6 datagrams, tail-called from `lvs_xdp` and `lvs_xdp6`:
/// see frag.rs.
#[xdp]
#[inline(always)]
pub fn lvs_xdp_frag(ctx: XdpContext) -> u32 {
    let c = frag::process(&ctx);
    stats::count(c);
    verdict(c)
}

/// The XDP action for a final counter (the table is in lvs-common, shared with the metrics).
#[inline(always)]
pub(crate) fn verdict(c: Counter) -> u32 {
    c.verdict()
}

/// What to do with a packet: counted and done, or sent to a real server (one call site for
/// the three forwarding methods: each inlined copy of them costs stack, and `lvs_xdp` has 512
/// bytes).
enum Step {
    Done(Counter),
    /// Forwarding method, real server address and port (network order).
    Send(u8, u32, u16),
}

impl From<Counter> for Step {
    #[inline(always)]
    fn from(c: Counter) -> Step {
        Step::Done(c)
    }
}

#[inline(always)]
fn process(ctx: &XdpContext) -> Counter {
    let pkt = match parse::parse(ctx) {
        Ok(p) => p,
        Err(c) => return c,
    };
    // Neither to a virtual address nor from a real server or virtual address: nothing in
    // `decide` can match (see `lvs_common::prefilter`).
    let listed = classify::listed(pkt.saddr, pkt.daddr);
    if listed == 0 {
        return Counter::PassNoService;
    }
    // Read once per packet (a helper call) and passed down.
    let now = conntrack::now_ns();
    match decide(ctx, &pkt, now, listed) {
        Step::Done(c) => c,
        Step::Send(fwd, daddr, dport) => send(ctx, &pkt, fwd, daddr, dport, now),
    }
}

#[inline(always)]
fn decide(ctx: &XdpContext, pkt: &Packet, now: u64, listed: u8) -> Step {
    let key = conntrack::key_of(&pkt);

    // 1. Client -> VIP on a known connection (none unless the destination may be a virtual
    // address: a reply does not pay this lookup's miss).
    // What it finds is noted for a new connection's insert (`conntrack::create`). With the
    // destination's bit clear no entry can be there (its key's destination would be listed;
    // and the insert checks the claim).
    let mut prior = conntrack::PRIOR_NONE;
    let hit = if listed & classify::DST_LISTED != 0 {
        conntrack::lookup_in_noting(&key, now, &mut prior)
    } else {
        None
    };
    if let Some(e) = hit {
        if !conntrack::reusable(e, &pkt) {
            stats::count(Counter::ConnHit);
            match dest_state(e) {
                DestState::Serving => return to_real_server(&pkt, e, now, 0),
                // A new SYN to a quiesced server is scheduled again only with
                // expire_nodest_conn (the conn_reuse_mode path of ip_vs_in).
                DestState::Quiesced if !(is_syn(&pkt) && expire_nodest_conn()) => {
                    return to_real_server(&pkt, e, now, 0)
                }
                DestState::Gone if !expire_nodest_conn() => return Counter::DropDestUnavailable.into(),
                // expire_nodest_conn: the entry goes now and the packet is treated as new (a
                // SYN is scheduled again, anything else passes as for no connection).
                _ => conntrack::expire_now(e, now),
            }
        }
    }
    // 2. Real server -> client reply on a NAT connection (none unless the source may be a
    // real server: a new connection does not pay this lookup's miss).
    let hit = if listed & classify::SRC_LISTED != 0 { conntrack::lookup_out(&key, now) } else { None };
    if let Some(e) = hit {
        stats::count(Counter::ConnHit);
        // IPVS counts replies only while the real server is available (not deleted).
        if !matches!(dest_state(e), DestState::Gone) {
            let (svc_id, dest_id) = unsafe { ((*e).svc_id, (*e).dest_id) };
            stats::traffic(svc_id, dest_id, false, 0, pkt.tot_len as u64);
        }
        conntrack::update(e, &pkt, DIR_OUTPUT, now);
        let (vaddr, vport) = unsafe { ((*e).vaddr[0], (*e).vport) };
        frag::remember_v4(pkt, lvs_common::frag::FRAG_REPLY, vaddr);
        nat::to_client(&pkt, vaddr, vport);
        return forward::forward(ctx, &pkt, now).into();
    }
    // 3. A new connection to a virtual service (firewall mark first, as IPVS)?
    let svc_id = classify::find_service(pkt.daddr, pkt.dport, pkt.proto);
    if svc_id == classify::NO_SERVICE {
        return dr_reply(ctx, &pkt, now).into();
    }
    // IPVS schedules TCP only on a SYN without RST; anything else without a connection is
    // accepted untouched (it belongs to no connection we know).
    if pkt.proto == IPPROTO_TCP && pkt.tcp_flags & (TCP_SYN | TCP_RST) != TCP_SYN {
        return Counter::PassNotSyn.into();
    }
    conntrack::note_prior(prior);
    let Some(svc) = SERVICES.get(svc_id) else { return Counter::DropServiceMissing.into() };
    // --pe sip on a persistent service: the Call-ID must be known first (sip.rs). Asked of
    // every service, so that one state (not one per kind of service) goes on from here.
    match sip::gate(svc_id, svc.flags, &key) {
        sip::GO => {}
        sip::SCAN => return Counter::PassSipUnscanned.into(),
        _ => return Counter::DropSipNoCallId.into(),
    }
    // Persistence: a live template decides; otherwise the scheduler, and a new template.
    // Nothing computed for persistence stays live across `schedule::pick`: the verifier then
    // sees the same state entering it with and without persistence, and explores it once.
    let hit = match persist::scope(svc, &key) {
        Some(scope) => persist::lookup(svc_id, &scope, &key, now, sip::pe_share()),
        None => persist::MISS,
    };
    let dest_id = if hit != persist::MISS {
        hit
    } else {
        match schedule::pick(svc_id, svc, &pkt, now) {
            Some(d) => d,
            None => return icmp::port_unreachable(ctx, &pkt).into(),
        }
    };
    let ctl = persist::scope(svc, &key);
    if let (persist::MISS, Some(scope)) = (hit, &ctl) {
        if persist::bind(svc, scope, &key, dest_id, now, sip::pe_share).is_none() {
            return Counter::DropConnTableFull.into();
        }
    }
    let Some(dest) = DESTS.get(dest_id) else { return Counter::DropServiceMissing.into() };
    // Never forward a packet we cannot send the way its real server wants.
    if !matches!(dest.fwd, FWD_MASQ | FWD_TUNNEL | FWD_ROUTE) {
        return Counter::DropUnsupportedForward.into();
    }
    // --ops (IPVS's one-packet scheduling, UDP only, as the kernel ignores the flag for other
    // protocols): the datagram is scheduled on its own and no entry is kept. The kernel
    // creates the connection unhashed and expires it at once: it counts in InActConn for that
    // instant only, and the real server's reply matches nothing and goes out unchanged.
    if pkt.proto == IPPROTO_UDP && svc.flags & SVC_F_ONEPACKET != 0 {
        conntrack::one_packet(dest_id, dest);
        stats::count(Counter::NewConn);
        // Each datagram is a connection of its own in IPVS's statistics too.
        stats::traffic(svc_id, dest_id, true, 1, pkt.tot_len as u64);
        let fwd = if dest.fwd == FWD_TUNNEL { tun::route_v4(dest_id) } else { dest.fwd };
        // Port 0 on a real server means "the virtual port", as in `conntrack::create`.
        let dport = if dest.port == 0 { pkt.dport } else { dest.port };
        return Step::Send(fwd, dest.addr[0], dport);
    }
    let created =
        conntrack::create(&key, svc_id, dest_id, dest, svc.key.port, ctl, sip::pe_share, pkt.tcp_flags, now);
    let Ok(dport) = created else { return Counter::DropConnTableFull.into() };
    stats::count(Counter::NewConn);
    // `to_real_server` for the new entry, which `create` wrote in its final form: the packet
    // is counted, its state transition was made there.
    stats::traffic(svc_id, dest_id, true, 1, pkt.tot_len as u64);
    let fwd = if dest.fwd == FWD_TUNNEL { tun::route_v4(dest_id) } else { dest.fwd };
    Step::Send(fwd, dest.addr[0], dport)
}

pub(crate) enum DestState {
    /// Available with a weight.
    Serving,
    /// Available, weight 0: existing connections continue.
    Quiesced,
    /// Deleted: its slot may have been freed or even reused by another server since the
    /// connection was scheduled.
    Gone,
}

#[inline(always)]
pub(crate) fn dest_state(e: *const ConnEntry) -> DestState {
    let (dest_id, svc_id, daddr) = unsafe { ((*e).dest_id, (*e).svc_id, (*e).daddr) };
    match DESTS.get(dest_id) {
        Some(d) if d.flags & dest_flags::AVAILABLE != 0 && d.svc_id == svc_id && d.addr == daddr => {
            if d.weight == 0 {
                DestState::Quiesced
            } else {
                DestState::Serving
            }
        }
        _ => DestState::Gone,
    }
}

#[inline(always)]
fn is_syn(pkt: &Packet) -> bool {
    pkt.proto == IPPROTO_TCP && pkt.tcp_flags & TCP_SYN != 0
}

#[inline(always)]
pub(crate) fn expire_nodest_conn() -> bool {
    matches!(SYSCTLS.get(0), Some(s) if s.expire_nodest_conn != 0)
}

/// Forwarding methods (`ConnEntry::fwd`, IPVS numbering).
pub(crate) const FWD_MASQ: u8 = 0;
pub(crate) const FWD_TUNNEL: u8 = 2;
pub(crate) const FWD_ROUTE: u8 = 3;

/// Client -> VIP (real server known to be available): count it (`new_conns` is 1 for the
/// packet that created the connection), advance the state machine; the packet is then
/// rewritten (NAT), re-addressed (DR) or encapsulated (TUN) towards the real server by
/// [`send`].
#[inline(always)]
fn to_real_server(pkt: &Packet, e: *mut ConnEntry, now: u64, new_conns: u64) -> Step {
    let (svc_id, dest_id) = unsafe { ((*e).svc_id, (*e).dest_id) };
    stats::traffic(svc_id, dest_id, true, new_conns, pkt.tot_len as u64);
    conntrack::update(e, pkt, DIR_INPUT, now);
    let (daddr, dport, fwd) = unsafe { ((*e).daddr[0], (*e).dport, (*e).fwd) };
    let fwd = if fwd == FWD_TUNNEL { tun::route_v4(dest_id) } else { fwd };
    Step::Send(fwd, daddr, dport)
}

/// Sends a client packet to real server `daddr` by forwarding method `fwd`.
#[inline(always)]
fn send(ctx: &XdpContext, pkt: &Packet, fwd: u8, daddr: u32, dport: u16, now: u64) -> Counter {
    frag::remember_v4(pkt, fwd, daddr);
    match fwd {
        FWD_ROUTE => forward::direct_route(ctx, pkt, daddr, now),
        // IPv4 IP-in-IP here; every other encapsulation in `lvs_xdp_tun`, which `lvs_xdp`
        // tail-calls on this counter (`tun::route_v4` noted the real server).
        FWD_TUNNEL => tunnel::encapsulate(ctx, pkt, daddr, now),
        tun::FWD_TUN_OTHER => Counter::DropUnsupportedForward,
        _ => {
            nat::to_real_server(pkt, daddr, dport);
            forward::forward_to_dest(ctx, pkt, now)
        }
    }
}

/// A packet for no service: perhaps the reply of a DR/TUN connection that the real server
/// routes back through the director (VIP:vport -> client). IPVS finds the connection then
/// (its output lookup), clears its no-output mark and runs the OUTPUT state table; the packet
/// itself is routed on unchanged. Its reversed 5-tuple is the connection's `CONNS` key.
#[inline(always)]
fn dr_reply(ctx: &XdpContext, pkt: &Packet, now: u64) -> Counter {
    // Only a packet *from* a virtual service can be one: that small table is looked up first,
    // so other traffic does not pay for a lookup in the (possibly huge) connection table.
    let from_svc = lvs_common::service::SvcKey {
        addr: [pkt.saddr, 0, 0, 0],
        port: pkt.sport,
        proto: pkt.proto,
        family: lvs_common::AF_INET,
    };
    // (Exact port only: a port-zero service's routed-back replies are not recognised, and
    // their connections stay in the input-only table. One lookup less for all other traffic.)
    if unsafe { SVC_INDEX.get(&from_svc) }.is_none() {
        return Counter::PassNoService;
    }
    let key = lvs_common::flow::FlowKey {
        src: [pkt.daddr, 0, 0, 0],
        dst: [pkt.saddr, 0, 0, 0],
        sport: pkt.dport,
        dport: pkt.sport,
        proto: pkt.proto,
        family: lvs_common::AF_INET,
        _pad: [0; 2],
    };
    let Some(e) = conntrack::lookup_in(&key, now) else { return Counter::PassNoService };
    if unsafe { (*e).flags } & conn_flags::NAT != 0 {
        return Counter::PassNoService;
    }
    stats::count(Counter::ConnHit);
    unsafe { (*e).flags |= conn_flags::SEEN_OUTPUT };
    conntrack::update(e, pkt, DIR_OUTPUT, now);
    forward::forward(ctx, pkt, now)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// bpf_fib_lookup is GPL-only.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
