//! Next hop: `bpf_fib_lookup`, then redirect; the kernel's stack when the neighbour is not
//! resolved yet (NAT and tunnels) or a report to lvsd (direct routing).

use aya_ebpf::{
    bindings::{bpf_fib_lookup as FibLookup, xdp_action},
    helpers::{bpf_fib_lookup, bpf_redirect},
    programs::XdpContext,
};
use lvs_common::{counters::Counter, csum::replace2, fwd::NeighKey, AF_INET};
use network_types::eth::EthHdr;

use crate::{
    maps::{FIB_SCRATCH, NEIGH_MISS},
    nexthop::{self, NextHop},
    parse::Packet,
};

pub const BPF_FIB_LKUP_RET_SUCCESS: i64 = 0;
pub const BPF_FIB_LKUP_RET_NO_NEIGH: i64 = 7;
pub const BPF_FIB_LKUP_RET_FRAG_NEEDED: i64 = 8;
/// Also return the source address the route would use (`fib_result_prefsrc`), kernel >= 6.7.
pub const BPF_FIB_LOOKUP_SRC: u32 = 1 << 4;

/// The kernel's `struct bpf_fib_lookup` (64 bytes) with plain fields, so it can be filled
/// field by field instead of through `mem::zeroed()`, which compiles to a looping memset.
#[repr(C)]
pub struct FibParams {
    pub family: u8,
    pub l4_protocol: u8,
    pub sport: u16,
    pub dport: u16,
    /// In: IP total length, **host order** (0: no MTU check). Out: the MTU when the result
    /// is `FRAG_NEEDED`.
    pub tot_len: u16,
    pub ifindex: u32,
    pub tos: u32,
    /// Network order; IPv4 uses word 0. Out (with `BPF_FIB_LOOKUP_SRC`): the route's source.
    pub src: [u32; 4],
    /// Out: the next hop (the gateway, or the destination itself when on-link).
    pub dst: [u32; 4],
    pub vlan: u32,
    /// In: the first 4 bytes are `mark`, which must be 0.
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
}
const _: () = assert!(core::mem::size_of::<FibParams>() == 64);

/// One IPv4 FIB lookup from the ingress interface's point of view. The parameters live in a
/// per-CPU scratch slot (`FIB_SCRATCH`), not on the stack: every inlined copy of them cost 64
/// bytes of `lvs_xdp`'s frame, and with a scheduler's `bpf_loop` callback on top the call chain
/// went over the verifier's 512 bytes. `None` only if the slot cannot be had (never, for a
/// one-entry per-CPU array).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn lookup(
    ctx: &XdpContext,
    proto: u8,
    ports: [u8; 4],
    tot_len: u16,
    tos: u8,
    src: u32,
    dst: u32,
    flags: u32,
) -> Option<(i64, &'static FibParams)> {
    fib_lookup(ctx, AF_INET, proto, ports, tot_len, tos as u32, [src, 0, 0, 0], [dst, 0, 0, 0], flags)
}

/// The FIB lookup of either family behind [`lookup`] and `v6::lookup`: `tos` is the union's
/// IPv4 TOS or IPv6 flow information, addresses as four network-order words.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn fib_lookup(
    ctx: &XdpContext,
    family: u8,
    proto: u8,
    ports: [u8; 4],
    tot_len: u16,
    tos: u32,
    src: [u32; 4],
    dst: [u32; 4],
    flags: u32,
) -> Option<(i64, &'static FibParams)> {
    let p = FIB_SCRATCH.get_ptr_mut(0)?;
    let rc = unsafe {
        (*p).family = family;
        (*p).l4_protocol = proto;
        (*p).sport = u16::from_ne_bytes([ports[0], ports[1]]);
        (*p).dport = u16::from_ne_bytes([ports[2], ports[3]]);
        (*p).tot_len = tot_len;
        (*p).ifindex = ctx.ingress_ifindex() as u32;
        (*p).tos = tos;
        (*p).src = src;
        (*p).dst = dst;
        (*p).vlan = 0;
        (*p).smac = [0; 6];
        (*p).dmac = [0; 6];
        bpf_fib_lookup(ctx.ctx as *mut _, p as *mut FibLookup, core::mem::size_of::<FibParams>() as i32, flags)
    };
    Some((rc, unsafe { &*p }))
}

