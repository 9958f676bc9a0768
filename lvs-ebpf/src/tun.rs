//! `lvs_xdp_tun`: tunnel (`-i`) packets other than IP-in-IP of the service's own family (which
//! `lvs_xdp` and `lvs_xdp6_send` build themselves): GUE, GRE, IPv4 in IPv6 and IPv6 in IPv4,
//! tail-called from those two and from the ICMP relay. A program of its own so that the
//! encapsulations do not add to the IPv4 program's verification (see `lvs_xdp`). The deciding
//! program leaves the real server's `DESTS` slot in `TUN_SCRATCH` (per CPU; a tail call stays
//! on its CPU).
//!
//! The encapsulations, as IPVS's `ip_vs_tunnel_xmit` / `ip_vs_tunnel_xmit_v6` build them:
//! - outer header of the real server's family (IPv4 or IPv6, so an IPv4 client's packet can go
//!   to an IPv6 real server and the reverse), from the source address of the director's route
//!   to it (`BPF_FIB_LOOKUP_SRC`), TTL / hop limit the inner one's after its decrement, TOS /
//!   traffic class the inner one's with ECN encapsulated (CE becomes ECT(0)), DF copied from an
//!   IPv4 inner header (0 for IPv6 inside IPv4), an IPv6 outer flow label of 0;
//! - IP-in-IP: next protocol 4 (IPv4 inner) or 41 (IPv6 inner);
//! - GUE: UDP from a flow-hashed source port (the local port range 32768..60999, as
//!   `udp_flow_src_port`) to the server's `--tun-port`, then the 4-byte GUE header (version 0,
//!   no options, protocol 4 or 41). The UDP checksum is 0 with `--tun-nocsum` and computed
//!   with `--tun-csum` or `--tun-remcsum` (remote checksum offload only applies to packets with
//!   a partial checksum, which a forwarded packet never has, so IPVS sends plain GUE then too);
//! - GRE: 4 bytes (flags 0, protocol 0x0800 or 0x86dd), or 8 with `--tun-csum` (the C bit,
//!   the checksum over the GRE header and everything after it, a zero reserved word).
//!
//! Checksums over the whole inner packet without reading it: the inner TCP (or UDP) checksum
//! is valid, so its segment sums to the complement of its pseudo-header; only the inner IP
//! header is summed. An IPv4 UDP datagram sent without a checksum (0), or an inner IPv6
//! packet with extension headers, gives no such shortcut: its GUE checksum is sent as 0 (no
//! checksum, which the receiver accepts for IPv4 and for IPv6 tunnels), and a GRE packet that
//! asks for one is dropped (`DropUnsupportedForward`).
//!
//! PMTU: the route's MTU less the whole outer overhead; a packet that does not fit is answered
//! with ICMP fragmentation needed (IPv4 with DF) or ICMPv6 packet too big (IPv6) carrying that
//! figure; an IPv4 packet without DF is handed to the kernel to fragment the outer IPv4 packet
//! (an outer IPv6 packet cannot be fragmented on the way: dropped). A route that leaves less
//! than 68 (IPv4) or 1280 (IPv6) drops the packet, as IPVS's route lookup does.

use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};
use lvs_common::{
    counters::Counter,
    csum::fold,
    fwd::IPPROTO_IPIP,
    service::{tun_type, DestConf},
    AF_INET, AF_INET6,
};
use network_types::{eth::EthHdr, ip::Ipv6Hdr};

use crate::{
    forward::{self, FibParams, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_SRC},
    icmp, nexthop,
    maps::{DESTS, TUN_SCRATCH},
    parse::{self, ptr_at, IPPROTO_TCP, IPPROTO_UDP},
    tunnel, v6, FWD_TUNNEL,
};

const IPPROTO_IPV6: u8 = 41;
const IPPROTO_GRE: u8 = 47;
const IPV4_HLEN: u16 = 20;
const IPV6_HLEN: u16 = 40;
const UDP_HLEN: u16 = 8;
const GUE_HLEN: u16 = 4;
const IP_DF: u16 = 0x4000;
const IP_MF: u16 = 0x2000;
/// GRE's checksum-present bit (first flags byte).
const GRE_CSUM: u8 = 0x80;
/// The default `net.ipv4.ip_local_port_range`, which `udp_flow_src_port` maps flows into.
const PORT_MIN: u32 = 32768;
const PORT_MAX: u32 = 60999;

