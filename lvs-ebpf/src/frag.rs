//! Fragments of datagrams to and from virtual services (`lvs_common::frag`).
//!
//! A first fragment (offset 0, more fragments set) carries the TCP/UDP header, so it takes the
//! normal path: connection lookup or scheduling, then NAT, DR or TUN. Just before it is sent,
//! [`remember_v4`] / [`remember_v6`] record in `FRAGS` where it went. A later fragment
//! (offset != 0) carries no ports; the parsers hand it to `lvs_xdp_frag` (a tail call, so its
//! verification does not add to the IPv4 program's budget), which runs [`process`]: on a hit
//! it is sent to the same address by the same method, on a miss it passes to the kernel with
//! `pass_fragment` / `pass_fragment_v6`. No later fragment is ever sent anywhere its first
//! fragment did not go.
//!
//! What a later fragment needs rewritten is only its IP header: the TCP/UDP checksum lives in
//! the first fragment, and the first fragment's incremental update (pseudo-header address
//! and port) already accounts for the whole datagram.

use aya_ebpf::programs::XdpContext;
use lvs_common::{
    counters::Counter,
    csum::replace4,
    frag::{FragEntry, FragKey, FRAG_REPLY, FRAG_TIMEOUT_V4_SECS, FRAG_TIMEOUT_V6_SECS},
    AF_INET, AF_INET6,
};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};

use crate::{
    conntrack::{now_ns, NSEC_PER_SEC},
    forward,
    maps::FRAGS,
    parse::{ptr_at, Packet, ETH_P_IPV6_BE, ETH_P_IP_BE},
    stats, tunnel,
    v6::{self, Packet6, IPV6_HLEN, NEXTHDR_DEST, NEXTHDR_FRAGMENT, NEXTHDR_HOP, NEXTHDR_ROUTING},
    FWD_MASQ, FWD_ROUTE, FWD_TUNNEL,
};

/// IPv4 "more fragments" flag and fragment offset mask, in the host-order `frags` word.
const IP_MF: u16 = 0x2000;
const IP_OFFSET: u16 = 0x1fff;

/// The key of an IPv4 datagram: raw addresses, the identification as on the wire.
#[inline(always)]
fn key_v4(saddr: u32, daddr: u32, id: [u8; 2], proto: u8) -> FragKey {
    FragKey {
        src: [saddr, 0, 0, 0],
        dst: [daddr, 0, 0, 0],
        id: u32::from_ne_bytes([id[0], id[1], 0, 0]),
        proto,
        family: AF_INET,
        _pad: [0; 2],
    }
}

/// The key of an IPv6 datagram: raw addresses, the fragment header's identification.
#[inline(always)]
fn key_v6(src: [u32; 4], dst: [u32; 4], id: u32, proto: u8) -> FragKey {
    FragKey { src, dst, id, proto, family: AF_INET6, _pad: [0; 2] }
}

#[inline(always)]
fn insert(key: &FragKey, how: u8, addr: [u32; 4], secs: u64) {
    let e = FragEntry { addr, expires_ns: now_ns() + secs * NSEC_PER_SEC, how, _pad: [0; 7] };
    // BPF_ANY: a stale entry of an earlier datagram with the same identification is replaced.
    if FRAGS.insert(key, &e, 0).is_ok() {
        stats::count(Counter::FragTracked);
    }
}

/// If `pkt` is an IPv4 first fragment, records that its datagram goes to `addr` by `how` (a
/// forwarding method, or `FRAG_REPLY` with the virtual address). Call before any rewrite:
/// the key is the datagram as the client (or real server) sent it.
#[inline(always)]
pub fn remember_v4(pkt: &Packet, how: u8, addr: u32) {
    let (frags, id) = unsafe { (u16::from_be_bytes((*pkt.ip).frags), (*pkt.ip).id) };
    // The parser sends later fragments elsewhere: here the offset is 0.
    if frags & IP_MF == 0 {
        return;
    }
    let key = key_v4(pkt.saddr, pkt.daddr, id, pkt.proto);
    insert(&key, how, [addr, 0, 0, 0], FRAG_TIMEOUT_V4_SECS);
}

/// Undoes [`remember_v4`] for a first fragment that is not sent after all (a tunnel whose
/// encapsulation does not take fragments, tun.rs): its later fragments then pass to the
/// kernel as untracked ones.
#[inline(always)]
pub fn forget_v4(pkt: &Packet) {
    let id = unsafe { (*pkt.ip).id };
    let key = key_v4(pkt.saddr, pkt.daddr, id, pkt.proto);
    let _ = FRAGS.remove(&key);
}

/// [`remember_v4`] for IPv6: `id` is the fragment header's identification (the parser found
/// the packet to be a first fragment).
#[inline(always)]
pub fn remember_v6(pkt: &Packet6, id: u32, how: u8, addr: [u32; 4]) {
    let key = key_v6(pkt.src, pkt.dst, id, pkt.proto);
    insert(&key, how, addr, FRAG_TIMEOUT_V6_SECS);
}

/// A live entry for `key`, copied out.
#[inline(always)]
fn lookup(key: &FragKey) -> Option<FragEntry> {
    let e = unsafe { FRAGS.get(key) }?;
    if e.expires_ns <= now_ns() {
        return None;
    }
    Some(*e)
}

/// `lvs_xdp_frag`: a later fragment of either family.
#[inline(always)]
pub fn process(ctx: &XdpContext) -> Counter {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else { return Counter::PassNotIp };
    match unsafe { (*eth).ether_type } {
        ETH_P_IP_BE => later_v4(ctx, eth),
        ETH_P_IPV6_BE => later_v6(ctx, eth),
        _ => Counter::PassNotIp,
    }
}

