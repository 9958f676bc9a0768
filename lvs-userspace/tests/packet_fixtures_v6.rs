//! IPv6 packet fixtures run through the real XDP programs with BPF_PROG_TEST_RUN: the IPv4
//! entry program is run, and tail-calls the IPv6 ones as on a live interface.
//!
//! Expected frames are built from scratch here, with full checksums over the IPv6
//! pseudo-header (not the incremental updates the programs use), so a wrong checksum update
//! shows up as a byte mismatch. The test thread runs in a private namespace shaped like a
//! director (see `testkit::netns`), with IPv6 addresses and static neighbours added.

mod fixture_kit;

use std::net::IpAddr;

use fixture_kit::{
    check, in_netns, v6, Fixture, Netns, Rig, CLIENT_MAC, DIRECTOR_IN_MAC, PAYLOAD, RS1_MAC, RS2_MAC, XDP_PASS,
    XDP_REDIRECT,
};
use lvs_common::{counters::Counter, csum};
use lvs_userspace::{
    model::{DestSpec, Forward, Protocol, ServiceKey},
    testkit::{
        frames,
        netns::{DIRECTOR_CL_MAC, DIRECTOR_RS_MAC},
    },
};

const CLIENT: [u8; 16] = v6(2, 2);
const VIP: [u8; 16] = v6(0x10, 0);
const RS1: [u8; 16] = v6(0x11, 1);
const RS2: [u8; 16] = v6(0x12, 1);
const DIRECTOR_RS_IP: [u8; 16] = v6(1, 1);

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const TCP: u8 = 6;
const UDP: u8 = 17;

// ---- frames (full checksums) ----

fn finish(seg: &mut [u8], at: usize, src: &[u8; 16], dst: &[u8; 16], next: u8) {
    let c = !csum::fold(csum::sum_words(seg, frames::pseudo6_sum(src, dst, seg.len(), next)));
    let c = if next == UDP && c == 0 { 0xffff } else { c };
    seg[at..at + 2].copy_from_slice(&c.to_ne_bytes());
}

fn tcp(src: &[u8; 16], dst: &[u8; 16], sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&1000u32.to_be_bytes());
    t.extend_from_slice(&(if flags & ACK != 0 { 2000u32 } else { 0 }).to_be_bytes());
    t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    finish(&mut t, 16, src, dst, TCP);
    t
}

fn udp(src: &[u8; 16], dst: &[u8; 16], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    finish(&mut u, 6, src, dst, UDP);
    u
}

