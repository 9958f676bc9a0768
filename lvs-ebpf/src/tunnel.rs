//! IP-in-IP tunnelling (`-i`, `--tun-type ipip`), IPv4 in IPv4, as IPVS's `ip_vs_tunnel_xmit`:
//! - outer source: the source address of the director's route towards the real server
//!   (`bpf_fib_lookup` with `BPF_FIB_LOOKUP_SRC`, the address IPVS's route lookup picks);
//! - outer destination: the real server; protocol 4; no options;
//! - TOS copied from the inner header; DF copied from the inner header;
//! - TTL: the inner TTL after its decrement (IPVS decrements the inner TTL, then copies it);
//! - ID: zero when DF is set (as Linux's `ip_select_ident` for packets without a socket),
//!   the inner packet's ID otherwise (unique enough for the outer fragments' reassembly);
//! - PMTU: a packet with DF that would exceed the route's MTU once encapsulated is answered
//!   with ICMP fragmentation needed carrying MTU - 20, and not forwarded; one without DF is
//!   encapsulated and handed to the kernel, which fragments the outer packet.

use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};
use lvs_common::{
    counters::Counter,
    csum::ipv4_header_check,
    fwd::{IPIP_OVERHEAD, IPPROTO_IPIP},
};
use network_types::eth::EthHdr;

use crate::{
    forward::{
        decrement_ttl, lookup, redirect, redirect_cached, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_SRC,
    },
    icmp, nexthop,
    parse::{ptr_at, Packet},
};

const IP_DF: u16 = 0x4000;

/// Encapsulates the client's packet towards real server `rip` (network order) and forwards it.
/// `now`: the packet's coarse clock reading.
#[inline(always)]
pub fn encapsulate(ctx: &XdpContext, pkt: &Packet, rip: u32, now: u64) -> Counter {
    let ip = pkt.ip;
    let (tot_len, tos, ttl, frags, id) = unsafe {
        (
            u16::from_be_bytes((*ip).tot_len),
            (*ip).tos,
            (*ip).ttl,
            u16::from_be_bytes((*ip).frags),
            (*ip).id,
        )
    };
    let df = frags & IP_DF;
    let outer_len = tot_len.saturating_add(IPIP_OVERHEAD);
    let iif = ctx.ingress_ifindex() as u32;
    // A cached next hop with the route's source address, if the encapsulated packet fits its
    // MTU (otherwise the lookup below decides between ICMP and the kernel's fragmentation).
    if let Some(h) = nexthop::get(rip, 0, iif, now) {
        if h.flags & nexthop::HAS_SRC != 0 && outer_len <= h.mtu {
            if ttl <= 1 {
                return Counter::DropTtlExceeded;
            }
            decrement_ttl(pkt, ttl);
            if push_header(ctx, h.src, tos, outer_len, if df != 0 { [0, 0] } else { id }, df, ttl - 1, rip).is_none() {
                return Counter::DropNoRoute;
            }
            let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else { return Counter::DropNoRoute };
            return redirect_cached(&Packet { eth, ..*pkt }, h);
        }
    }
    let Some((mut rc, mut p)) = lookup(ctx, IPPROTO_IPIP, [0; 4], outer_len, tos, 0, rip, BPF_FIB_LOOKUP_SRC) else {
        return Counter::DropNoRoute;
    };
    if rc == BPF_FIB_LKUP_RET_FRAG_NEEDED {
        // `tot_len` now holds the route's MTU.
        if df != 0 {
            return icmp::frag_needed(ctx, pkt, p.tot_len.saturating_sub(IPIP_OVERHEAD));
        }
        // No DF: the kernel may fragment the outer packet. Look the route up again without
        // the MTU check for its source address and next hop.
        let Some((rc2, p2)) = lookup(ctx, IPPROTO_IPIP, [0; 4], 0, tos, 0, rip, BPF_FIB_LOOKUP_SRC) else {
            return Counter::DropNoRoute;
        };
        (rc, p) = (if rc2 == BPF_FIB_LKUP_RET_SUCCESS { BPF_FIB_LKUP_RET_NO_NEIGH } else { rc2 }, p2);
    }
    let to_kernel = match rc {
        BPF_FIB_LKUP_RET_SUCCESS => {
            // Only a first lookup's success gets here: it checked `outer_len`, so `tot_len`
            // holds the route's MTU.
            nexthop::put(rip, 0, iif, p, p.tot_len, nexthop::HAS_SRC, now);
            false
        }
        // The encapsulated packet is addressed to the real server, so the kernel can forward
        // it (and resolve the neighbour) as it would any other.
        BPF_FIB_LKUP_RET_NO_NEIGH => true,
        _ => return Counter::DropNoRoute,
    };
    if ttl <= 1 {
        return Counter::DropTtlExceeded;
    }
    decrement_ttl(pkt, ttl);
    let (orig_dst, orig_src) = unsafe { ((*pkt.eth).dst_addr, (*pkt.eth).src_addr) };
    if push_header(ctx, p.src[0], tos, outer_len, if df != 0 { [0, 0] } else { id }, df, ttl - 1, rip).is_none() {
        return Counter::DropNoRoute;
    }
    // Every pointer into the frame is derived again after `adjust_head`.
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else { return Counter::DropNoRoute };
    if to_kernel {
        // The stack only takes frames addressed to our own MAC: keep the received ones.
        unsafe {
            (*eth).dst_addr = orig_dst;
            (*eth).src_addr = orig_src;
        }
        return Counter::PassFibFallback;
    }
    let outer = Packet { eth, ..*pkt };
    redirect(&outer, p)
}