#[inline(always)]
fn later_v4(ctx: &XdpContext, eth: *mut EthHdr) -> Counter {
    let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, EthHdr::LEN) else { return Counter::PassMalformed };
    let (vihl, tot_len, frags, id, proto) = unsafe {
        ((*ip).vihl, u16::from_be_bytes((*ip).tot_len), u16::from_be_bytes((*ip).frags), (*ip).id, (*ip).proto)
    };
    let ihl = (vihl & 0x0f) as usize * 4;
    // The parser's checks, as it passed the packet on without them.
    if vihl >> 4 != 4 || ihl < 20 || (tot_len as usize) < ihl || ctx.data() + EthHdr::LEN + tot_len as usize > ctx.data_end() {
        return Counter::PassMalformed;
    }
    if frags & IP_OFFSET == 0 {
        return Counter::PassFragment;
    }
    let (saddr, daddr) = unsafe { (u32::from_ne_bytes((*ip).src_addr), u32::from_ne_bytes((*ip).dst_addr)) };
    let key = key_v4(saddr, daddr, id, proto);
    let Some(e) = lookup(&key) else { return Counter::PassFragment };
    stats::count(Counter::FragHit);
    // A later fragment has no ports: the FIB lookups see zeros (as the kernel's own flow hash
    // of a fragment uses addresses only). `l4` points at them, not into the frame, so that a
    // last fragment shorter than 4 bytes needs no special case.
    let ports = [0u8; 4];
    let pkt = Packet::without_ports(eth, ip, &ports as *const [u8; 4] as *mut u8, proto, saddr, daddr, tot_len);
    let addr = e.addr[0];
    // For the next-hop cache's lifetime (forward.rs).
    let now = crate::conntrack::now_ns();
    match e.how {
        FWD_ROUTE => forward::direct_route(ctx, &pkt, addr, now),
        FWD_TUNNEL => tunnel::encapsulate(ctx, &pkt, addr, now),
        FWD_MASQ | FRAG_REPLY => {
            // Only the address and the header checksum change (module comment).
            unsafe {
                let check = u16::from_ne_bytes((*ip).check);
                if e.how == FRAG_REPLY {
                    (*ip).check = replace4(check, saddr, addr).to_ne_bytes();
                    (*ip).src_addr = addr.to_ne_bytes();
                } else {
                    (*ip).check = replace4(check, daddr, addr).to_ne_bytes();
                    (*ip).dst_addr = addr.to_ne_bytes();
                }
            }
            forward::forward(ctx, &pkt, now)
        }
        _ => Counter::DropUnsupportedForward,
    }
}

#[inline(always)]
fn later_v6(ctx: &XdpContext, eth: *mut EthHdr) -> Counter {
    let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, EthHdr::LEN) else { return Counter::PassMalformed };
    let payload = u16::from_be_bytes(unsafe { (*ip).payload_len }) as usize;
    if unsafe { (*ip).vcf[0] } >> 4 != 6 || payload == 0 || ctx.data() + EthHdr::LEN + IPV6_HLEN + payload > ctx.data_end() {
        return Counter::PassMalformed;
    }
    // The same bounded walk as the IPv6 parser, up to the fragment header.
    let mut next = unsafe { (*ip).next_hdr };
    let mut off = EthHdr::LEN + IPV6_HLEN;
    let mut i = 0;
    while i < v6::MAX_EXT_HEADERS {
        match next {
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST => {
                let Some(h) = ptr_at::<[u8; 2]>(ctx, off) else { return Counter::PassMalformed };
                let (n, len) = unsafe { ((*h)[0], (*h)[1]) };
                next = n;
                off += (len as usize + 1) * 8;
            }
            _ => break,
        }
        i += 1;
    }
    if next != NEXTHDR_FRAGMENT {
        return Counter::PassNotTcpUdp;
    }
    let Some(h) = ptr_at::<[u8; 8]>(ctx, off) else { return Counter::PassMalformed };
    let h = unsafe { *h };
    if u16::from_be_bytes([h[2], h[3]]) & 0xfff8 == 0 {
        return Counter::PassFragmentV6;
    }
    let (src, dst) = (v6::load_addr(unsafe { &raw const (*ip).src_addr }), v6::load_addr(unsafe { &raw const (*ip).dst_addr }));
    let key = key_v6(src, dst, u32::from_ne_bytes([h[4], h[5], h[6], h[7]]), h[0]);
    let Some(e) = lookup(&key) else { return Counter::PassFragmentV6 };
    stats::count(Counter::FragHit);
    let ports = [0u8; 4];
    let pkt = Packet6 {
        eth,
        ip,
        l4: &ports as *const [u8; 4] as *mut u8,
        l4_off: 0,
        proto: h[0],
        tcp_flags: 0,
        sport: 0,
        dport: 0,
        tot_len: (IPV6_HLEN + payload) as u16,
        src,
        dst,
    };
    match e.how {
        FWD_ROUTE => v6::direct_route(ctx, &pkt, e.addr),
        FWD_TUNNEL => v6::encapsulate(ctx, &pkt, e.addr),
        // IPv6 has no header checksum: only the address changes.
        FWD_MASQ => {
            v6::store_addr(unsafe { &raw mut (*ip).dst_addr }, e.addr);
            v6::forward(ctx, &pkt)
        }
        FRAG_REPLY => {
            v6::store_addr(unsafe { &raw mut (*ip).src_addr }, e.addr);
            v6::forward(ctx, &pkt)
        }
        _ => Counter::DropUnsupportedForward,
    }
}