/// Ethernet + IPv6 header (flow label 0x12345, traffic class 0) + `ext` + payload; `next` is
/// the header's next header, `ext` already chained to the payload.
#[allow(clippy::too_many_arguments)]
fn frame(dmac: [u8; 6], smac: [u8; 6], src: &[u8; 16], dst: &[u8; 16], hop: u8, next: u8, ext: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dmac);
    f.extend_from_slice(&smac);
    f.extend_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(&[0x60, 0x01, 0x23, 0x45]);
    f.extend_from_slice(&((ext.len() + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[next, hop]);
    f.extend_from_slice(src);
    f.extend_from_slice(dst);
    f.extend_from_slice(ext);
    f.extend_from_slice(payload);
    f
}

#[allow(clippy::too_many_arguments)]
fn tcp_frame(dmac: [u8; 6], smac: [u8; 6], src: &[u8; 16], dst: &[u8; 16], hop: u8, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    frame(dmac, smac, src, dst, hop, TCP, &[], &tcp(src, dst, sport, dport, flags, PAYLOAD))
}

#[allow(clippy::too_many_arguments)]
fn udp_frame(dmac: [u8; 6], smac: [u8; 6], src: &[u8; 16], dst: &[u8; 16], hop: u8, sport: u16, dport: u16) -> Vec<u8> {
    frame(dmac, smac, src, dst, hop, UDP, &[], &udp(src, dst, sport, dport, b"ping"))
}

/// The ICMPv6 error the director sends back to the client for `orig` (a frame from the
/// client): from the VIP, hop limit 64, quoting the IPv6 packet up to 1232 bytes.
fn icmp6_error(orig: &[u8], ty: u8, code: u8, info: u32) -> Vec<u8> {
    let ip = &orig[14..];
    icmp6_error_frame(CLIENT_MAC, DIRECTOR_IN_MAC, &VIP, &CLIENT, 64, ty, code, info, &ip[..ip.len().min(1232)])
}

/// `inner` (an IPv6 frame) in an outer IPv6 header from the director's route source to `rs`.
fn ip6ip6_frame(dmac: [u8; 6], rs: &[u8; 16], hop: u8, inner: &[u8]) -> Vec<u8> {
    let ip = &inner[14..];
    let mut f = Vec::new();
    f.extend_from_slice(&dmac);
    f.extend_from_slice(&DIRECTOR_RS_MAC);
    f.extend_from_slice(&[0x86, 0xdd]);
    // Traffic class and flow label copied from the inner header.
    f.extend_from_slice(&ip[0..4]);
    f.extend_from_slice(&(ip.len() as u16).to_be_bytes());
    f.extend_from_slice(&[41, hop]);
    f.extend_from_slice(&DIRECTOR_RS_IP);
    f.extend_from_slice(rs);
    f.extend_from_slice(ip);
    f
}

// ---- what this file's tests add to the shared rig ----

impl Rig {
    fn service(&mut self, proto: Protocol, port: u16, server: [u8; 16], fwd: Forward, weight: i32) {
        let key = ServiceKey::Addr { protocol: proto, addr: IpAddr::from(VIP), port };
        self.add(key, [DestSpec::new(IpAddr::from(server), port, fwd, weight)]);
    }
}

#[test]
fn ipv6_fixtures() {
    in_netns(Netns::Director6, || {
        let mut rig = Rig::new("v6");
        rig.service(Protocol::Tcp, 80, RS1, Forward::Masq, 1);
        rig.service(Protocol::Udp, 53, RS2, Forward::Masq, 1);
        rig.service(Protocol::Tcp, 81, RS1, Forward::Route, 1);
        rig.service(Protocol::Tcp, 8080, RS2, Forward::Tunnel, 1);
        rig.service(Protocol::Tcp, 82, RS1, Forward::Masq, 0);

        let from_client = |hop: u8, sport: u16, dport: u16, flags: u8| {
            tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, &CLIENT, &VIP, hop, sport, dport, flags)
        };
        // A destination-options header (8 bytes: next header TCP, length 0, PadN of 4) in
        // front of the TCP header.
        let dstopts = [TCP, 0, 1, 4, 0, 0, 0, 0];
        let syn_opts = |dst: &[u8; 16], hop: u8, dmac: [u8; 6], smac: [u8; 6]| {
            frame(dmac, smac, &CLIENT, dst, hop, 60, &dstopts, &tcp(&CLIENT, dst, 40100, 80, SYN, PAYLOAD))
        };
        // 40 + 20 + 1440 = 1500 bytes: fits the link, not once 40 more are added.
        let big = frame(DIRECTOR_IN_MAC, CLIENT_MAC, &CLIENT, &VIP, 64, TCP, &[], &tcp(&CLIENT, &VIP, 42001, 8080, SYN, &[0x5a; 1440]));
        let tun_syn = from_client(64, 42000, 8080, SYN);
        let unreach = from_client(64, 43000, 82, SYN);
        // A later fragment (offset 8, last) whose first fragment was never seen.
        let frag = frame(DIRECTOR_IN_MAC, CLIENT_MAC, &CLIENT, &VIP, 64, 44, &[TCP, 0, 0, 8, 0, 0, 0, 7], &tcp(&CLIENT, &VIP, 40200, 80, SYN, PAYLOAD));
        let ns = frame(DIRECTOR_IN_MAC, CLIENT_MAC, &CLIENT, &VIP, 255, 58, &[], &[135, 0, 0, 0, 0, 0, 0, 0]);

        let fixtures = vec![
            Fixture {
                name: "NAT: SYN to [VIP]:80 becomes client -> rs1, hop limit 63, to rs1's MAC",
                input: from_client(64, 40000, 80, SYN),
                verdict: XDP_REDIRECT,
                output: Some(tcp_frame(RS1_MAC, DIRECTOR_RS_MAC, &CLIENT, &RS1, 63, 40000, 80, SYN)),
            },
            Fixture {
                name: "NAT: rs1's reply becomes VIP -> client, to the client's MAC",
                input: tcp_frame(DIRECTOR_RS_MAC, RS1_MAC, &RS1, &CLIENT, 64, 80, 40000, SYN | ACK),
                verdict: XDP_REDIRECT,
                output: Some(tcp_frame(CLIENT_MAC, DIRECTOR_CL_MAC, &VIP, &CLIENT, 63, 80, 40000, SYN | ACK)),
            },
            Fixture {
                name: "NAT: UDP to [VIP]:53 goes to rs2, its checksum over the new pseudo-header",
                input: udp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, &CLIENT, &VIP, 64, 5300, 53),
                verdict: XDP_REDIRECT,
                output: Some(udp_frame(RS2_MAC, DIRECTOR_RS_MAC, &CLIENT, &RS2, 63, 5300, 53)),
            },
            Fixture {
                name: "NAT: a destination-options header is walked and kept",
                input: syn_opts(&VIP, 64, DIRECTOR_IN_MAC, CLIENT_MAC),
                verdict: XDP_REDIRECT,
                output: Some(syn_opts(&RS1, 63, RS1_MAC, DIRECTOR_RS_MAC)),
            },
            Fixture {
                name: "DR: SYN to [VIP]:81 keeps its addresses, to rs1's MAC, hop limit 63",
                input: from_client(64, 40300, 81, SYN),
                verdict: XDP_REDIRECT,
                output: Some(tcp_frame(RS1_MAC, DIRECTOR_RS_MAC, &CLIENT, &VIP, 63, 40300, 81, SYN)),
            },
            Fixture {
                name: "TUN: SYN in IPv6-in-IPv6 from the director's route source to rs2, hop limit 63 inside and out",
                input: tun_syn.clone(),
                verdict: XDP_REDIRECT,
                output: Some(ip6ip6_frame(RS2_MAC, &RS2, 63, &from_client(63, 42000, 8080, SYN))),
            },
            Fixture {
                name: "TUN: 1500 bytes would be 1540: ICMPv6 packet too big, MTU 1460, from the VIP",
                input: big.clone(),
                verdict: XDP_REDIRECT,
                output: Some(icmp6_error(&big, 2, 0, 1460)),
            },
            Fixture {
                name: "no real server can take it: ICMPv6 port unreachable quoting the SYN",
                input: unreach.clone(),
                verdict: XDP_REDIRECT,
                output: Some(icmp6_error(&unreach, 1, 4, 0)),
            },
            Fixture { name: "a later fragment without its first passes to the stack untouched", input: frag, verdict: XDP_PASS, output: None },
            Fixture { name: "neighbour solicitation passes untouched", input: ns, verdict: XDP_PASS, output: None },
        ];
        check(&mut rig, fixtures);
        assert_eq!(rig.counter(Counter::PassFragmentV6), 1);
        assert_eq!(rig.counter(Counter::PassNotTcpUdp), 1);
        assert_eq!(rig.counter(Counter::TxIcmpFragNeeded), 1);
        assert_eq!(rig.counter(Counter::TxIcmpUnreachable), 1);
        assert_eq!(rig.counter(Counter::Redirect), 6);
    });
}