/// Prepends the outer IPv4 header from `src` (the route's source address) to `rip` (and a
/// fresh Ethernet header in front of it).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn push_header(
    ctx: &XdpContext,
    src: u32,
    tos: u8,
    outer_len: u16,
    id: [u8; 2],
    df: u16,
    ttl: u8,
    rip: u32,
) -> Option<()> {
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(IPIP_OVERHEAD as i32)) } != 0 {
        return None;
    }
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    let outer: *mut [u8; 20] = ptr_at(ctx, EthHdr::LEN)?;
    write_ipv4_header(outer, tos, outer_len, id, df, ttl, IPPROTO_IPIP, src, rip);
    unsafe { (*eth).ether_type = 0x0800u16.to_be() };
    Some(())
}

/// Writes `lvs_common::csum::ipv4_header`'s header at `o` in the frame, each byte straight
/// from the field values, its checksum summed from them too (`ipv4_header_check`). Building
/// the array and assigning it compiled to the header on the stack, twenty byte loads to sum
/// it back, and a byte-wise copy into the frame. Volatile so that LLVM keeps the stores
/// direct.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn write_ipv4_header(
    o: *mut [u8; 20],
    tos: u8,
    tot_len: u16,
    id: [u8; 2],
    frag_off: u16,
    ttl: u8,
    proto: u8,
    src: u32,
    dst: u32,
) {
    use core::ptr::write_volatile as wr;
    let c = ipv4_header_check(tos, tot_len, id, frag_off, ttl, proto, src, dst);
    let len = tot_len.to_be_bytes();
    let fo = frag_off.to_be_bytes();
    let s = src.to_ne_bytes();
    let d = dst.to_ne_bytes();
    let b = o as *mut u8;
    unsafe {
        wr(b, 0x45);
        wr(b.add(1), tos);
        wr(b.add(2), len[0]);
        wr(b.add(3), len[1]);
        wr(b.add(4), id[0]);
        wr(b.add(5), id[1]);
        wr(b.add(6), fo[0]);
        wr(b.add(7), fo[1]);
        wr(b.add(8), ttl);
        wr(b.add(9), proto);
        wr(b.add(10), c[0]);
        wr(b.add(11), c[1]);
        wr(b.add(12), s[0]);
        wr(b.add(13), s[1]);
        wr(b.add(14), s[2]);
        wr(b.add(15), s[3]);
        wr(b.add(16), d[0]);
        wr(b.add(17), d[1]);
        wr(b.add(18), d[2]);
        wr(b.add(19), d[3]);
    }
}
