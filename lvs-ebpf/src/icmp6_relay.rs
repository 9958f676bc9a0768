//! ICMPv6 errors about connections we track, relayed to the party that needs them (IPVS's
//! `ip_vs_in_icmp_v6` and `ip_vs_out_icmp_v6`): the IPv6 twin of icmp_relay.rs, in a program
//! of its own (`lvs_xdp6_icmp`), tail-called by `lvs_xdp6` for IPv6 packets that are neither
//! TCP nor UDP.
//!
//! Only destination unreachable, packet too big and time exceeded are looked at, as in IPVS
//! (parameter problem and informational messages pass), and only when they quote a TCP or UDP
//! packet with its ports. The quoted packet is one we sent, so its addresses are reversed
//! against the connection's key:
//! - quoted [VIP]:vport -> client, addressed to the VIP: the connection client -> [VIP]:vport
//!   (`CONNS`); the error goes to its real server: NAT rewrites the outer destination and the
//!   quoted source to [RIP]:rport (`ip_vs_nat_icmp_v6(.., 0)`), DR only changes the MACs, TUN
//!   encapsulates it as any packet of the connection.
//! - quoted client -> [RIP]:rport, addressed to the client (from the real server or a router on
//!   its side): the NAT connection through `CONNS_OUT`; the quoted destination becomes
//!   [VIP]:vport and the outer source the VIP, as `ip_vs_nat_icmp_v6(.., 1)` does, and it goes
//!   to the client.
//! IPv6 has no header checksum; the ICMPv6 checksum covers the outer addresses through the
//! pseudo-header and the quoted words, and is updated incrementally for both (RFC 1624). The
//! kernel recomputes it in full, so for a valid error the bytes are the same. The quoted
//! TCP/UDP checksum is left as it is, as the kernel leaves it.
//!
//! Extension headers in front of the outer ICMPv6 header are the kernel's (routers do not send
//! them on errors); in the quoted packet, hop-by-hop, routing and destination options headers
//! and a first fragment's header are walked, as `ipv6_find_hdr` does for IPVS; a quoted later
//! fragment carries no ports and passes.

use aya_ebpf::programs::XdpContext;
use lvs_common::{
    counters::Counter,
    csum::{replace2, replace4},
    flow::FlowKey,
    AF_INET6,
};
use network_types::{eth::EthHdr, ip::Ipv6Hdr};

use crate::{
    conntrack,
    parse::{ptr_at, IPPROTO_TCP, IPPROTO_UDP},
    stats,
    v6::{
        self, load_addr, store_addr, Packet6, IPV6_HLEN, NEXTHDR_DEST, NEXTHDR_FRAGMENT, NEXTHDR_HOP,
        NEXTHDR_ICMPV6, NEXTHDR_ROUTING,
    },
    FWD_MASQ, FWD_ROUTE, FWD_TUNNEL,
};

const ICMPV6_DEST_UNREACH: u8 = 1;
const ICMPV6_PKT_TOOBIG: u8 = 2;
const ICMPV6_TIME_EXCEED: u8 = 3;
/// Extension headers walked in the quoted packet (as the parser's `MAX_EXT_HEADERS`, plus one
/// for a first fragment's header).
const MAX_QUOTED_EXT: usize = 5;

#[inline(always)]
pub fn process(ctx: &XdpContext) -> Counter {
    relay(ctx).unwrap_or(Counter::PassNotTcpUdp)
}

/// Adds the change of one address from `old` to `new` to a checksum (four words).
#[inline(always)]
fn replace_addr(c: u16, old: &[u32; 4], new: &[u32; 4]) -> u16 {
    let c = replace4(c, old[0], new[0]);
    let c = replace4(c, old[1], new[1]);
    let c = replace4(c, old[2], new[2]);
    replace4(c, old[3], new[3])
}

