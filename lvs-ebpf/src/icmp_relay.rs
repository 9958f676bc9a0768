//! ICMP errors about connections we track, relayed to the party that needs them (IPVS's
//! `ip_vs_in_icmp` and `ip_vs_out_icmp`). Runs in its own program, `lvs_xdp_icmp`, tail-called
//! by `lvs_xdp` for packets that are neither TCP nor UDP: `lvs_xdp` is close to the verifier's
//! budget and stack, and this path is verified on its own.
//!
//! Only destination unreachable (incl. fragmentation needed), source quench and time exceeded
//! are looked at, as in IPVS (parameter problem is not: the kernel passes it too), and only
//! when they quote a TCP or UDP packet with its ports (fragment offset 0). The quoted packet
//! is one we sent, so its addresses are reversed against the connection's key:
//! - quoted VIP:vport -> client:cport, addressed to the VIP: the connection
//!   client:cport -> VIP:vport (`CONNS`); the error goes to its real server: NAT rewrites the
//!   outer destination and the quoted source to RIP:rport (`ip_vs_nat_icmp(.., 0)`), DR only
//!   changes the MACs, TUN encapsulates it as any packet of the connection.
//! - quoted client:cport -> RIP:rport, addressed to the client (from the real server or a
//!   router on its side): the NAT connection through `CONNS_OUT`; the quoted destination
//!   becomes VIP:vport and the outer source the VIP whoever sent it, as `ip_vs_nat_icmp(.., 1)`
//!   does, and it goes to the client.
//! The checksums are updated incrementally (RFC 1624): the quoted IP header's, the outer one's
//! and the ICMP checksum over the changed words. The kernel recomputes the ICMP checksum in
//! full after verifying it, so for a valid error the bytes are the same; the quoted TCP/UDP
//! checksum is left as it is, as the kernel leaves it. Anything else passes as before
//! (`pass_not_tcp_udp`).

use aya_ebpf::programs::XdpContext;
use lvs_common::{
    counters::Counter,
    csum::{replace2, replace4},
    flow::FlowKey,
    AF_INET,
};
use network_types::{eth::EthHdr, ip::Ipv4Hdr};

use lvs_common::service::tun_type;

use crate::{
    conntrack, forward,
    maps::DESTS,
    parse::{ptr_at, Packet, IPPROTO_TCP, IPPROTO_UDP},
    stats, tunnel, FWD_MASQ, FWD_ROUTE, FWD_TUNNEL,
};

const IPPROTO_ICMP: u8 = 1;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_SOURCE_QUENCH: u8 = 4;
const ICMP_TIME_EXCEEDED: u8 = 11;

#[inline(always)]
pub fn process(ctx: &XdpContext) -> Counter {
    relay(ctx).unwrap_or(Counter::PassNotTcpUdp)
}

