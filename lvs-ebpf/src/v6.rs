//! The IPv6 path: `lvs_xdp6`, reached from `lvs_xdp` by a tail call (see there for why it is a
//! program of its own).
//!
//! The connection table, persistence templates, statistics and real-server counters are the
//! IPv4 path's own maps and code: their keys carry 4-word addresses and a family. Only the
//! packet handling differs: parsing with extension headers, the NAT rewrite (no IP checksum;
//! the TCP/UDP checksum covers the addresses through the IPv6 pseudo-header), the FIB lookup
//! with `AF_INET6`, the hop limit, IPv6-in-IPv6 tunnelling and the ICMPv6 errors.
//!
//! Schedulers that hash an address (sh, dh, mh, lblc, lblcr) are given, as the IPv4 address
//! they hash, the XOR of the IPv6 address's four 32-bit words: that is the kernel's IPv6 rule
//! (`addr_fold = a[0] ^ a[1] ^ a[2] ^ a[3]`, then the IPv4 hash of `ntohl(addr_fold)`), and XOR
//! commutes with the byte swap, so `u32::from_be(fold)` in the shared code is `ntohl` of it.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_redirect, bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use lvs_common::{
    classify::CTL_PORT0_SERVICES,
    counters::Counter,
    csum::{fold, replace2, replace4},
    flow::{conn_flags, ConnEntry, FlowKey},
    fwd::NeighKey,
    persist::TemplateScope,
    service::{SvcKey, SVC_F_ONEPACKET},
    tcp_state::{DIR_INPUT, DIR_OUTPUT, TCP_RST, TCP_SYN},
    AF_INET6, XDP6_NEW_SLOT, XDP6_SEND_SLOT,
};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
};

use crate::{
    conntrack, dest_state, expire_nodest_conn,
    forward::{
        redirect_eth, FibParams, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
        BPF_FIB_LOOKUP_SRC,
    },
    maps::{DESTS, LOOKUP_CTL, NEIGH_MISS, SERVICES, SVC_INDEX, V6_SCRATCH},
    parse::{ptr_at, Packet, IPPROTO_TCP, IPPROTO_UDP},
    persist, schedule, stats, DestState, FWD_MASQ, FWD_ROUTE, FWD_TUNNEL,
};

pub(crate) const NEXTHDR_HOP: u8 = 0;
pub(crate) const NEXTHDR_ROUTING: u8 = 43;
pub(crate) const NEXTHDR_FRAGMENT: u8 = 44;
pub(crate) const NEXTHDR_DEST: u8 = 60;
pub(crate) const NEXTHDR_ICMPV6: u8 = 58;
/// IPv6-in-IPv6 (`IPPROTO_IPV6`), the outer header's next header in a tunnel.
const NEXTHDR_IPV6: u8 = 41;
/// Extension headers walked before the TCP/UDP header; a packet with more passes to the
/// kernel. Hop-by-hop, routing and destination options (twice: before and after routing) are
/// all RFC 8200 allows in front of a transport header without fragmentation or IPsec.
pub const MAX_EXT_HEADERS: usize = 4;
/// The IPv6 header's length, and the tunnel's overhead.
pub(crate) const IPV6_HLEN: usize = 40;
/// RFC 8200's minimum link MTU: IPVS refuses to tunnel over a path with less.
const IPV6_MIN_MTU: u16 = 1280;

/// A parsed IPv6 TCP/UDP packet.
pub(crate) struct Packet6 {
    pub eth: *mut EthHdr,
    pub ip: *mut Ipv6Hdr,
    /// Start of the TCP or UDP header (after any extension headers).
    pub l4: *mut u8,
    /// Its offset in the frame (bounded: at most 54 + 4 x 2048).
    pub l4_off: usize,
    pub proto: u8,
    pub tcp_flags: u8,
    /// Network order.
    pub sport: u16,
    pub dport: u16,
    /// Header plus payload length, host order: what IPVS counts as the packet's bytes.
    pub tot_len: u16,
    /// Addresses as four network-order words.
    pub src: [u32; 4],
    pub dst: [u32; 4],
}

/// An address in the header as four network-order words. Four 32-bit loads: built from the
/// `[u8; 16]` field byte by byte, LLVM spilled each byte to its own 8-byte stack slot (256
/// bytes for two addresses) and the frame went past BPF's 512 bytes. The header is only
/// 2-byte aligned in the frame; the loads are unaligned, which XDP programs may do (the
/// verifier checks alignment only where the architecture needs it, not on x86 or arm64).
#[inline(always)]
pub(crate) fn load_addr(p: *const [u8; 16]) -> [u32; 4] {
    let w = p as *const u32;
    unsafe { [*w, *w.add(1), *w.add(2), *w.add(3)] }
}

/// The inverse of [`load_addr`]: four 32-bit stores.
#[inline(always)]
pub(crate) fn store_addr(p: *mut [u8; 16], a: [u32; 4]) {
    let w = p as *mut u32;
    unsafe {
        *w = a[0];
        *w.add(1) = a[1];
        *w.add(2) = a[2];
        *w.add(3) = a[3];
    }
}

/// The kernel's IPv6 address fold for the hashing schedulers (network order in and out).
#[inline(always)]
fn fold_addr(a: [u32; 4]) -> u32 {
    a[0] ^ a[1] ^ a[2] ^ a[3]
}