/// Decrements the TTL (which shares one 16-bit word of the header checksum with the
/// protocol) and fixes the checksum. The caller has checked `ttl > 1`.
#[inline(always)]
pub fn decrement_ttl(pkt: &Packet, ttl: u8) {
    let ip = pkt.ip;
    unsafe {
        let old = u16::from_ne_bytes([ttl, pkt.proto]);
        let new = u16::from_ne_bytes([ttl - 1, pkt.proto]);
        (*ip).ttl = ttl - 1;
        (*ip).check = replace2(u16::from_ne_bytes((*ip).check), old, new).to_ne_bytes();
    }
}

/// Sets the frame's MAC addresses from a successful lookup and redirects.
#[inline(always)]
pub fn redirect(pkt: &Packet, p: &FibParams) -> Counter {
    redirect_eth(pkt.eth, p)
}

/// [`redirect`] for a frame of either family, given its Ethernet header (IPv6, and the outer
/// header of a tunnelled packet).
#[inline(always)]
pub fn redirect_eth(eth: *mut EthHdr, p: &FibParams) -> Counter {
    set_macs(eth, &p.dmac, &p.smac);
    unsafe {
        if bpf_redirect(p.ifindex, 0) as u32 != xdp_action::XDP_REDIRECT {
            return Counter::PassFibFailed;
        }
    }
    Counter::Redirect
}

/// Writes the frame's destination and source MAC addresses byte by byte. A `[u8; 6]`
/// assignment compiles to a call of the `memmove` subprogram (a byte loop behind a BPF
/// function call) on this target: two of them were on every forwarded packet. Volatile so
/// that LLVM does not fold the twelve copies back into such a call.
#[inline(always)]
pub fn set_macs(eth: *mut EthHdr, dmac: &[u8; 6], smac: &[u8; 6]) {
    unsafe {
        copy6(&raw mut (*eth).dst_addr, dmac);
        copy6(&raw mut (*eth).src_addr, smac);
    }
}

#[inline(always)]
unsafe fn copy6(dst: *mut [u8; 6], src: &[u8; 6]) {
    use core::ptr::{read_volatile as rd, write_volatile as wr};
    let (d, s) = (dst as *mut u8, src.as_ptr());
    unsafe {
        wr(d, rd(s));
        wr(d.add(1), rd(s.add(1)));
        wr(d.add(2), rd(s.add(2)));
        wr(d.add(3), rd(s.add(3)));
        wr(d.add(4), rd(s.add(4)));
        wr(d.add(5), rd(s.add(5)));
    }
}

/// Sets the frame's MAC addresses from a cached next hop and redirects.
#[inline(always)]
pub fn redirect_cached(pkt: &Packet, h: &NextHop) -> Counter {
    set_macs(pkt.eth, &h.dmac, &h.smac);
    unsafe {
        if bpf_redirect(h.oif, 0) as u32 != xdp_action::XDP_REDIRECT {
            return Counter::PassFibFailed;
        }
    }
    Counter::Redirect
}

/// Forwards the (already rewritten) packet to its own destination. Returns the counter that
/// describes the verdict; `Counter::Redirect` means XDP_REDIRECT, the others XDP_PASS.
/// `now`: the packet's coarse clock reading (one per packet: each read costs a helper call).
#[inline(always)]
pub fn forward(ctx: &XdpContext, pkt: &Packet, now: u64) -> Counter {
    forward_keyed(ctx, pkt, false, now)
}

/// [`forward`] for a packet rewritten towards a real server (NAT): its next hop is cached per
/// real server, whatever the client (see `nexthop`).
#[inline(always)]
pub fn forward_to_dest(ctx: &XdpContext, pkt: &Packet, now: u64) -> Counter {
    forward_keyed(ctx, pkt, true, now)
}