#[inline(always)]
fn relay(ctx: &XdpContext) -> Option<Counter> {
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    let ip: *mut Ipv4Hdr = ptr_at(ctx, EthHdr::LEN)?;
    let (vihl, proto, frags, tot_len) =
        unsafe { ((*ip).vihl, (*ip).proto, u16::from_be_bytes((*ip).frags), u16::from_be_bytes((*ip).tot_len)) };
    // An ICMP error in fragments is the kernel's (it reassembles; IPVS sees it whole).
    if vihl >> 4 != 4 || vihl & 0x0f < 5 || proto != IPPROTO_ICMP || frags & 0x3fff != 0 {
        return None;
    }
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if ctx.data() + EthHdr::LEN + tot_len as usize > ctx.data_end() {
        return None;
    }
    let icmp: *mut [u8; 4] = ptr_at(ctx, EthHdr::LEN + ihl)?;
    let ty = unsafe { (*icmp)[0] };
    if !matches!(ty, ICMP_DEST_UNREACH | ICMP_SOURCE_QUENCH | ICMP_TIME_EXCEEDED) {
        return None;
    }
    // The quoted IP header follows the 8-byte ICMP header.
    let cip_off = EthHdr::LEN + ihl + 8;
    let cip: *mut Ipv4Hdr = ptr_at(ctx, cip_off)?;
    let (cvihl, cproto, cfrags) = unsafe { ((*cip).vihl, (*cip).proto, u16::from_be_bytes((*cip).frags)) };
    // Offset 0 only: a later fragment quotes no ports (IPVS: "Is the embedded protocol header
    // present?").
    if cvihl >> 4 != 4 || cvihl & 0x0f < 5 || !matches!(cproto, IPPROTO_TCP | IPPROTO_UDP) || cfrags & 0x1fff != 0 {
        return None;
    }
    let cihl = ((cvihl & 0x0f) as usize) * 4;
    let ports: *mut [u8; 4] = ptr_at(ctx, cip_off + cihl)?;
    let (csaddr, cdaddr, p) =
        unsafe { (u32::from_ne_bytes((*cip).src_addr), u32::from_ne_bytes((*cip).dst_addr), *ports) };
    let csport = u16::from_ne_bytes([p[0], p[1]]);
    let cdport = u16::from_ne_bytes([p[2], p[3]]);
    let (saddr, daddr) = unsafe { (u32::from_ne_bytes((*ip).src_addr), u32::from_ne_bytes((*ip).dst_addr)) };
    // An error is sent to the quoted packet's source: the VIP (client side) or the client
    // (server side). One traversing us to someone else is not about a packet we sent.
    if daddr != csaddr {
        return None;
    }
    // The quoted packet reversed: the connection's client-side key (client side) and its
    // reply's key (server side) alike.
    let key = FlowKey {
        src: [cdaddr, 0, 0, 0],
        dst: [csaddr, 0, 0, 0],
        sport: cdport,
        dport: csport,
        proto: cproto,
        family: AF_INET,
        _pad: [0; 2],
    };
    let now = conntrack::now_ns();
    let mut pkt = Packet::without_ports(eth, ip, icmp as *mut u8, IPPROTO_ICMP, saddr, daddr, tot_len);
    if let Some(e) = conntrack::lookup_in(&key, now) {
        stats::count(Counter::ConnHit);
        let (svc_id, dest_id, fwd, raddr, rport) =
            unsafe { ((*e).svc_id, (*e).dest_id, (*e).fwd, (*e).daddr[0], (*e).dport) };
        // IPVS counts the error as inbound traffic of the connection (`ip_vs_in_stats`).
        stats::traffic(svc_id, dest_id, true, 0, tot_len as u64);
        return Some(match fwd {
            FWD_ROUTE => forward::direct_route(ctx, &pkt, raddr, now),
            // IPv4 IP-in-IP here; any other encapsulation (GUE, GRE, an IPv6 real server) in
            // `lvs_xdp_tun`, as the connection's packets.
            FWD_TUNNEL => match DESTS.get(dest_id) {
                Some(d) if d.family == AF_INET && d.tun_type == tun_type::IPIP => tunnel::encapsulate(ctx, &pkt, raddr, now),
                Some(_) => {
                    crate::tun::note_dest(dest_id);
                    crate::maps::tail_call(ctx, lvs_common::XDP_TUN_SLOT);
                    Counter::DropUnsupportedForward
                }
                None => Counter::DropUnsupportedForward,
            },
            FWD_MASQ => {
                unsafe {
                    // Outer destination VIP -> RIP.
                    (*ip).check = replace4(u16::from_ne_bytes((*ip).check), daddr, raddr).to_ne_bytes();
                    (*ip).dst_addr = raddr.to_ne_bytes();
                    // Quoted source VIP:vport -> RIP:rport, and the ICMP checksum over them.
                    let old_c = u16::from_ne_bytes((*cip).check);
                    let new_c = replace4(old_c, csaddr, raddr);
                    (*cip).check = new_c.to_ne_bytes();
                    (*cip).src_addr = raddr.to_ne_bytes();
                    *(ports as *mut [u8; 2]) = rport.to_ne_bytes();
                    let mut ic = u16::from_ne_bytes([(*icmp)[2], (*icmp)[3]]);
                    ic = replace4(ic, csaddr, raddr);
                    ic = replace2(ic, old_c, new_c);
                    ic = replace2(ic, csport, rport);
                    let b = ic.to_ne_bytes();
                    (*icmp)[2] = b[0];
                    (*icmp)[3] = b[1];
                }
                pkt.daddr = raddr;
                forward::forward(ctx, &pkt, now)
            }
            _ => Counter::DropUnsupportedForward,
        });
    }
    let e = conntrack::lookup_out(&key, now)?;
    stats::count(Counter::ConnHit);
    let (svc_id, dest_id, vaddr, vport) = unsafe { ((*e).svc_id, (*e).dest_id, (*e).vaddr[0], (*e).vport) };
    // `ip_vs_out_stats`.
    stats::traffic(svc_id, dest_id, false, 0, tot_len as u64);
    unsafe {
        // Outer source -> VIP, whether the real server or a router sent it (the client knows
        // only the VIP; a router's own address would mean nothing to its connection).
        (*ip).check = replace4(u16::from_ne_bytes((*ip).check), saddr, vaddr).to_ne_bytes();
        (*ip).src_addr = vaddr.to_ne_bytes();
        // Quoted destination RIP:rport -> VIP:vport.
        let old_c = u16::from_ne_bytes((*cip).check);
        let new_c = replace4(old_c, cdaddr, vaddr);
        (*cip).check = new_c.to_ne_bytes();
        (*cip).dst_addr = vaddr.to_ne_bytes();
        *((ports as *mut u8).add(2) as *mut [u8; 2]) = vport.to_ne_bytes();
        let mut ic = u16::from_ne_bytes([(*icmp)[2], (*icmp)[3]]);
        ic = replace4(ic, cdaddr, vaddr);
        ic = replace2(ic, old_c, new_c);
        ic = replace2(ic, cdport, vport);
        let b = ic.to_ne_bytes();
        (*icmp)[2] = b[0];
        (*icmp)[3] = b[1];
    }
    pkt.saddr = vaddr;
    Some(forward::forward(ctx, &pkt, now))
}