/// Parses Ethernet -> IPv6 -> (hop-by-hop, routing, destination options)* -> TCP/UDP. A
/// fragment header passes with its own counter; ESP, AH, ICMPv6 (neighbour discovery, echo)
/// and anything else pass as not TCP/UDP. Nothing here drops.
#[inline(always)]
pub(crate) fn parse(ctx: &XdpContext) -> Result<Packet6, Counter> {
    let eth: *mut EthHdr = ptr_at(ctx, 0).ok_or(Counter::PassNotIp)?;
    let ip: *mut Ipv6Hdr = ptr_at(ctx, EthHdr::LEN).ok_or(Counter::PassMalformed)?;
    if unsafe { (*ip).vcf[0] } >> 4 != 6 {
        return Err(Counter::PassMalformed);
    }
    let payload = u16::from_be_bytes(unsafe { (*ip).payload_len }) as usize;
    // A payload length of 0 is a jumbogram (its length is in a hop-by-hop option): the kernel's.
    if payload == 0 || ctx.data() + EthHdr::LEN + IPV6_HLEN + payload > ctx.data_end() {
        return Err(Counter::PassMalformed);
    }
    let mut next = unsafe { (*ip).next_hdr };
    let mut off = EthHdr::LEN + IPV6_HLEN;
    // Bounded walk: each header is at most 2048 bytes, so `off` stays bounded for the verifier.
    let mut i = 0;
    while i < MAX_EXT_HEADERS {
        match next {
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST => {
                let h: *const [u8; 2] = ptr_at(ctx, off).ok_or(Counter::PassMalformed)?;
                let (n, len) = unsafe { ((*h)[0], (*h)[1]) };
                next = n;
                off += (len as usize + 1) * 8;
            }
            _ => break,
        }
        i += 1;
    }
    let Some(sc) = V6_SCRATCH.get_ptr_mut(0) else { return Err(Counter::PassMalformed) };
    // A fragment header: a later fragment (offset != 0, no ports) goes to the fragment
    // program (`lvs_xdp6` tail-calls it on this counter; frag.rs); a first fragment goes on
    // with the transport header behind it, and what frag.rs needs to record where it is sent
    // waits in the scratch slot (kept out of `Packet6`, so that the verifier does not explore
    // the rest twice, once per value of a flag).
    let mut frag = 0u8;
    let mut frag_id = 0u32;
    if next == NEXTHDR_FRAGMENT {
        let h: *const [u8; 8] = ptr_at(ctx, off).ok_or(Counter::PassMalformed)?;
        let h = unsafe { *h };
        if u16::from_be_bytes([h[2], h[3]]) & 0xfff8 != 0 {
            return Err(Counter::PassFragmentV6);
        }
        // M clear at offset 0 is an atomic fragment (RFC 6946): a whole datagram.
        frag = h[3] & 1;
        frag_id = u32::from_ne_bytes([h[4], h[5], h[6], h[7]]);
        next = h[0];
        off += 8;
    }
    unsafe {
        core::ptr::write_volatile(&raw mut (*sc).frag, frag);
        core::ptr::write_volatile(&raw mut (*sc).frag_id, frag_id);
    }
    // How many extension headers there were must not reach the rest of the program: the
    // verifier would explore everything after this point once per count (with a different
    // range for `off` each time), which took the new-connection program past its million
    // instructions. Stored and read back through a per-CPU slot, the offset is just "some
    // number below 16 KiB" on every path, and the paths merge.
    let off = unsafe {
        let slot = &raw mut (*sc).off;
        core::ptr::write_volatile(slot, off as u64);
        core::ptr::read_volatile(slot) as usize & 0x3fff
    };
    let (l4, tcp_flags) = match next {
        IPPROTO_TCP => {
            let tcp: *mut TcpHdr = ptr_at(ctx, off).ok_or(Counter::PassMalformed)?;
            (tcp as *mut u8, unsafe { *(tcp as *const u8).add(13) })
        }
        IPPROTO_UDP => {
            let udp: *mut UdpHdr = ptr_at(ctx, off).ok_or(Counter::PassMalformed)?;
            (udp as *mut u8, 0)
        }
        // A second fragment header, or one in a first fragment followed by more extension
        // headers: not walked.
        NEXTHDR_FRAGMENT => return Err(Counter::PassFragmentV6),
        _ => return Err(Counter::PassNotTcpUdp),
    };
    let p = unsafe { *(l4 as *const [u8; 4]) };
    Ok(Packet6 {
        eth,
        ip,
        l4,
        l4_off: off,
        proto: next,
        tcp_flags,
        sport: u16::from_ne_bytes([p[0], p[1]]),
        dport: u16::from_ne_bytes([p[2], p[3]]),
        tot_len: (IPV6_HLEN + payload) as u16,
        src: load_addr(unsafe { &raw const (*ip).src_addr }),
        dst: load_addr(unsafe { &raw const (*ip).dst_addr }),
    })
}

enum Step {
    Done(Counter),
    /// Forwarding method, real server address, port (network order).
    Send(u8, [u32; 4], u16),
    /// A new connection to a service: for `lvs_xdp6_new`.
    New,
}

impl From<Counter> for Step {
    #[inline(always)]
    fn from(c: Counter) -> Step {
        Step::Done(c)
    }
}

#[inline(always)]
pub fn process(ctx: &XdpContext) -> Counter {
    let pkt = match parse(ctx) {
        Ok(p) => p,
        Err(c) => return c,
    };
    match decide(&pkt) {
        Step::Done(c) => c,
        Step::Send(how, addr, port) => to_send(ctx, how, addr, port),
        Step::New => {
            // A second tail call: the new-connection path (persistence, the schedulers,
            // the connection's creation) is verified in a program of its own. Within one
            // program the verifier went past its million instructions exploring it on top
            // of the established-flow lookups.
            crate::maps::tail_call(ctx, XDP6_NEW_SLOT);
            // Only when lvsd has not filled the slot: the kernel gets the packet.
            Counter::PassNoService
        }
    }
}

/// `lvs_xdp6_new`: a packet that starts a connection to an IPv6 service (as `process` found).
#[inline(always)]
pub fn process_new(ctx: &XdpContext) -> Counter {
    let pkt = match parse(ctx) {
        Ok(p) => p,
        Err(c) => return c,
    };
    match decide_new(&pkt) {
        Step::Done(c) => c,
        Step::Send(how, addr, port) => to_send(ctx, how, addr, port),
        Step::New => Counter::PassNoService,
    }
}