/// An ICMPv6 error frame from `src` to `dst` quoting `quote` (an IPv6 packet), its checksum
/// computed in full.
#[allow(clippy::too_many_arguments)]
fn icmp6_error_frame(dmac: [u8; 6], smac: [u8; 6], src: &[u8; 16], dst: &[u8; 16], hop: u8, ty: u8, code: u8, info: u32, quote: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(&info.to_be_bytes());
    m.extend_from_slice(quote);
    finish(&mut m, 2, src, dst, 58);
    let mut f = Vec::new();
    f.extend_from_slice(&dmac);
    f.extend_from_slice(&smac);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(m.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, hop]);
    f.extend_from_slice(src);
    f.extend_from_slice(dst);
    f.extend_from_slice(&m);
    f
}

/// The IPv6 packet of `frame` as an error quotes it, with its source and/or destination
/// address and port replaced (the quoted TCP/UDP checksum left as it was, as the kernel does).
fn requote(frame: &[u8], src: Option<([u8; 16], u16)>, dst: Option<([u8; 16], u16)>) -> Vec<u8> {
    let mut q = frame[14..].to_vec();
    if let Some((a, p)) = src {
        q[8..24].copy_from_slice(&a);
        q[40..42].copy_from_slice(&p.to_be_bytes());
    }
    if let Some((a, p)) = dst {
        q[24..40].copy_from_slice(&a);
        q[42..44].copy_from_slice(&p.to_be_bytes());
    }
    q
}