/// What the deciding program leaves for this one.
pub struct TunScratch {
    /// 1 while a packet is on its way here (cleared on arrival).
    pub pending: u32,
    /// The real server's `DESTS` slot.
    pub dest_id: u32,
}

/// Records the real server a tunnel packet goes to (before the tail call).
#[inline(always)]
pub fn note_dest(dest_id: u32) {
    if let Some(sc) = TUN_SCRATCH.get_ptr_mut(0) {
        unsafe {
            (*sc).pending = 1;
            (*sc).dest_id = dest_id;
        }
    }
}

/// `Step::Send`'s method for a tunnel that `lvs_xdp` does not build itself.
pub const FWD_TUN_OTHER: u8 = 0xf7;

/// The IPv4 program's choice for a tunnel server: IP-in-IP to an IPv4 real server it builds
/// itself (`FWD_TUNNEL`, no tail call on the most common tunnel); anything else goes to this
/// program (`FWD_TUN_OTHER`, the real server noted).
#[inline(always)]
pub fn route_v4(dest_id: u32) -> u8 {
    match DESTS.get(dest_id) {
        Some(d) if d.family == AF_INET && d.tun_type == tun_type::IPIP => FWD_TUNNEL,
        _ => {
            note_dest(dest_id);
            FWD_TUN_OTHER
        }
    }
}

/// The real server last noted on this CPU, if the flag is still up (the IPv6 send program
/// looks at it before deciding between its own IPv6-in-IPv6 and this program).
#[inline(always)]
pub fn noted_dest() -> Option<&'static DestConf> {
    let sc = TUN_SCRATCH.get_ptr_mut(0)?;
    let (pending, id) = unsafe { ((*sc).pending, (*sc).dest_id) };
    if pending == 0 {
        return None;
    }
    DESTS.get(id)
}

/// Takes the flag down (the IPv6 send program, when it encapsulates itself).
#[inline(always)]
pub fn clear_noted() {
    if let Some(sc) = TUN_SCRATCH.get_ptr_mut(0) {
        unsafe { (*sc).pending = 0 };
    }
}

/// The inner packet, whichever its family.
struct Inner {
    v6: bool,
    /// Whole inner packet (IP header included), host order.
    len: u16,
    /// Inner IP header plus IPv6 extension headers.
    hlen: u16,
    /// TOS / traffic class.
    tos: u8,
    ttl: u8,
    /// DF of an IPv4 inner header (network-order bit value, host representation).
    df: u16,
    /// Sum of the inner pseudo-header (unfolded, native word order).
    pseudo: u32,
    /// The inner transport checksum can stand in for its segment's sum.
    seg_ok: bool,
    /// Flow hash for the GUE source port.
    hash: u32,
}