/// Hands the packet to `lvs_xdp6_send` with what to do, through the per-CPU scratch slot (a
/// tail call keeps the CPU). The rewrites, FIB lookups, tunnel header and ICMPv6 errors run
/// in a program of their own because their stack frame, added to that of the connection and
/// scheduler logic (and the schedulers' callbacks), went over BPF's 512 bytes.
#[inline(always)]
fn to_send(ctx: &XdpContext, how: u8, addr: [u32; 4], port: u16) -> Counter {
    let Some(sc) = V6_SCRATCH.get_ptr_mut(0) else { return Counter::PassFibFailed };
    unsafe {
        (*sc).how = how;
        (*sc).addr = addr;
        (*sc).port = port;
    }
    crate::maps::tail_call(ctx, XDP6_SEND_SLOT);
    // Only when lvsd has not filled the slot: the packet is still unchanged.
    Counter::PassFibFailed
}

/// `lvs_xdp6_send`: carries out what `lvs_xdp6` or `lvs_xdp6_new` decided for this packet.
#[inline(always)]
pub fn process_send(ctx: &XdpContext) -> Counter {
    let pkt = match parse(ctx) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let Some(sc) = V6_SCRATCH.get_ptr_mut(0) else { return Counter::PassFibFailed };
    let (how, addr, port, frag, frag_id) = unsafe { ((*sc).how, (*sc).addr, (*sc).port, (*sc).frag, (*sc).frag_id) };
    // A first fragment: where it goes, for its later fragments (frag.rs). Before `send`
    // rewrites anything: the key is the datagram as it arrived.
    if frag != 0 {
        match how {
            // A first fragment to a tunnel other than IPv6-in-IPv6 IP-in-IP (GUE, GRE, IPv6 in
            // IPv4): its later fragments could not follow it into that encapsulation (the
            // fragment table keeps an address and a method), so the kernel gets the datagram.
            FWD_TUNNEL if !matches!(crate::tun::noted_dest(), Some(d) if d.family == lvs_common::AF_INET6 && d.tun_type == lvs_common::service::tun_type::IPIP) => {
                crate::tun::clear_noted();
                return Counter::PassFragmentV6;
            }
            FWD_ROUTE | FWD_TUNNEL | FWD_MASQ => crate::frag::remember_v6(&pkt, frag_id, how, addr),
            SEND_REPLY => crate::frag::remember_v6(&pkt, frag_id, lvs_common::frag::FRAG_REPLY, addr),
            _ => {}
        }
    }
    send(ctx, &pkt, how, &addr, port)
}

/// [`Step::Send`] for a NAT reply: the source becomes the given (virtual) address and port.
const SEND_REPLY: u8 = 0xf0;
/// [`Step::Send`] for a packet forwarded unchanged (a routed-back DR/TUN reply).
const SEND_AS_IS: u8 = 0xf1;
/// [`Step::Send`] when no real server can take the connection: ICMPv6 port unreachable.
const SEND_UNREACHABLE: u8 = 0xf2;

/// Everything that writes the packet and picks its way out, after the decision.
#[inline(always)]
fn send(ctx: &XdpContext, pkt: &Packet6, how: u8, addr: &[u32; 4], port: u16) -> Counter {
    match how {
        FWD_ROUTE => direct_route(ctx, pkt, *addr),
        FWD_TUNNEL => match crate::tun::noted_dest() {
            // IPv6 in IPv6 by IP-in-IP is built here; every other encapsulation (GUE, GRE,
            // IPv6 in IPv4) in `lvs_xdp_tun`.
            Some(d) if d.family == AF_INET6 && d.tun_type == lvs_common::service::tun_type::IPIP => {
                crate::tun::clear_noted();
                encapsulate(ctx, pkt, *addr)
            }
            Some(_) => {
                crate::maps::tail_call(ctx, lvs_common::XDP_TUN_SLOT);
                // Only when lvsd has not filled the slot: the packet is unchanged.
                Counter::DropUnsupportedForward
            }
            None => Counter::DropUnsupportedForward,
        },
        SEND_UNREACHABLE => port_unreachable(ctx, pkt),
        SEND_AS_IS => forward(ctx, pkt),
        SEND_REPLY => match rewrite(ctx, pkt, false, *addr, port) {
            Some(()) => forward(ctx, pkt),
            None => Counter::PassMalformed,
        },
        _ => match rewrite(ctx, pkt, true, *addr, port) {
            Some(()) => forward_to_dest(ctx, pkt),
            None => Counter::PassMalformed,
        },
    }
}

/// The IPv4-shaped view the shared scheduler code reads: protocol, flags, ports and the
/// folded addresses (module comment). Its `ip` pointer is never used by the schedulers.
#[inline(always)]
fn sched_view(pkt: &Packet6) -> Packet {
    Packet {
        eth: pkt.eth,
        ip: pkt.ip as *mut Ipv4Hdr,
        l4: pkt.l4,
        proto: pkt.proto,
        saddr: fold_addr(pkt.src),
        daddr: fold_addr(pkt.dst),
        sport: pkt.sport,
        dport: pkt.dport,
        tcp_flags: pkt.tcp_flags,
        tot_len: pkt.tot_len,
    }
}

/// The state machine and timer for one packet (`conntrack::update` for IPv6 keys).
#[inline(always)]
fn update(e: *mut ConnEntry, pkt: &Packet6, dir: usize, now: u64) {
    conntrack::update_with(e, pkt.proto, pkt.tcp_flags, dir, now, |dir| {
        if dir == DIR_OUTPUT {
            (pkt.dst, pkt.dport, AF_INET6)
        } else {
            (pkt.src, pkt.sport, AF_INET6)
        }
    })
}

