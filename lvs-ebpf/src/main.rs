//! The XDP dataplane: IPVS-style virtual services with NAT forwarding.
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
mod icmp;
mod maps;
mod nat;
mod parse;
mod schedule;
mod stats;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lvs_common::{
    counters::Counter,
    flow::ConnEntry,
    service::dest_flags,
    tcp_state::{DIR_INPUT, DIR_OUTPUT, TCP_RST, TCP_SYN},
};

use crate::{
    maps::{DESTS, SERVICES},
    parse::{Packet, IPPROTO_TCP},
};

#[xdp]
pub fn lvs_xdp(ctx: XdpContext) -> u32 {
    let c = process(&ctx);
    stats::count(c);
    verdict(c)
}

/// The XDP action for a final counter.
#[inline(always)]
fn verdict(c: Counter) -> u32 {
    match c {
        Counter::Redirect | Counter::TxIcmpUnreachable => xdp_action::XDP_REDIRECT,
        Counter::DropNoDest
        | Counter::DropConnTableFull
        | Counter::DropServiceMissing
        | Counter::DropUnsupportedForward
        | Counter::DropDestUnavailable => xdp_action::XDP_DROP,
        _ => xdp_action::XDP_PASS,
    }
}

#[inline(always)]
fn process(ctx: &XdpContext) -> Counter {
    let pkt = match parse::parse(ctx) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let now = conntrack::now_ns();
    let key = conntrack::key_of(&pkt);

    // 1. Client -> VIP on a known connection.
    if let Some(e) = conntrack::lookup_in(&key, now) {
        if !conntrack::reusable(e, &pkt) {
            stats::count(Counter::ConnHit);
            if !dest_available(e) {
                return Counter::DropDestUnavailable;
            }
            return to_real_server(ctx, &pkt, e, now);
        }
    }
    // 2. Real server -> client reply on a NAT connection.
    if let Some(e) = conntrack::lookup_out(&key, now) {
        stats::count(Counter::ConnHit);
        conntrack::update(e, &pkt, DIR_OUTPUT, now);
        let (vaddr, vport) = unsafe { ((*e).vaddr[0], (*e).vport) };
        nat::to_client(&pkt, vaddr, vport);
        return forward::forward(ctx, &pkt);
    }
    // 3. A new connection to a virtual service (firewall mark first, as IPVS)?
    let Some(svc_id) = classify::find_service(&pkt) else {
        return Counter::PassNoService;
    };
    // IPVS schedules TCP only on a SYN without RST; anything else without a connection is
    // accepted untouched (it belongs to no connection we know).
    if pkt.proto == IPPROTO_TCP && pkt.tcp_flags & (TCP_SYN | TCP_RST) != TCP_SYN {
        return Counter::PassNotSyn;
    }
    let Some(svc) = SERVICES.get(svc_id) else { return Counter::DropServiceMissing };
    let Some(dest_id) = schedule::pick(svc_id, svc, &pkt, now) else { return icmp::port_unreachable(ctx, &pkt) };
    let Some(dest) = DESTS.get(dest_id) else { return Counter::DropServiceMissing };
    // Only masquerading is implemented so far; never forward a packet we cannot rewrite.
    if dest.fwd != 0 {
        return Counter::DropUnsupportedForward;
    }
    let Ok(e) = conntrack::create(&key, svc_id, dest_id, dest, now) else {
        return Counter::DropConnTableFull;
    };
    stats::count(Counter::NewConn);
    to_real_server(ctx, &pkt, e, now)
}

/// Whether the connection's real server still exists. Its slot may have been freed (deleted
/// server) or even reused by another server since the connection was scheduled.
#[inline(always)]
fn dest_available(e: *const ConnEntry) -> bool {
    let (dest_id, svc_id, daddr) = unsafe { ((*e).dest_id, (*e).svc_id, (*e).daddr) };
    match DESTS.get(dest_id) {
        Some(d) => d.flags & dest_flags::AVAILABLE != 0 && d.svc_id == svc_id && d.addr == daddr,
        None => false,
    }
}

/// Client -> VIP: advance the state machine, rewrite to the real server, forward.
#[inline(always)]
fn to_real_server(ctx: &XdpContext, pkt: &Packet, e: *mut ConnEntry, now: u64) -> Counter {
    conntrack::update(e, pkt, DIR_INPUT, now);
    // Entries are only created for masquerading real servers (checked before `create`).
    let (daddr, dport) = unsafe { ((*e).daddr[0], (*e).dport) };
    nat::to_real_server(pkt, daddr, dport);
    forward::forward(ctx, pkt)
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