/// `lvs_xdp_tun`.
#[inline(always)]
pub fn process(ctx: &XdpContext) -> Counter {
    let Some(sc) = TUN_SCRATCH.get_ptr_mut(0) else { return Counter::DropUnsupportedForward };
    let (pending, dest_id) = unsafe { ((*sc).pending, (*sc).dest_id) };
    unsafe { (*sc).pending = 0 };
    if pending == 0 {
        return Counter::DropUnsupportedForward;
    }
    let Some(dest) = DESTS.get(dest_id) else { return Counter::DropServiceMissing };
    if dest.fwd != FWD_TUNNEL || dest.tun_type > tun_type::GRE {
        return Counter::DropUnsupportedForward;
    }
    if parse::is_ipv6(ctx) {
        let pkt = match v6::parse(ctx) {
            Ok(p) => p,
            Err(c) => return c,
        };
        let vcf = unsafe { (*pkt.ip).vcf };
        let tclass = (vcf[0] << 4) | (vcf[1] >> 4);
        let inner = Inner {
            v6: true,
            len: pkt.tot_len,
            hlen: (pkt.l4_off - EthHdr::LEN) as u16,
            tos: tclass,
            ttl: unsafe { (*pkt.ip).hop_limit },
            df: 0,
            pseudo: pseudo_sum(&pkt.src, &pkt.dst, 4, pkt.proto, pkt.tot_len.saturating_sub((pkt.l4_off - EthHdr::LEN) as u16)),
            seg_ok: seg_ok(pkt.proto, pkt.l4),
            hash: flow_hash(v6_fold(&pkt.src), v6_fold(&pkt.dst), pkt.sport, pkt.dport, pkt.proto),
        };
        let overhead = overhead(dest);
        let p = match route(ctx, &inner, dest, overhead) {
            Route::Go(p, to_kernel) => (p, to_kernel),
            Route::TooBig(mtu) => return v6::packet_too_big(ctx, &pkt, mtu),
            Route::Drop(c) => return c,
        };
        encapsulate(ctx, &inner, dest, overhead, p.0, p.1)
    } else {
        // TCP/UDP, or an ICMP error about a connection (relayed by `lvs_xdp_icmp`).
        let pkt = match parse::parse(ctx) {
            Ok(p) => p,
            Err(Counter::PassNotTcpUdp) => match icmp4(ctx) {
                Some(p) => p,
                None => return Counter::PassNotTcpUdp,
            },
            Err(c) => return c,
        };
        if dest.family == AF_INET && dest.tun_type == tun_type::IPIP {
            return tunnel::encapsulate(ctx, &pkt, dest.addr[0], crate::conntrack::now_ns());
        }
        let (tos, ttl, frags, vihl) =
            unsafe { ((*pkt.ip).tos, (*pkt.ip).ttl, u16::from_be_bytes((*pkt.ip).frags), (*pkt.ip).vihl) };
        // A first fragment (the only kind that gets here): its later fragments could not follow
        // it into this encapsulation (the fragment table keeps an address and a method, not
        // the tunnel), so the datagram is left to the kernel whole, as an untracked one.
        if frags & IP_MF != 0 {
            crate::frag::forget_v4(&pkt);
            return Counter::PassFragment;
        }
        let hlen = ((vihl & 0x0f) as u16) * 4;
        let inner = Inner {
            v6: false,
            len: pkt.tot_len,
            hlen,
            tos,
            ttl,
            df: frags & IP_DF,
            // An ICMP message with its valid checksum sums to zero; so does the complement
            // of an all-ones "pseudo-header".
            pseudo: if pkt.proto == IPPROTO_ICMP {
                0xffff
            } else {
                pseudo_sum(&[pkt.saddr, 0, 0, 0], &[pkt.daddr, 0, 0, 0], 1, pkt.proto, pkt.tot_len.saturating_sub(hlen))
            },
            seg_ok: pkt.proto == IPPROTO_ICMP || seg_ok(pkt.proto, pkt.l4),
            hash: flow_hash(pkt.saddr, pkt.daddr, pkt.sport, pkt.dport, pkt.proto),
        };
        let overhead = overhead(dest);
        let p = match route(ctx, &inner, dest, overhead) {
            Route::Go(p, to_kernel) => (p, to_kernel),
            // Never an ICMP error about an ICMP error.
            Route::TooBig(_) if pkt.proto == IPPROTO_ICMP => return Counter::DropNoRoute,
            Route::TooBig(mtu) => return icmp::frag_needed(ctx, &pkt, mtu),
            Route::Drop(c) => return c,
        };
        encapsulate(ctx, &inner, dest, overhead, p.0, p.1)
    }
}

const IPPROTO_ICMP: u8 = 1;