#[inline(always)]
fn is_syn(pkt: &Packet6) -> bool {
    pkt.proto == IPPROTO_TCP && pkt.tcp_flags & TCP_SYN != 0
}

/// `main.rs`'s `decide`, for IPv6: the same order of lookups and the same IPVS rules.
#[inline(always)]
fn decide(pkt: &Packet6) -> Step {
    let now = conntrack::now_ns();
    let key = FlowKey {
        src: pkt.src,
        dst: pkt.dst,
        sport: pkt.sport,
        dport: pkt.dport,
        proto: pkt.proto,
        family: AF_INET6,
        _pad: [0; 2],
    };
    // 1. Client -> VIP on a known connection (what it finds is noted for a new connection's
    // insert in `lvs_xdp6_new`).
    let mut prior = conntrack::PRIOR_NONE;
    if let Some(e) = conntrack::lookup_in_noting(&key, now, &mut prior) {
        if !conntrack::reusable(e, &sched_view(pkt)) {
            stats::count(Counter::ConnHit);
            match dest_state(e) {
                DestState::Serving => return to_real_server(pkt, e, now, 0),
                DestState::Quiesced if !(is_syn(pkt) && expire_nodest_conn()) => {
                    return to_real_server(pkt, e, now, 0)
                }
                DestState::Gone if !expire_nodest_conn() => return Counter::DropDestUnavailable.into(),
                _ => conntrack::expire_now(e, now),
            }
        }
    }
    // 2. Real server -> client reply on a NAT connection.
    if let Some(e) = conntrack::lookup_out(&key, now) {
        stats::count(Counter::ConnHit);
        if !matches!(dest_state(e), DestState::Gone) {
            let (svc_id, dest_id) = unsafe { ((*e).svc_id, (*e).dest_id) };
            stats::traffic(svc_id, dest_id, false, 0, pkt.tot_len as u64);
        }
        update(e, pkt, DIR_OUTPUT, now);
        let (vaddr, vport) = unsafe { ((*e).vaddr, (*e).vport) };
        return Step::Send(SEND_REPLY, vaddr, vport);
    }
    // 3. A new connection to a virtual service?
    let mut skey = SvcKey { addr: pkt.dst, port: pkt.dport, proto: pkt.proto, family: AF_INET6 };
    let svc_id = find_service(&mut skey);
    if svc_id == NO_SERVICE {
        return dr_reply(pkt, now);
    }
    if pkt.proto == IPPROTO_TCP && pkt.tcp_flags & (TCP_SYN | TCP_RST) != TCP_SYN {
        return Counter::PassNotSyn.into();
    }
    conntrack::note_prior(prior);
    Step::New
}

/// The rest of `decide` for a new connection, in `lvs_xdp6_new`: the service is looked up
/// again (nothing passes between tail-called programs but the packet).
#[inline(always)]
fn decide_new(pkt: &Packet6) -> Step {
    let now = conntrack::now_ns();
    // The keys and the scheduler's view live in the per-CPU scratch slot: on the stack they
    // took this program's main frame past what `send` and the schedulers' callbacks leave.
    let Some(sc) = V6_SCRATCH.get_ptr_mut(0) else { return Counter::DropServiceMissing.into() };
    let sc = unsafe { &mut *sc };
    sc.key = FlowKey {
        src: pkt.src,
        dst: pkt.dst,
        sport: pkt.sport,
        dport: pkt.dport,
        proto: pkt.proto,
        family: AF_INET6,
        _pad: [0; 2],
    };
    sc.skey = SvcKey { addr: pkt.dst, port: pkt.dport, proto: pkt.proto, family: AF_INET6 };
    let svc_id = find_service(&mut sc.skey);
    if svc_id == NO_SERVICE {
        return Counter::PassNoService.into();
    }
    let key = &sc.key;
    let Some(svc) = SERVICES.get(svc_id) else { return Counter::DropServiceMissing.into() };
    let hit = match persist::scope(svc, key) {
        Some(scope) => persist::lookup(svc_id, &scope, key, now, 0),
        None => persist::MISS,
    };
    let dest_id = if hit != persist::MISS {
        hit
    } else {
        sc.view = Packet {
            eth: core::ptr::null_mut(),
            ip: core::ptr::null_mut(),
            l4: core::ptr::null_mut(),
            proto: pkt.proto,
            saddr: fold_addr(pkt.src),
            daddr: fold_addr(pkt.dst),
            sport: pkt.sport,
            dport: pkt.dport,
            tcp_flags: pkt.tcp_flags,
            tot_len: pkt.tot_len,
        };
        match schedule::pick(svc_id, svc, &sc.view, now) {
            Some(d) => d,
            None => return Step::Send(SEND_UNREACHABLE, [0; 4], 0),
        }
    };
    let ctl = persist::scope(svc, key);
    if let (persist::MISS, Some(scope)) = (hit, &ctl) {
        if bind(svc_id, scope, key, dest_id, now) == 0 {
            return Counter::DropConnTableFull.into();
        }
    }
    let Some(dest) = DESTS.get(dest_id) else { return Counter::DropServiceMissing.into() };
    // An IPv6 service's real servers are IPv6, except tunnel servers, which may be IPv4
    // (IPv6 in IPv4, `lvs_xdp_tun`); never send anything else elsewhere.
    if !matches!(dest.fwd, FWD_MASQ | FWD_TUNNEL | FWD_ROUTE) || (dest.family != AF_INET6 && dest.fwd != FWD_TUNNEL) {
        return Counter::DropUnsupportedForward.into();
    }
    if pkt.proto == IPPROTO_UDP && svc.flags & SVC_F_ONEPACKET != 0 {
        if dest.fwd == FWD_TUNNEL {
            crate::tun::note_dest(dest_id);
        }
        conntrack::one_packet(dest_id, dest);
        stats::count(Counter::NewConn);
        stats::traffic(svc_id, dest_id, true, 1, pkt.tot_len as u64);
        let dport = if dest.port == 0 { pkt.dport } else { dest.port };
        return Step::Send(dest.fwd, dest.addr, dport);
    }
    let ctl_ptr = match &ctl {
        Some(scope) => scope as *const TemplateScope,
        None => core::ptr::null(),
    };
    let dport = create(key, (svc_id as u64) << 32 | dest_id as u64, svc.key.port, ctl_ptr, pkt.tcp_flags, now);
    if dport < 0 {
        return Counter::DropConnTableFull.into();
    }
    stats::count(Counter::NewConn);
    // `to_real_server` for the new entry, which `create` wrote in its final form.
    let Some(dest) = DESTS.get(dest_id) else { return Counter::DropServiceMissing.into() };
    stats::traffic(svc_id, dest_id, true, 1, pkt.tot_len as u64);
    if dest.fwd == FWD_TUNNEL {
        crate::tun::note_dest(dest_id);
    }
    Step::Send(dest.fwd, dest.addr, dport as u16)
}