/// ICMPv6 errors about tracked connections (IPVS `ip_vs_in_icmp_v6` / `ip_vs_out_icmp_v6`):
/// relayed to the real server (NAT rewritten, DR re-addressed, TUN encapsulated) or, from the
/// real servers' side of a NAT connection, to the client; everything else untouched.
#[test]
fn icmp6_error_fixtures() {
    in_netns(Netns::Director6, || {
        let mut rig = Rig::new("v6");
        // NAT real servers on other ports than the virtual ones, so the quoted ports change.
        for (proto, port, server, rport) in [(Protocol::Tcp, 80, RS1, 8000), (Protocol::Udp, 53, RS2, 5353)] {
            let key = ServiceKey::Addr { protocol: proto, addr: IpAddr::from(VIP), port };
            rig.add(key, [DestSpec::new(IpAddr::from(server), rport, Forward::Masq, 1)]);
        }
        rig.service(Protocol::Tcp, 81, RS1, Forward::Route, 1);
        rig.service(Protocol::Tcp, 8080, RS2, Forward::Tunnel, 1);
        const ROUTER_CL: [u8; 16] = v6(0xfe, 2);
        const ROUTER_RS: [u8; 16] = v6(0xfe, 1);

        // The connections the errors are about.
        for (f, what) in [
            (tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, &CLIENT, &VIP, 64, 40000, 80, SYN), "NAT TCP"),
            (udp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, &CLIENT, &VIP, 64, 5300, 53), "NAT UDP"),
            (tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, &CLIENT, &VIP, 64, 40001, 81, SYN), "DR"),
            (tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, &CLIENT, &VIP, 64, 40002, 8080, SYN), "TUN"),
        ] {
            assert_eq!(rig.run(&f).0, XDP_REDIRECT, "{what} connection not created");
        }
        // What the director sent to the client (NAT replies; DR/TUN replies come from the real
        // servers with the VIP as their source) and to the real servers, as errors quote them.
        let nat_reply = tcp_frame(CLIENT_MAC, DIRECTOR_CL_MAC, &VIP, &CLIENT, 63, 80, 40000, ACK);
        let udp_reply = udp_frame(CLIENT_MAC, DIRECTOR_CL_MAC, &VIP, &CLIENT, 63, 53, 5300);
        let nat_udp_out = udp_frame(RS2_MAC, DIRECTOR_RS_MAC, &CLIENT, &RS2, 63, 5300, 5353);
        let nat_tcp_out = tcp_frame(RS1_MAC, DIRECTOR_RS_MAC, &CLIENT, &RS1, 63, 40000, 8000, ACK);
        let dr_reply = tcp_frame(CLIENT_MAC, RS1_MAC, &VIP, &CLIENT, 64, 81, 40001, ACK);
        let tun_reply = tcp_frame(CLIENT_MAC, RS2_MAC, &VIP, &CLIENT, 64, 8080, 40002, ACK);
        let q = |f: &[u8]| f[14..].to_vec();
        let err = icmp6_error_frame;

        let dr_in = err(DIRECTOR_IN_MAC, CLIENT_MAC, &ROUTER_CL, &VIP, 64, 3, 0, 0, &q(&dr_reply));
        let tun_in = err(DIRECTOR_IN_MAC, CLIENT_MAC, &ROUTER_CL, &VIP, 64, 1, 0, 0, &q(&tun_reply));
        let fixtures = vec![
            Fixture {
                name: "NAT, client side: packet too big about [VIP]:80 -> client goes to rs1, quoting [rs1]:8000 as the source",
                input: err(DIRECTOR_IN_MAC, CLIENT_MAC, &ROUTER_CL, &VIP, 64, 2, 0, 1400, &q(&nat_reply)),
                verdict: XDP_REDIRECT,
                output: Some(err(RS1_MAC, DIRECTOR_RS_MAC, &ROUTER_CL, &RS1, 63, 2, 0, 1400, &requote(&nat_reply, Some((RS1, 8000)), None))),
            },
            Fixture {
                name: "NAT, client side: port unreachable about a UDP reply, the quoted UDP checksum left as it was",
                input: err(DIRECTOR_IN_MAC, CLIENT_MAC, &CLIENT, &VIP, 64, 1, 4, 0, &q(&udp_reply)),
                verdict: XDP_REDIRECT,
                output: Some(err(RS2_MAC, DIRECTOR_RS_MAC, &CLIENT, &RS2, 63, 1, 4, 0, &requote(&udp_reply, Some((RS2, 5353)), None))),
            },
            Fixture {
                name: "NAT, server side: rs2's port unreachable about client -> [rs2]:5353 reaches the client from the VIP, quoting [VIP]:53",
                input: err(DIRECTOR_RS_MAC, RS2_MAC, &RS2, &CLIENT, 64, 1, 4, 0, &q(&nat_udp_out)),
                verdict: XDP_REDIRECT,
                output: Some(err(CLIENT_MAC, DIRECTOR_CL_MAC, &VIP, &CLIENT, 63, 1, 4, 0, &requote(&nat_udp_out, None, Some((VIP, 53))))),
            },
            Fixture {
                name: "NAT, server side: a router's packet too big also leaves with the VIP as its source (as ip_vs_nat_icmp_v6)",
                input: err(DIRECTOR_RS_MAC, RS1_MAC, &ROUTER_RS, &CLIENT, 64, 2, 0, 1400, &q(&nat_tcp_out)),
                verdict: XDP_REDIRECT,
                output: Some(err(CLIENT_MAC, DIRECTOR_CL_MAC, &VIP, &CLIENT, 63, 2, 0, 1400, &requote(&nat_tcp_out, None, Some((VIP, 80))))),
            },
            Fixture {
                name: "DR, client side: time exceeded goes to rs1's MAC, addresses unchanged, hop limit 63",
                input: dr_in.clone(),
                verdict: XDP_REDIRECT,
                output: Some(err(RS1_MAC, DIRECTOR_RS_MAC, &ROUTER_CL, &VIP, 63, 3, 0, 0, &q(&dr_reply))),
            },
            Fixture {
                name: "TUN, client side: destination unreachable encapsulated to rs2 as any packet of the connection",
                input: tun_in.clone(),
                verdict: XDP_REDIRECT,
                output: Some(ip6ip6_frame(RS2_MAC, &RS2, 63, &err(DIRECTOR_IN_MAC, CLIENT_MAC, &ROUTER_CL, &VIP, 63, 1, 0, 0, &q(&tun_reply)))),
            },
            Fixture {
                name: "error about a flow we do not track passes untouched",
                input: err(DIRECTOR_IN_MAC, CLIENT_MAC, &ROUTER_CL, &VIP, 64, 2, 0, 1400, &requote(&nat_reply, None, Some((CLIENT, 40999)))),
                verdict: XDP_PASS,
                output: None,
            },
            Fixture {
                name: "parameter problem about a tracked flow passes untouched (IPVS relays only unreachable, too big, time exceeded)",
                input: err(DIRECTOR_IN_MAC, CLIENT_MAC, &ROUTER_CL, &VIP, 64, 4, 0, 0, &q(&nat_reply)),
                verdict: XDP_PASS,
                output: None,
            },
            Fixture {
                name: "server-side error addressed elsewhere than the quoted source passes untouched",
                input: err(DIRECTOR_RS_MAC, RS2_MAC, &RS2, &ROUTER_CL, 64, 1, 4, 0, &q(&nat_udp_out)),
                verdict: XDP_PASS,
                output: None,
            },
        ];
        let hits = rig.counter(Counter::ConnHit);
        let redirects = rig.counter(Counter::Redirect);
        check(&mut rig, fixtures);
        // The six relayed errors each found their connection and left by redirect.
        assert_eq!(rig.counter(Counter::ConnHit) - hits, 6);
        assert_eq!(rig.counter(Counter::Redirect) - redirects, 6);
    });
}