/// An IPv4 ICMP packet (the relay has checked it), in the shape the encapsulation reads.
#[inline(always)]
fn icmp4(ctx: &XdpContext) -> Option<parse::Packet> {
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    let ip: *mut network_types::ip::Ipv4Hdr = ptr_at(ctx, EthHdr::LEN)?;
    let (vihl, proto, tot_len) = unsafe { ((*ip).vihl, (*ip).proto, u16::from_be_bytes((*ip).tot_len)) };
    if vihl >> 4 != 4 || vihl & 0x0f < 5 || proto != IPPROTO_ICMP {
        return None;
    }
    let l4: *mut [u8; 8] = ptr_at(ctx, EthHdr::LEN + ((vihl & 0x0f) as usize) * 4)?;
    Some(parse::Packet {
        eth,
        ip,
        l4: l4 as *mut u8,
        proto,
        saddr: u32::from_ne_bytes(unsafe { (*ip).src_addr }),
        daddr: u32::from_ne_bytes(unsafe { (*ip).dst_addr }),
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        tot_len,
    })
}

/// Bytes put in front of the inner packet for this real server.
#[inline(always)]
fn overhead(dest: &DestConf) -> u16 {
    let ip = if dest.family == AF_INET6 { IPV6_HLEN } else { IPV4_HLEN };
    ip + extra(dest)
}

/// The tunnel header after the outer IP header.
#[inline(always)]
fn extra(dest: &DestConf) -> u16 {
    match dest.tun_type {
        tun_type::GUE => UDP_HLEN + GUE_HLEN,
        tun_type::GRE if dest.tun_flags & tun_type::F_CSUM != 0 => 8,
        tun_type::GRE => 4,
        _ => 0,
    }
}

#[inline(always)]
fn outer_proto(dest: &DestConf, inner_v6: bool) -> u8 {
    match dest.tun_type {
        tun_type::GUE => IPPROTO_UDP,
        tun_type::GRE => IPPROTO_GRE,
        _ if inner_v6 => IPPROTO_IPV6,
        _ => IPPROTO_IPIP,
    }
}

/// Whether the inner transport checksum is there to stand in for its segment's sum (an IPv4
/// UDP checksum of 0 means "none").
#[inline(always)]
fn seg_ok(proto: u8, l4: *mut u8) -> bool {
    match proto {
        IPPROTO_TCP => true,
        IPPROTO_UDP => (unsafe { *(l4.add(6) as *const u16) }) != 0,
        _ => false,
    }
}

/// One's-complement sum of a pseudo-header: `words` 32-bit words of each address, the
/// protocol and the transport length.
#[inline(always)]
fn pseudo_sum(src: &[u32; 4], dst: &[u32; 4], words: usize, proto: u8, l4_len: u16) -> u32 {
    let mut s = 0u32;
    let mut i = 0;
    while i < 4 {
        if i < words {
            s += (src[i] & 0xffff) + (src[i] >> 16) + (dst[i] & 0xffff) + (dst[i] >> 16);
        }
        i += 1;
    }
    s + u16::from_ne_bytes([0, proto]) as u32 + u16::from_ne_bytes(l4_len.to_be_bytes()) as u32
}

#[inline(always)]
fn v6_fold(a: &[u32; 4]) -> u32 {
    a[0] ^ a[1] ^ a[2] ^ a[3]
}