/// `persist::bind`: 1 when the template was made, 0 when the table is full.
#[inline(always)]
fn bind(svc_id: u32, scope: &TemplateScope, key: &FlowKey, dest_id: u32, now: u64) -> u32 {
    let Some(svc) = SERVICES.get(svc_id) else { return 0 };
    persist::bind(svc, scope, key, dest_id, now, || 0).map_or(0, |()| 1)
}

/// `conntrack::create`: the new connection's real-server port, or -1 when the table is full
/// (what `lvs_xdp6` found under its key passes in `CONN_PRIOR`). `ids`:
/// service slot in the high half, real server slot in the low half; `ctl`: the persistence
/// scope, or null. (Should this become a subprogram: no `Option` in its signature, as the
/// kernel refuses the BTF of a Rust enum, and without BTF function information it refuses
/// the program's tail calls.)
#[inline(always)]
fn create(key: &FlowKey, ids: u64, svc_port: u16, ctl: *const TemplateScope, tcp_flags: u8, now: u64) -> i32 {
    let (svc_id, dest_id) = ((ids >> 32) as u32, ids as u32);
    let Some(dest) = DESTS.get(dest_id) else { return -1 };
    let ctl = if ctl.is_null() { None } else { Some(unsafe { *ctl }) };
    conntrack::create(key, svc_id, dest_id, dest, svc_port, ctl, || 0, tcp_flags, now).map_or(-1, |p| p as i32)
}

#[inline(always)]
fn to_real_server(pkt: &Packet6, e: *mut ConnEntry, now: u64, new_conns: u64) -> Step {
    let (svc_id, dest_id) = unsafe { ((*e).svc_id, (*e).dest_id) };
    stats::traffic(svc_id, dest_id, true, new_conns, pkt.tot_len as u64);
    update(e, pkt, DIR_INPUT, now);
    let (daddr, dport, fwd) = unsafe { ((*e).daddr, (*e).dport, (*e).fwd) };
    if fwd == FWD_TUNNEL {
        crate::tun::note_dest(dest_id);
    }
    Step::Send(fwd, daddr, dport)
}

const NO_SERVICE: u32 = u32::MAX;

/// The packet's firewall mark from the classifier's IPv6 rules: the first matching rule's,
/// or 0 (`classify::mark_of` for IPv6; the same bounded walk over the live set).
#[inline(always)]
fn mark_of(daddr: &[u32; 4], proto: u8, dport: u16) -> u32 {
    crate::classify::first_mark(|r| r.matches_v6(daddr, proto, dport))
}

/// The service of `key` (address, port, protocol; IPv6) in IPVS's order: the IPv6
/// firewall-mark service (`-f MARK -6`) of the packet's mark, then the address service, then
/// the port-0 service of its address and protocol when any exists. A subprogram for the
/// reason given at `classify::find_service`.
#[inline(never)]
fn find_service(key: &mut SvcKey) -> u32 {
    let mark = mark_of(&key.addr, key.proto, u16::from_be(key.port));
    if mark != 0 {
        if let Some(id) = unsafe { SVC_INDEX.get(&SvcKey::fwmark(mark, AF_INET6)) } {
            return *id;
        }
    }
    if let Some(id) = unsafe { SVC_INDEX.get(&*key) } {
        return *id;
    }
    match LOOKUP_CTL.get(CTL_PORT0_SERVICES) {
        Some(n) if *n != 0 => {
            key.port = 0;
            unsafe { SVC_INDEX.get(&*key) }.copied().unwrap_or(NO_SERVICE)
        }
        _ => NO_SERVICE,
    }
}

/// `main.rs`'s `dr_reply` for IPv6: a DR/TUN reply routed back through the director.
#[inline(always)]
fn dr_reply(pkt: &Packet6, now: u64) -> Step {
    let from_svc = SvcKey { addr: pkt.src, port: pkt.sport, proto: pkt.proto, family: AF_INET6 };
    if unsafe { SVC_INDEX.get(&from_svc) }.is_none() {
        return Counter::PassNoService.into();
    }
    let key = FlowKey {
        src: pkt.dst,
        dst: pkt.src,
        sport: pkt.dport,
        dport: pkt.sport,
        proto: pkt.proto,
        family: AF_INET6,
        _pad: [0; 2],
    };
    let Some(e) = conntrack::lookup_in(&key, now) else { return Counter::PassNoService.into() };
    if unsafe { (*e).flags } & conn_flags::NAT != 0 {
        return Counter::PassNoService.into();
    }
    stats::count(Counter::ConnHit);
    unsafe { (*e).flags |= conn_flags::SEEN_OUTPUT };
    update(e, pkt, DIR_OUTPUT, now);
    Step::Send(SEND_AS_IS, [0; 4], 0)
}

