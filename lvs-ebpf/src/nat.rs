//! Masquerading rewrites with incremental IPv4/TCP/UDP checksum updates (RFC 1624).

use lvs_common::csum::{replace2, replace4};

use crate::parse::{Packet, IPPROTO_UDP};

/// Offset of the checksum in the TCP (16) and UDP (6) headers.
#[inline(always)]
fn l4_check_off(proto: u8) -> usize {
    if proto == IPPROTO_UDP {
        6
    } else {
        16
    }
}

/// Rewrites one address (source or destination) and the matching port, fixing the IP header
/// checksum and the L4 checksum (which covers the address through the pseudo-header).
#[inline(always)]
fn rewrite(pkt: &Packet, dst: bool, new_addr: u32, new_port: u16) {
    let ip = pkt.ip;
    let (old_addr, old_port) =
        if dst { (pkt.daddr, pkt.dport) } else { (pkt.saddr, pkt.sport) };
    unsafe {
        let check = u16::from_ne_bytes((*ip).check);
        (*ip).check = replace4(check, old_addr, new_addr).to_ne_bytes();
        if dst {
            (*ip).dst_addr = new_addr.to_ne_bytes();
        } else {
            (*ip).src_addr = new_addr.to_ne_bytes();
        }

        let port_ptr = pkt.l4.add(if dst { 2 } else { 0 }) as *mut [u8; 2];
        *port_ptr = new_port.to_ne_bytes();

        let check_ptr = pkt.l4.add(l4_check_off(pkt.proto)) as *mut [u8; 2];
        let l4check = u16::from_ne_bytes(*check_ptr);
        // A zero UDP checksum means "none" (IPv4): leave it so.
        if pkt.proto == IPPROTO_UDP && l4check == 0 {
            return;
        }
        let mut c = replace4(l4check, old_addr, new_addr);
        c = replace2(c, old_port, new_port);
        // UDP transmits a computed zero as all ones (RFC 768).
        if pkt.proto == IPPROTO_UDP && c == 0 {
            c = 0xffff;
        }
        *check_ptr = c.to_ne_bytes();
    }
}

/// Client -> VIP becomes client -> real server.
#[inline(always)]
pub fn to_real_server(pkt: &Packet, raddr: u32, rport: u16) {
    rewrite(pkt, true, raddr, rport);
}

/// Real server -> client becomes VIP -> client.
#[inline(always)]
pub fn to_client(pkt: &Packet, vaddr: u32, vport: u16) {
    rewrite(pkt, false, vaddr, vport);
}