/// The two fragments of the UDP datagram `src:sport -> dst:dport` (64 bytes of payload, cut
/// after 32 bytes of UDP) with fragment identification `id`, between the given MACs. The UDP
/// checksum is the whole datagram's, over the pseudo-header of `src` and `dst`.
#[allow(clippy::too_many_arguments)]
fn udp_fragments(dmac: [u8; 6], smac: [u8; 6], src: &[u8; 16], dst: &[u8; 16], hop: u8, sport: u16, dport: u16, id: u32) -> (Vec<u8>, Vec<u8>) {
    let data: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
    let u = udp(src, dst, sport, dport, &data);
    let i = id.to_be_bytes();
    let first = [UDP, 0, 0, 1, i[0], i[1], i[2], i[3]];
    // Offset 32 bytes = 4 units of 8, in the top 13 bits; M clear.
    let later = [UDP, 0, 0, 4 << 3, i[0], i[1], i[2], i[3]];
    (frame(dmac, smac, src, dst, hop, 44, &first, &u[..32]), frame(dmac, smac, src, dst, hop, 44, &later, &u[32..]))
}

/// Fragmented IPv6 UDP datagrams: the first fragment (transport header behind the fragment
/// header) takes the normal path, the later one follows it by the same method to the same
/// real server with only the address changed (no header checksum in IPv6), in NAT (both
/// ways), DR and TUN; a later fragment whose first was not seen passes untouched.
#[test]
fn ipv6_fragment_fixtures() {
    in_netns(Netns::Director6, || {
        let mut rig = Rig::new("v6");
        rig.service(Protocol::Udp, 53, RS1, Forward::Masq, 1);
        rig.service(Protocol::Udp, 54, RS2, Forward::Route, 1);
        rig.service(Protocol::Udp, 55, RS1, Forward::Tunnel, 1);
        let to_vip = |sport, dport, id| udp_fragments(DIRECTOR_IN_MAC, CLIENT_MAC, &CLIENT, &VIP, 64, sport, dport, id);
        let (_, miss) = to_vip(40000, 53, 0x0101_0101);
        let (n1, n2) = to_vip(40000, 53, 0x0101_0101);
        let (n1_out, n2_out) = udp_fragments(RS1_MAC, DIRECTOR_RS_MAC, &CLIENT, &RS1, 63, 40000, 53, 0x0101_0101);
        let (r1, r2) = udp_fragments(DIRECTOR_RS_MAC, RS1_MAC, &RS1, &CLIENT, 64, 53, 40000, 0x0202_0202);
        let (r1_out, r2_out) = udp_fragments(CLIENT_MAC, DIRECTOR_CL_MAC, &VIP, &CLIENT, 63, 53, 40000, 0x0202_0202);
        let (d1, d2) = to_vip(40001, 54, 0x0303_0303);
        let (d1_out, d2_out) = udp_fragments(RS2_MAC, DIRECTOR_RS_MAC, &CLIENT, &VIP, 63, 40001, 54, 0x0303_0303);
        let (t1, t2) = to_vip(40002, 55, 0x0404_0404);
        let (t1_in, t2_in) = udp_fragments(DIRECTOR_IN_MAC, CLIENT_MAC, &CLIENT, &VIP, 63, 40002, 55, 0x0404_0404);
        let fixtures = vec![
            Fixture { name: "a later fragment whose first was not seen passes untouched", input: miss, verdict: XDP_PASS, output: None },
            Fixture { name: "NAT: first fragment to rs1, port and the whole datagram's checksum rewritten", input: n1, verdict: XDP_REDIRECT, output: Some(n1_out) },
            Fixture { name: "NAT: its later fragment follows to rs1, only the destination changes", input: n2, verdict: XDP_REDIRECT, output: Some(n2_out) },
            Fixture { name: "NAT: a fragmented reply from rs1: the first comes from [VIP]:53", input: r1, verdict: XDP_REDIRECT, output: Some(r1_out) },
            Fixture { name: "NAT: the reply's later fragment comes from the VIP too", input: r2, verdict: XDP_REDIRECT, output: Some(r2_out) },
            Fixture { name: "DR: first fragment to rs2's MAC, hop limit 63", input: d1, verdict: XDP_REDIRECT, output: Some(d1_out) },
            Fixture { name: "DR: its later fragment, same", input: d2, verdict: XDP_REDIRECT, output: Some(d2_out) },
            Fixture { name: "TUN: first fragment in IPv6-in-IPv6 towards rs1", input: t1, verdict: XDP_REDIRECT, output: Some(ip6ip6_frame(RS1_MAC, &RS1, 63, &t1_in)) },
            Fixture { name: "TUN: its later fragment encapsulated the same way", input: t2, verdict: XDP_REDIRECT, output: Some(ip6ip6_frame(RS1_MAC, &RS1, 63, &t2_in)) },
        ];
        check(&mut rig, fixtures);
        assert_eq!(rig.counter(Counter::PassFragmentV6), 1);
        assert_eq!(rig.counter(Counter::FragTracked), 4);
        assert_eq!(rig.counter(Counter::FragHit), 4);
        assert_eq!(rig.counter(Counter::Redirect), 8);
    });
}