/// Offset of the checksum in the TCP (16) and UDP (6) headers.
#[inline(always)]
fn l4_check_off(proto: u8) -> usize {
    if proto == IPPROTO_UDP {
        6
    } else {
        16
    }
}

/// NAT: rewrites the destination (towards the real server) or the source (back to the client)
/// address and port. IPv6 has no header checksum; the TCP/UDP checksum covers both addresses
/// through the pseudo-header, so it is updated word by word (RFC 1624). UDP's checksum is
/// mandatory over IPv6, so there is no "no checksum" case.
#[inline(always)]
fn rewrite(ctx: &XdpContext, pkt: &Packet6, dst: bool, new_addr: [u32; 4], new_port: u16) -> Option<()> {
    let (old_addr, old_port) = if dst { (pkt.dst, pkt.dport) } else { (pkt.src, pkt.sport) };
    // The L4 pointers are derived again from the frame here: this runs in a subprogram of its
    // own, where the verifier no longer knows which of TCP's 20 or UDP's 8 bytes were
    // checked at parse time. The mask keeps the offset visibly bounded.
    let l4_off = pkt.l4_off & 0x3fff;
    let ports: *mut [u8; 4] = ptr_at(ctx, l4_off)?;
    let check_ptr: *mut [u8; 2] = ptr_at(ctx, l4_off + l4_check_off(pkt.proto))?;
    unsafe {
        if dst {
            store_addr(&raw mut (*pkt.ip).dst_addr, new_addr);
        } else {
            store_addr(&raw mut (*pkt.ip).src_addr, new_addr);
        }
        let p = new_port.to_ne_bytes();
        if dst {
            (*ports)[2] = p[0];
            (*ports)[3] = p[1];
        } else {
            (*ports)[0] = p[0];
            (*ports)[1] = p[1];
        }
        let mut c = u16::from_ne_bytes(*check_ptr);
        c = replace4(c, old_addr[0], new_addr[0]);
        c = replace4(c, old_addr[1], new_addr[1]);
        c = replace4(c, old_addr[2], new_addr[2]);
        c = replace4(c, old_addr[3], new_addr[3]);
        c = replace2(c, old_port, new_port);
        if pkt.proto == IPPROTO_UDP && c == 0 {
            c = 0xffff;
        }
        *check_ptr = c.to_ne_bytes();
    }
    Some(())
}

/// One `AF_INET6` FIB lookup from the ingress interface (parameters in the per-CPU scratch
/// slot, as `forward::lookup`). `flowinfo` is the header's first word with the version
/// masked off (network order); `tot_len` host order, 0 for no MTU check.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn lookup(
    ctx: &XdpContext,
    proto: u8,
    ports: [u8; 4],
    tot_len: u16,
    flowinfo: u32,
    src: [u32; 4],
    dst: [u32; 4],
    flags: u32,
) -> Option<(i64, &'static FibParams)> {
    // The union's `flowinfo` member for AF_INET6.
    crate::forward::fib_lookup(ctx, AF_INET6, proto, ports, tot_len, flowinfo, src, dst, flags)
}

/// The header's flow information (traffic class and flow label), network order.
#[inline(always)]
fn flowinfo(pkt: &Packet6) -> u32 {
    u32::from_ne_bytes(unsafe { (*pkt.ip).vcf }) & 0x0fff_ffffu32.to_be()
}

/// `NextHop6::flags`: the entry holds the route's source address.
const HAS_SRC32: u32 = crate::nexthop::HAS_SRC as u32;

/// Forwards the (rewritten) packet towards its own destination, hop limit decremented; the
/// kernel's stack when the neighbour is unresolved or the hop limit runs out (it sends the
/// ICMPv6 time exceeded). The next hop comes from the cache (`nexthop`) keyed by destination
/// and source.
#[inline(always)]
pub(crate) fn forward(ctx: &XdpContext, pkt: &Packet6) -> Counter {
    forward_keyed(ctx, pkt, false)
}

/// [`forward`] for a packet rewritten towards a real server (NAT): its next hop is cached per
/// real server, whatever the client, as for IPv4.
#[inline(always)]
pub(crate) fn forward_to_dest(ctx: &XdpContext, pkt: &Packet6) -> Counter {
    forward_keyed(ctx, pkt, true)
}

#[inline(always)]
fn forward_keyed(ctx: &XdpContext, pkt: &Packet6, to_dest: bool) -> Counter {
    let (src, dst, hop) = unsafe {
        (load_addr(&raw const (*pkt.ip).src_addr), load_addr(&raw const (*pkt.ip).dst_addr), (*pkt.ip).hop_limit)
    };
    let (iif, now) = (ctx.ingress_ifindex() as u32, crate::conntrack::now_ns());
    let src_key = if to_dest { [0; 4] } else { src };
    // A cached next hop, if the packet fits its route's MTU (else the lookup below decides).
    if let Some(p) = crate::nexthop::get6(&dst, &src_key, iif, now, pkt.tot_len, 0) {
        return hop_and_redirect(pkt, hop, p, Counter::PassTtlExceeded);
    }
    let ports = unsafe { *(pkt.l4 as *const [u8; 4]) };
    let Some((rc, p)) = lookup(ctx, pkt.proto, ports, pkt.tot_len, flowinfo(pkt), src, dst, 0) else {
        return Counter::PassFibFailed;
    };
    match rc {
        BPF_FIB_LKUP_RET_SUCCESS => {}
        BPF_FIB_LKUP_RET_NO_NEIGH => return Counter::PassFibFallback,
        _ => return Counter::PassFibFailed,
    }
    // After a successful lookup (XDP's always check the MTU) `tot_len` holds the route's MTU.
    crate::nexthop::put6(&dst, &src_key, iif, p, 0, now);
    hop_and_redirect(pkt, hop, p, Counter::PassTtlExceeded)
}