#[inline(always)]
fn forward_keyed(ctx: &XdpContext, pkt: &Packet, to_dest: bool, now: u64) -> Counter {
    let ip = pkt.ip;
    let (src, dst, tot_len, tos, ttl) = unsafe {
        (
            u32::from_ne_bytes((*ip).src_addr),
            u32::from_ne_bytes((*ip).dst_addr),
            u16::from_be_bytes((*ip).tot_len),
            (*ip).tos,
            (*ip).ttl,
        )
    };
    let iif = ctx.ingress_ifindex() as u32;
    let src_key = if to_dest { 0 } else { src };
    // A cached next hop, if the packet fits its route's MTU (else the lookup below decides).
    if let Some(h) = nexthop::get(dst, src_key, iif, now) {
        if tot_len <= h.mtu {
            if ttl <= 1 {
                return Counter::PassTtlExceeded;
            }
            decrement_ttl(pkt, ttl);
            return redirect_cached(pkt, h);
        }
    }
    // The ports in the packet may have been rewritten; read them back for the lookup.
    let ports = unsafe { *(pkt.l4 as *const [u8; 4]) };
    let Some((rc, p)) = lookup(ctx, pkt.proto, ports, tot_len, tos, src, dst, 0) else { return Counter::PassFibFailed };
    match rc {
        BPF_FIB_LKUP_RET_SUCCESS => {}
        // First packets towards a host the director has not resolved yet: the kernel forwards
        // this one (and ARPs); later packets find the neighbour.
        BPF_FIB_LKUP_RET_NO_NEIGH => return Counter::PassFibFallback,
        _ => return Counter::PassFibFailed,
    }
    // After a successful lookup with an MTU check, `tot_len` holds the route's MTU.
    nexthop::put(dst, src_key, iif, p, p.tot_len, 0, now);
    // TTL about to expire: the kernel sends the ICMP time-exceeded.
    if ttl <= 1 {
        return Counter::PassTtlExceeded;
    }
    decrement_ttl(pkt, ttl);
    redirect(pkt, p)
}

/// Direct routing (`-g`): the packet keeps its addresses (the real server holds the VIP);
/// only the MACs change, to reach the real server `rip` (network order). As IPVS
/// (`ip_vs_dr_xmit` after `decrement_ttl`), the TTL is decremented.
///
/// Nothing here may be handed to the kernel: it would deliver the packet to the director's own
/// VIP. So a missing neighbour entry drops the packet and records the next hop in
/// `NEIGH_MISS`, which lvsd polls to ask the kernel to resolve it.
#[inline(always)]
pub fn direct_route(ctx: &XdpContext, pkt: &Packet, rip: u32, now: u64) -> Counter {
    let ip = pkt.ip;
    let (src, tos, ttl) = unsafe { (u32::from_ne_bytes((*ip).src_addr), (*ip).tos, (*ip).ttl) };
    let iif = ctx.ingress_ifindex() as u32;
    if let Some(h) = nexthop::get(rip, 0, iif, now) {
        if ttl <= 1 {
            return Counter::DropTtlExceeded;
        }
        decrement_ttl(pkt, ttl);
        return redirect_cached(pkt, h);
    }
    let ports = unsafe { *(pkt.l4 as *const [u8; 4]) };
    // No MTU check (tot_len 0): the packet does not grow; a smaller MTU towards the real
    // server is the operator's to match, as with IPVS's DR.
    let Some((rc, p)) = lookup(ctx, pkt.proto, ports, 0, tos, src, rip, 0) else { return Counter::DropNoRoute };
    match rc {
        BPF_FIB_LKUP_RET_SUCCESS => {}
        BPF_FIB_LKUP_RET_NO_NEIGH => {
            report_neigh_miss(p);
            return Counter::DropNoNeigh;
        }
        _ => return Counter::DropNoRoute,
    }
    // No MTU known (no check was made): the entry serves direct routing only.
    nexthop::put(rip, 0, iif, p, 0, 0, now);
    if ttl <= 1 {
        return Counter::DropTtlExceeded;
    }
    decrement_ttl(pkt, ttl);
    redirect(pkt, p)
}

/// Records a next hop without a neighbour entry for lvsd (see `NEIGH_MISS`).
#[inline(always)]
pub fn report_neigh_miss(p: &FibParams) {
    let key = NeighKey { addr: [p.dst[0], 0, 0, 0], ifindex: p.ifindex, family: AF_INET, _pad: [0; 3] };
    let _ = NEIGH_MISS.insert(&key, &0u32, 0);
}