/// A flow hash of the inner 5-tuple (the kernel uses the skb's flow hash; any stable hash of
/// the flow keeps a flow on one source port, which is what receivers' RSS needs).
#[inline(always)]
fn flow_hash(src: u32, dst: u32, sport: u16, dport: u16, proto: u8) -> u32 {
    let mut h = src ^ dst.rotate_left(16) ^ ((sport as u32) << 16 | dport as u32) ^ (proto as u32) << 8;
    // murmur3's finaliser.
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// `udp_flow_src_port`: the hash scaled into the local port range, network order.
#[inline(always)]
fn src_port(hash: u32) -> u16 {
    ((((hash as u64) * ((PORT_MAX - PORT_MIN) as u64)) >> 32) as u32 + PORT_MIN) as u16
}

enum Route {
    /// The lookup's result, and whether the kernel must forward (no neighbour yet, or an
    /// IPv4 outer packet to fragment).
    Go(&'static FibParams, bool),
    /// Does not fit: the inner MTU for the ICMP error.
    TooBig(u16),
    Drop(Counter),
}

/// FIB lookup towards the real server in its own family.
#[inline(always)]
fn fib(ctx: &XdpContext, dest: &DestConf, proto: u8, tot_len: u16, tos: u8) -> Option<(i64, &'static FibParams)> {
    if dest.family == AF_INET6 {
        // flowinfo: the traffic class in bits 20..27, network order; flow label 0.
        let flowinfo = ((tos as u32) << 20).to_be();
        v6::lookup(ctx, proto, [0; 4], tot_len, flowinfo, [0; 4], dest.addr, BPF_FIB_LOOKUP_SRC)
    } else {
        forward::lookup(ctx, proto, [0; 4], tot_len, tos, 0, dest.addr[0], BPF_FIB_LOOKUP_SRC)
    }
}

#[inline(always)]
fn route(ctx: &XdpContext, inner: &Inner, dest: &DestConf, overhead: u16) -> Route {
    let proto = outer_proto(dest, inner.v6);
    let outer_len = inner.len.saturating_add(overhead);
    // The route towards the real server from the next-hop cache (`nexthop`, keyed by the real
    // server as IPv6 IP-in-IP's is, which makes the same lookup), if the packet fits its MTU;
    // an entry of the other family (an IPv4 address's words could be an IPv6 address's) is
    // not used. Anything else is the lookup's to decide.
    let (iif, now) = (ctx.ingress_ifindex() as u32, crate::conntrack::now_ns());
    let has_src = nexthop::HAS_SRC as u32;
    if let Some(p) = nexthop::get6(&dest.addr, &[0; 4], iif, now, outer_len, has_src) {
        if p.family == dest.family {
            return Route::Go(p, false);
        }
    }
    let Some((rc, p)) = fib(ctx, dest, proto, outer_len, inner.tos) else { return Route::Drop(Counter::DropNoRoute) };
    match rc {
        BPF_FIB_LKUP_RET_SUCCESS => {
            // `tot_len` now holds the route's MTU.
            nexthop::put6(&dest.addr, &[0; 4], iif, p, has_src, now);
            Route::Go(p, false)
        }
        BPF_FIB_LKUP_RET_NO_NEIGH => Route::Go(p, true),
        BPF_FIB_LKUP_RET_FRAG_NEEDED => {
            // `tot_len` now holds the route's MTU.
            let mtu = p.tot_len.saturating_sub(overhead);
            let outer_v6 = dest.family == AF_INET6;
            if (outer_v6 && mtu < 1280) || mtu < 68 {
                return Route::Drop(Counter::DropNoRoute);
            }
            if inner.v6 || inner.df != 0 {
                return Route::TooBig(mtu);
            }
            if outer_v6 {
                return Route::Drop(Counter::DropNoRoute);
            }
            // IPv4 without DF: the kernel fragments the outer packet. The lookup again
            // without the MTU check, for the source address and next hop.
            let Some((rc2, p2)) = fib(ctx, dest, proto, 0, inner.tos) else {
                return Route::Drop(Counter::DropNoRoute);
            };
            if rc2 == BPF_FIB_LKUP_RET_SUCCESS || rc2 == BPF_FIB_LKUP_RET_NO_NEIGH {
                Route::Go(p2, true)
            } else {
                Route::Drop(Counter::DropNoRoute)
            }
        }
        _ => Route::Drop(Counter::DropNoRoute),
    }
}

/// `INET_ECN_encapsulate`: the outer TOS is the inner one, with CE turned into ECT(0).
#[inline(always)]
fn ecn_encap(tos: u8) -> u8 {
    if tos & 3 == 3 {
        (tos & !3) | 2
    } else {
        tos
    }
}

/// Decrements the inner TTL / hop limit, sums the inner headers, prepends the outer headers
/// and sends.
#[inline(always)]
fn encapsulate(
    ctx: &XdpContext,
    inner: &Inner,
    dest: &DestConf,
    overhead: u16,
    p: &'static FibParams,
    to_kernel: bool,
) -> Counter {
    if inner.ttl <= 1 {
        return Counter::DropTtlExceeded;
    }
    let ttl = inner.ttl - 1;
    if inner.v6 {
        let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, EthHdr::LEN) else { return Counter::DropNoRoute };
        unsafe { (*ip).hop_limit = ttl };
    } else {
        let Some(ip) = ptr_at::<[u8; 20]>(ctx, EthHdr::LEN) else { return Counter::DropNoRoute };
        // TTL shares a checksummed word with the protocol.
        unsafe {
            let proto = (*ip)[9];
            let old = u16::from_ne_bytes([inner.ttl, proto]);
            let new = u16::from_ne_bytes([ttl, proto]);
            let check = u16::from_ne_bytes([(*ip)[10], (*ip)[11]]);
            let c = lvs_common::csum::replace2(check, old, new).to_ne_bytes();
            (*ip)[8] = ttl;
            (*ip)[10] = c[0];
            (*ip)[11] = c[1];
        }
    }
    let want_csum = match dest.tun_type {
        tun_type::GUE => dest.tun_flags & (tun_type::F_CSUM | tun_type::F_REMCSUM) != 0,
        tun_type::GRE => dest.tun_flags & tun_type::F_CSUM != 0,
        _ => false,
    };
    // The inner packet's sum (headers + segment), when a checksum is wanted.
    let mut payload_sum = 0u32;
    let mut have_sum = false;
    if want_csum && inner.seg_ok {
        if let Some(h) = header_sum(ctx, inner.v6, inner.hlen) {
            payload_sum = h + (!fold(inner.pseudo)) as u32;
            have_sum = true;
        }
    }
    if want_csum && !have_sum && dest.tun_type == tun_type::GRE {
        return Counter::DropUnsupportedForward;
    }
    let (orig_dst, orig_src) = match ptr_at::<EthHdr>(ctx, 0) {
        Some(eth) => unsafe { ((*eth).dst_addr, (*eth).src_addr) },
        None => return Counter::DropNoRoute,
    };
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(overhead as i32)) } != 0 {
        return Counter::DropNoRoute;
    }
    // Every pointer into the frame is derived again after `adjust_head`.
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else { return Counter::DropNoRoute };
    let proto = outer_proto(dest, inner.v6);
    let tos = ecn_encap(inner.tos);
    let outer_len = inner.len.saturating_add(overhead);
    let tun_len = outer_len - (overhead - extra(dest));
    let (src, tun_off) = if dest.family == AF_INET6 {
        let Some(o) = ptr_at::<[u32; 10]>(ctx, EthHdr::LEN) else { return Counter::DropNoRoute };
        let first = (6u32 << 28) | ((tos as u32) << 20);
        unsafe {
            (*eth).ether_type = 0x86ddu16.to_be();
            (*o)[0] = first.to_be();
            (*o)[1] = u32::from_be_bytes([(tun_len >> 8) as u8, tun_len as u8, proto, ttl]).to_be();
            (*o)[2] = p.src[0];
            (*o)[3] = p.src[1];
            (*o)[4] = p.src[2];
            (*o)[5] = p.src[3];
            (*o)[6] = dest.addr[0];
            (*o)[7] = dest.addr[1];
            (*o)[8] = dest.addr[2];
            (*o)[9] = dest.addr[3];
        }
        let s = p.src;
        let d = dest.addr;
        let ps = (s[0] & 0xffff) + (s[0] >> 16) + (s[1] & 0xffff) + (s[1] >> 16) + (s[2] & 0xffff) + (s[2] >> 16)
            + (s[3] & 0xffff) + (s[3] >> 16)
            + (d[0] & 0xffff) + (d[0] >> 16) + (d[1] & 0xffff) + (d[1] >> 16) + (d[2] & 0xffff) + (d[2] >> 16)
            + (d[3] & 0xffff) + (d[3] >> 16);
        (ps, (EthHdr::LEN + IPV6_HLEN as usize))
    } else {
        let Some(o) = ptr_at::<[u8; 20]>(ctx, EthHdr::LEN) else { return Counter::DropNoRoute };
        // ID 0 with DF (as `ip_select_ident` for packets without a socket); else a value from
        // the flow hash, so that the fragments of one outer packet share it.
        let id = if inner.df == 0 { (inner.hash as u16).to_ne_bytes() } else { [0, 0] };
        tunnel::write_ipv4_header(o, tos, outer_len, id, inner.df, ttl, proto, p.src[0], dest.addr[0]);
        unsafe { (*eth).ether_type = 0x0800u16.to_be() };
        let s = p.src[0];
        let d = dest.addr[0];
        ((s & 0xffff) + (s >> 16) + (d & 0xffff) + (d >> 16), EthHdr::LEN + IPV4_HLEN as usize)
    };
    let inner_proto = if inner.v6 { IPPROTO_IPV6 } else { IPPROTO_IPIP };
    match dest.tun_type {
        tun_type::GUE => {
            let Some(t) = ptr_at::<[u8; 12]>(ctx, tun_off) else { return Counter::DropNoRoute };
            let sport = src_port(inner.hash).to_be_bytes();
            let dport = dest.tun_port.to_ne_bytes();
            let len = tun_len.to_be_bytes();
            let mut h = [sport[0], sport[1], dport[0], dport[1], len[0], len[1], 0, 0, 0, inner_proto, 0, 0];
            if want_csum && have_sum {
                // Pseudo-header + UDP header + GUE header + the inner packet.
                let sum = src
                    + u16::from_ne_bytes([0, IPPROTO_UDP]) as u32
                    + u16::from_ne_bytes(len) as u32
                    + u16::from_ne_bytes([sport[0], sport[1]]) as u32
                    + u16::from_ne_bytes(dport) as u32
                    + u16::from_ne_bytes(len) as u32
                    + u16::from_ne_bytes([0, inner_proto]) as u32
                    + (payload_sum & 0xffff)
                    + (payload_sum >> 16);
                let mut c = !fold(sum);
                // 0 means "no checksum" in UDP.
                if c == 0 {
                    c = 0xffff;
                }
                let c = c.to_ne_bytes();
                h[6] = c[0];
                h[7] = c[1];
            }
            unsafe { *t = h };
        }
        tun_type::GRE => {
            let ethertype: [u8; 2] = if inner.v6 { [0x86, 0xdd] } else { [0x08, 0x00] };
            if want_csum {
                let Some(t) = ptr_at::<[u8; 8]>(ctx, tun_off) else { return Counter::DropNoRoute };
                let sum = u16::from_ne_bytes([GRE_CSUM, 0]) as u32
                    + u16::from_ne_bytes(ethertype) as u32
                    + (payload_sum & 0xffff)
                    + (payload_sum >> 16);
                let c = (!fold(sum)).to_ne_bytes();
                unsafe { *t = [GRE_CSUM, 0, ethertype[0], ethertype[1], c[0], c[1], 0, 0] };
            } else {
                let Some(t) = ptr_at::<[u8; 4]>(ctx, tun_off) else { return Counter::DropNoRoute };
                unsafe { *t = [0, 0, ethertype[0], ethertype[1]] };
            }
        }
        _ => {}
    }
    if to_kernel {
        // The stack only takes frames addressed to our own MAC: keep the received ones.
        unsafe {
            (*eth).dst_addr = orig_dst;
            (*eth).src_addr = orig_src;
        }
        return Counter::PassFibFallback;
    }
    forward::redirect_eth(eth, p)
}

/// One's-complement sum (folded to at most 17 bits) of the inner IP header. An IPv4 header
/// sums to zero: its checksum is valid (the TTL was changed with it), and one whose checksum
/// was not would not be accepted at the far end anyway. An IPv6 header is summed; one with
/// extension headers is not (`None`: rare enough not to be worth the verifier's trouble
/// with a variable-length walk, and treated as a datagram without checksum).
#[inline(always)]
fn header_sum(ctx: &XdpContext, v6: bool, hlen: u16) -> Option<u32> {
    if !v6 {
        return Some(0);
    }
    if hlen != IPV6_HLEN {
        return None;
    }
    let w = ptr_at::<[u32; 10]>(ctx, EthHdr::LEN)?;
    let mut acc = 0u64;
    let mut i = 0;
    while i < 10 {
        acc += unsafe { (*w)[i] } as u64;
        i += 1;
    }
    let s = (acc & 0xffff_ffff) + (acc >> 32);
    let s = (s & 0xffff) + ((s >> 16) & 0xffff) + (s >> 32);
    Some(s as u32)
}