/// Sends the packet by `p` with its hop limit (`hop`, as received) decremented, or ends in
/// `exceeded` when it would reach zero.
#[inline(always)]
fn hop_and_redirect(pkt: &Packet6, hop: u8, p: &FibParams, exceeded: Counter) -> Counter {
    if hop <= 1 {
        return exceeded;
    }
    unsafe { (*pkt.ip).hop_limit = hop - 1 };
    redirect_eth(pkt.eth, p)
}

/// Direct routing: only the MACs change (and the hop limit), towards real server `rip`. As
/// for IPv4, nothing may go to the kernel (it would deliver to the local VIP): a missing
/// neighbour is reported in `NEIGH_MISS` for lvsd to resolve, and the packet dropped. The
/// next hop is cached per real server (no MTU check: the packet does not grow).
#[inline(always)]
pub(crate) fn direct_route(ctx: &XdpContext, pkt: &Packet6, rip: [u32; 4]) -> Counter {
    let hop = unsafe { (*pkt.ip).hop_limit };
    let (iif, now) = (ctx.ingress_ifindex() as u32, crate::conntrack::now_ns());
    if let Some(p) = crate::nexthop::get6(&rip, &[0; 4], iif, now, 0, 0) {
        return hop_and_redirect(pkt, hop, p, Counter::DropTtlExceeded);
    }
    let ports = unsafe { *(pkt.l4 as *const [u8; 4]) };
    let Some((rc, p)) = lookup(ctx, pkt.proto, ports, 0, flowinfo(pkt), pkt.src, rip, 0) else {
        return Counter::DropNoRoute;
    };
    match rc {
        BPF_FIB_LKUP_RET_SUCCESS => {}
        BPF_FIB_LKUP_RET_NO_NEIGH => {
            let key = NeighKey { addr: p.dst, ifindex: p.ifindex, family: AF_INET6, _pad: [0; 3] };
            let _ = NEIGH_MISS.insert(&key, &0u32, 0);
            return Counter::DropNoNeigh;
        }
        _ => return Counter::DropNoRoute,
    }
    crate::nexthop::put6(&rip, &[0; 4], iif, p, 0, now);
    hop_and_redirect(pkt, hop, p, Counter::DropTtlExceeded)
}

/// IPv6-in-IPv6 tunnelling (`-i`), as IPVS's `ip_vs_tunnel_xmit_v6`:
/// - outer source: the source address of the director's route towards the real server
///   (`BPF_FIB_LOOKUP_SRC`); outer destination: the real server; next header 41;
/// - traffic class and flow label copied from the inner header;
/// - hop limit: the inner one after its decrement;
/// - PMTU: a packet that would exceed the route's MTU once encapsulated is answered with
///   ICMPv6 packet too big carrying MTU - 40 (IPv6 routers never fragment), and not
///   forwarded; a route whose MTU leaves less than 1280 for the inner packet drops it, as
///   IPVS does.
#[inline(always)]
pub(crate) fn encapsulate(ctx: &XdpContext, pkt: &Packet6, rip: [u32; 4]) -> Counter {
    let (hop, vcf) = unsafe { ((*pkt.ip).hop_limit, (*pkt.ip).vcf) };
    let inner_len = pkt.tot_len;
    let outer_len = inner_len.saturating_add(IPV6_HLEN as u16);
    // The route towards the real server, from the next-hop cache if it is there (nexthop.rs).
    let (iif, now) = (ctx.ingress_ifindex() as u32, crate::conntrack::now_ns());
    let (rc, p) = match crate::nexthop::get6(&rip, &[0; 4], iif, now, outer_len, HAS_SRC32) {
        Some(p) => (BPF_FIB_LKUP_RET_SUCCESS, p),
        None => {
            let Some((rc, p)) = lookup(ctx, NEXTHDR_IPV6, [0; 4], outer_len, 0, [0; 4], rip, BPF_FIB_LOOKUP_SRC) else {
                return Counter::DropNoRoute;
            };
            if rc == BPF_FIB_LKUP_RET_SUCCESS {
                crate::nexthop::put6(&rip, &[0; 4], iif, p, HAS_SRC32, now);
            }
            (rc, p)
        }
    };
    if rc == BPF_FIB_LKUP_RET_FRAG_NEEDED {
        // `tot_len` now holds the route's MTU.
        let mtu = p.tot_len.saturating_sub(IPV6_HLEN as u16);
        if mtu < IPV6_MIN_MTU {
            return Counter::DropNoRoute;
        }
        return packet_too_big(ctx, pkt, mtu);
    }
    let to_kernel = match rc {
        BPF_FIB_LKUP_RET_SUCCESS => false,
        // Addressed to the real server once encapsulated: the kernel can forward it (and
        // resolve the neighbour) as any other packet.
        BPF_FIB_LKUP_RET_NO_NEIGH => true,
        _ => return Counter::DropNoRoute,
    };
    if hop <= 1 {
        return Counter::DropTtlExceeded;
    }
    unsafe { (*pkt.ip).hop_limit = hop - 1 };
    let (orig_dst, orig_src) = unsafe { ((*pkt.eth).dst_addr, (*pkt.eth).src_addr) };
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(IPV6_HLEN as i32)) } != 0 {
        return Counter::DropNoRoute;
    }
    // Every pointer into the frame is derived again after `adjust_head`.
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else { return Counter::DropNoRoute };
    let Some(outer) = ptr_at::<Ipv6Hdr>(ctx, EthHdr::LEN) else { return Counter::DropNoRoute };
    unsafe {
        (*eth).ether_type = 0x86ddu16.to_be();
        (*outer).vcf = vcf;
        (*outer).payload_len = inner_len.to_be_bytes();
        (*outer).next_hdr = NEXTHDR_IPV6;
        (*outer).hop_limit = hop - 1;
        store_addr(&raw mut (*outer).src_addr, p.src);
        store_addr(&raw mut (*outer).dst_addr, rip);
    }
    if to_kernel {
        // The stack only takes frames addressed to our own MAC: keep the received ones.
        unsafe {
            (*eth).dst_addr = orig_dst;
            (*eth).src_addr = orig_src;
        }
        return Counter::PassFibFallback;
    }
    redirect_eth(eth, p)
}