#[inline(always)]
fn relay(ctx: &XdpContext) -> Option<Counter> {
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    let ip: *mut Ipv6Hdr = ptr_at(ctx, EthHdr::LEN)?;
    let (vcf0, next, payload) = unsafe { ((*ip).vcf[0], (*ip).next_hdr, u16::from_be_bytes((*ip).payload_len)) };
    if vcf0 >> 4 != 6 || next != NEXTHDR_ICMPV6 || payload == 0 {
        return None;
    }
    if ctx.data() + EthHdr::LEN + IPV6_HLEN + payload as usize > ctx.data_end() {
        return None;
    }
    let icmp_off = EthHdr::LEN + IPV6_HLEN;
    let icmp: *mut [u8; 8] = ptr_at(ctx, icmp_off)?;
    let ty = unsafe { (*icmp)[0] };
    if !matches!(ty, ICMPV6_DEST_UNREACH | ICMPV6_PKT_TOOBIG | ICMPV6_TIME_EXCEED) {
        return None;
    }
    // The quoted IPv6 header follows the 8-byte ICMPv6 header.
    let cip_off = icmp_off + 8;
    let cip: *mut Ipv6Hdr = ptr_at(ctx, cip_off)?;
    if unsafe { (*cip).vcf[0] } >> 4 != 6 {
        return None;
    }
    let mut cnext = unsafe { (*cip).next_hdr };
    let mut off = cip_off + IPV6_HLEN;
    let mut i = 0;
    while i < MAX_QUOTED_EXT {
        match cnext {
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST => {
                let h: *const [u8; 2] = ptr_at(ctx, off)?;
                let (n, len) = unsafe { ((*h)[0], (*h)[1]) };
                cnext = n;
                off += (len as usize + 1) * 8;
            }
            NEXTHDR_FRAGMENT => {
                let h: *const [u8; 4] = ptr_at(ctx, off)?;
                let (n, fo) = unsafe { ((*h)[0], u16::from_be_bytes([(*h)[2], (*h)[3]])) };
                // A later fragment quotes no ports ("Is the embedded protocol header present?").
                if fo & 0xfff8 != 0 {
                    return None;
                }
                cnext = n;
                off += 8;
            }
            _ => break,
        }
        i += 1;
    }
    if !matches!(cnext, IPPROTO_TCP | IPPROTO_UDP) {
        return None;
    }
    // Bounded for the verifier: at most 5 headers of at most 2048 bytes each.
    let ports: *mut [u8; 4] = ptr_at(ctx, off & 0x3fff)?;
    let csrc = load_addr(unsafe { &raw const (*cip).src_addr });
    let cdst = load_addr(unsafe { &raw const (*cip).dst_addr });
    let p = unsafe { *ports };
    let csport = u16::from_ne_bytes([p[0], p[1]]);
    let cdport = u16::from_ne_bytes([p[2], p[3]]);
    let src = load_addr(unsafe { &raw const (*ip).src_addr });
    let dst = load_addr(unsafe { &raw const (*ip).dst_addr });
    // An error is sent to the quoted packet's source: the VIP (client side) or the client
    // (server side). One traversing us to someone else is not about a packet we sent.
    if dst != csrc {
        return None;
    }
    let key = FlowKey { src: cdst, dst: csrc, sport: cdport, dport: csport, proto: cnext, family: AF_INET6, _pad: [0; 2] };
    let now = conntrack::now_ns();
    let tot_len = (IPV6_HLEN + payload as usize) as u16;
    let pkt = Packet6 {
        eth,
        ip,
        l4: icmp as *mut u8,
        l4_off: icmp_off,
        proto: NEXTHDR_ICMPV6,
        tcp_flags: 0,
        sport: 0,
        dport: 0,
        tot_len,
        src,
        dst,
    };
    if let Some(e) = conntrack::lookup_in(&key, now) {
        stats::count(Counter::ConnHit);
        let (svc_id, dest_id, fwd, raddr, rport) =
            unsafe { ((*e).svc_id, (*e).dest_id, (*e).fwd, (*e).daddr, (*e).dport) };
        // IPVS counts the error as inbound traffic of the connection (`ip_vs_in_stats`).
        stats::traffic(svc_id, dest_id, true, 0, tot_len as u64);
        return Some(match fwd {
            FWD_ROUTE => v6::direct_route(ctx, &pkt, raddr),
            FWD_TUNNEL => v6::encapsulate(ctx, &pkt, raddr),
            FWD_MASQ => {
                unsafe {
                    // Outer destination VIP -> RIP (in the pseudo-header), quoted source
                    // VIP:vport -> RIP:rport.
                    store_addr(&raw mut (*ip).dst_addr, raddr);
                    store_addr(&raw mut (*cip).src_addr, raddr);
                    *(ports as *mut [u8; 2]) = rport.to_ne_bytes();
                    let mut c = u16::from_ne_bytes([(*icmp)[2], (*icmp)[3]]);
                    c = replace_addr(c, &dst, &raddr);
                    c = replace_addr(c, &csrc, &raddr);
                    c = replace2(c, csport, rport);
                    let b = c.to_ne_bytes();
                    (*icmp)[2] = b[0];
                    (*icmp)[3] = b[1];
                }
                v6::forward(ctx, &pkt)
            }
            _ => Counter::DropUnsupportedForward,
        });
    }
    let e = conntrack::lookup_out(&key, now)?;
    stats::count(Counter::ConnHit);
    let (svc_id, dest_id, vaddr, vport) = unsafe { ((*e).svc_id, (*e).dest_id, (*e).vaddr, (*e).vport) };
    // `ip_vs_out_stats`.
    stats::traffic(svc_id, dest_id, false, 0, tot_len as u64);
    unsafe {
        // Outer source -> VIP, whether the real server or a router sent it (the client knows
        // only the VIP); quoted destination RIP:rport -> VIP:vport.
        store_addr(&raw mut (*ip).src_addr, vaddr);
        store_addr(&raw mut (*cip).dst_addr, vaddr);
        *((ports as *mut u8).add(2) as *mut [u8; 2]) = vport.to_ne_bytes();
        let mut c = u16::from_ne_bytes([(*icmp)[2], (*icmp)[3]]);
        c = replace_addr(c, &src, &vaddr);
        c = replace_addr(c, &cdst, &vaddr);
        c = replace2(c, cdport, vport);
        let b = c.to_ne_bytes();
        (*icmp)[2] = b[0];
        (*icmp)[3] = b[1];
    }
    Some(v6::forward(ctx, &pkt))
}