const ICMPV6_DEST_UNREACH: u8 = 1;
const ICMPV6_PORT_UNREACH: u8 = 4;
const ICMPV6_PKT_TOOBIG: u8 = 2;
/// Outer IPv6 header + ICMPv6 header put in front of the quoted packet.
const ICMP6_PREPEND: usize = IPV6_HLEN + 8;
/// An ICMPv6 error quotes as much of the offending packet as fits in the minimum MTU
/// (RFC 4443 2.4(c)): 1280 - 48.
const MAX_QUOTE: usize = IPV6_MIN_MTU as usize - ICMP6_PREPEND;

/// No real server can take the new connection: ICMPv6 destination unreachable, port
/// unreachable (type 1 code 4) from the VIP to the client, as IPVS's
/// `icmpv6_send(skb, ICMPV6_DEST_UNREACH, ICMPV6_PORT_UNREACH, 0)`.
#[inline(always)]
fn port_unreachable(ctx: &XdpContext, pkt: &Packet6) -> Counter {
    if !crate::icmp::within_budget() {
        return Counter::DropIcmpRateLimited;
    }
    icmp_error(ctx, pkt, ICMPV6_DEST_UNREACH, ICMPV6_PORT_UNREACH, 0)
        .map_or(Counter::DropNoDest, |()| Counter::TxIcmpUnreachable)
}

/// A tunnelled packet would not fit: ICMPv6 packet too big (type 2) with `mtu`.
#[inline(always)]
pub(crate) fn packet_too_big(ctx: &XdpContext, pkt: &Packet6, mtu: u16) -> Counter {
    icmp_error(ctx, pkt, ICMPV6_PKT_TOOBIG, 0, mtu as u32)
        .map_or(Counter::DropNoRoute, |()| Counter::TxIcmpFragNeeded)
}

/// Turns the packet into an ICMPv6 error from its destination (the VIP) to its source (the
/// client), quoting it from its IPv6 header on (truncated to `MAX_QUOTE`), and sends it back
/// out the ingress interface (a redirect, as the IPv4 errors in icmp.rs). Hop limit 64, the
/// kernel's default.
#[inline(always)]
fn icmp_error(ctx: &XdpContext, pkt: &Packet6, ty: u8, code: u8, info: u32) -> Option<()> {
    let (src_mac, dst_mac) = unsafe { ((*pkt.eth).src_addr, (*pkt.eth).dst_addr) };
    let (client, vip) = (pkt.src, pkt.dst);
    let whole = pkt.tot_len as usize;
    let quote = if whole > MAX_QUOTE { MAX_QUOTE } else { whole };
    // Keep Ethernet + the quoted part (any Ethernet padding goes too), then make room.
    let delta = (EthHdr::LEN + quote) as i32 - (ctx.data_end() - ctx.data()) as i32;
    if delta > 0 || (delta != 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0) {
        return None;
    }
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(ICMP6_PREPEND as i32)) } != 0 {
        return None;
    }
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    let ip: *mut Ipv6Hdr = ptr_at(ctx, EthHdr::LEN)?;
    let icmp: *mut [u8; 8] = ptr_at(ctx, EthHdr::LEN + IPV6_HLEN)?;
    let len = (8 + quote) as u16;
    unsafe {
        (*eth).dst_addr = src_mac;
        (*eth).src_addr = dst_mac;
        (*eth).ether_type = 0x86ddu16.to_be();
        (*ip).vcf = [0x60, 0, 0, 0];
        (*ip).payload_len = len.to_be_bytes();
        (*ip).next_hdr = NEXTHDR_ICMPV6;
        (*ip).hop_limit = 64;
        store_addr(&raw mut (*ip).src_addr, vip);
        store_addr(&raw mut (*ip).dst_addr, client);
        let i = info.to_be_bytes();
        *icmp = [ty, code, 0, 0, i[0], i[1], i[2], i[3]];
    }
    // Checksum: the pseudo-header (addresses, upper-layer length, next header), then the
    // message one 16-bit word at a time with a bounds check each.
    let mut sum = 0u32;
    // Spelt out: an iterator over the two arrays compiled to pointer comparisons the
    // verifier could not follow.
    let half = |w: u32| (w & 0xffff) + (w >> 16);
    sum += half(vip[0]) + half(vip[1]) + half(vip[2]) + half(vip[3]);
    sum += half(client[0]) + half(client[1]) + half(client[2]) + half(client[3]);
    sum += (len as u16).to_be() as u32 + (NEXTHDR_ICMPV6 as u16).to_be() as u32;
    let base = EthHdr::LEN + IPV6_HLEN;
    let total = 8 + quote;
    let mut i = 0;
    while i < (8 + MAX_QUOTE) / 2 {
        if i * 2 + 1 >= total {
            break;
        }
        let w: *const [u8; 2] = ptr_at(ctx, base + i * 2)?;
        sum += unsafe { u16::from_ne_bytes(*w) } as u32;
        i += 1;
    }
    if total % 2 == 1 {
        let b: *const u8 = ptr_at(ctx, base + total - 1)?;
        sum += unsafe { u16::from_ne_bytes([*b, 0]) } as u32;
    }
    let c = (!fold(sum)).to_ne_bytes();
    unsafe {
        (*icmp)[2] = c[0];
        (*icmp)[3] = c[1];
        if bpf_redirect(ctx.ingress_ifindex() as u32, 0) as u32 != xdp_action::XDP_REDIRECT {
            return None;
        }
    }
    Some(())
}
