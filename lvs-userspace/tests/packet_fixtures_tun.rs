//! Tunnel encapsulations (`lvs_xdp_tun`) run through the real XDP programs with
//! BPF_PROG_TEST_RUN: GUE and GRE with and without checksums, IPv4 in IPv6 and IPv6 in IPv4.
//!
//! Expected frames are built here from scratch, every checksum computed over the whole packet
//! (the program derives its outer checksums from the inner ones without reading the payload,
//! so a mistake there shows up as a byte mismatch). The GUE source port comes from a flow
//! hash: it is read from the output, checked to lie in the local port range and to stay the
//! same for a flow, and the rest of the frame is checked around it. The test thread runs in a
//! private namespace shaped like a director (see `testkit::netns`), with IPv6 added.

mod fixture_kit;

use std::net::IpAddr;

use fixture_kit::{in_netns, v6, Failures, Netns, Rig, CLIENT_MAC, DIRECTOR_IN_MAC, PAYLOAD, RS1_MAC, RS2_MAC, XDP_REDIRECT};
use lvs_common::{counters::Counter, csum};
use lvs_userspace::{
    model::{tun_flags, DestSpec, Forward, Protocol, ServiceKey, TunType},
    testkit::{
        frames::{self, hex, Ip},
        netns::DIRECTOR_RS_MAC,
    },
};

const CLIENT: [u8; 4] = [198, 51, 100, 2];
const VIP: [u8; 4] = [203, 0, 113, 10];
const RS1: [u8; 4] = [192, 0, 2, 11];
const RS2: [u8; 4] = [192, 0, 2, 12];
const DIRECTOR_RS_IP: [u8; 4] = [192, 0, 2, 1];

const CLIENT6: [u8; 16] = v6(2, 2);
const VIP6: [u8; 16] = v6(0x10, 0);
const RS1_6: [u8; 16] = v6(0x11, 1);
const DIRECTOR_RS_IP6: [u8; 16] = v6(1, 1);

const SYN: u8 = frames::TCP_SYN;

// ---- what this file's tests add to the shared rig ----

impl Rig {
    fn service(&mut self, proto: Protocol, vip: IpAddr, port: u16, server: IpAddr, tun: TunType, port_flags: (u16, u16)) {
        let key = ServiceKey::Addr { protocol: proto, addr: vip, port };
        let mut d = DestSpec::new(server, port, Forward::Tunnel, 1);
        d.tun_type = tun;
        (d.tun_port, d.tun_flags) = port_flags;
        self.add(key, [d]);
    }
}

// ---- expected frames, every checksum over the whole packet ----

/// The inner IPv4 frame as the real server must see it: TTL 63, header checksum redone.
fn ttl63(f: &[u8]) -> Vec<u8> {
    let mut o = f.to_vec();
    o[14 + 8] = 63;
    o[14 + 10] = 0;
    o[14 + 11] = 0;
    let c = csum::checksum(&o[14..34]);
    o[14 + 10..14 + 12].copy_from_slice(&c.to_ne_bytes());
    o
}

/// An outer IPv4 header + `tun` (the tunnel header and inner packet) in an Ethernet frame.
fn outer4(dmac: [u8; 6], dst: [u8; 4], tos: u8, df: bool, ttl: u8, proto: u8, tun: &[u8]) -> Vec<u8> {
    let tot = 20 + tun.len();
    let mut h = vec![0x45, tos, (tot >> 8) as u8, tot as u8, 0, 0, if df { 0x40 } else { 0 }, 0, ttl, proto, 0, 0];
    h.extend_from_slice(&DIRECTOR_RS_IP);
    h.extend_from_slice(&dst);
    let c = csum::checksum(&h);
    h[10..12].copy_from_slice(&c.to_ne_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&dmac);
    f.extend_from_slice(&DIRECTOR_RS_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&h);
    f.extend_from_slice(tun);
    f
}

/// An outer IPv6 header (traffic class `tclass`, flow label 0) + `tun`.
fn outer6(dmac: [u8; 6], dst: &[u8; 16], tclass: u8, hop: u8, next: u8, tun: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dmac);
    f.extend_from_slice(&DIRECTOR_RS_MAC);
    f.extend_from_slice(&[0x86, 0xdd, 0x60 | (tclass >> 4), tclass << 4, 0, 0]);
    f.extend_from_slice(&(tun.len() as u16).to_be_bytes());
    f.extend_from_slice(&[next, hop]);
    f.extend_from_slice(&DIRECTOR_RS_IP6);
    f.extend_from_slice(dst);
    f.extend_from_slice(tun);
    f
}

/// UDP (from `sport` to `dport`) + the GUE header for `inner_proto` + `inner`; the checksum
/// over the IPv4 pseudo-header when `csum`, else 0.
fn gue4(dst: [u8; 4], sport: u16, dport: u16, inner_proto: u8, inner: &[u8], csum: bool) -> Vec<u8> {
    let len = 8 + 4 + inner.len();
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(&[0, inner_proto, 0, 0]);
    u.extend_from_slice(inner);
    if csum {
        let mut ph = Vec::new();
        ph.extend_from_slice(&DIRECTOR_RS_IP);
        ph.extend_from_slice(&dst);
        ph.extend_from_slice(&[0, 17]);
        ph.extend_from_slice(&(len as u16).to_be_bytes());
        let mut c = !csum::fold(csum::sum_words(&u, csum::sum_words(&ph, 0)));
        if c == 0 {
            c = 0xffff;
        }
        u[6..8].copy_from_slice(&c.to_ne_bytes());
    }
    u
}

/// The GRE header for an inner IPv4 or IPv6 packet + `inner`; with the checksum field when
/// `csum`.
fn gre(inner: &[u8], v6: bool, csum: bool) -> Vec<u8> {
    let et: [u8; 2] = if v6 { [0x86, 0xdd] } else { [0x08, 0x00] };
    let mut g = if csum { vec![0x80, 0, et[0], et[1], 0, 0, 0, 0] } else { vec![0, 0, et[0], et[1]] };
    g.extend_from_slice(inner);
    if csum {
        let c = csum::checksum(&g);
        g[4..6].copy_from_slice(&c.to_ne_bytes());
    }
    g
}

/// An IPv6 TCP SYN from the client to `dst` with hop limit `hop`, as an IP packet (no
/// Ethernet header).
fn tcp6(dst: &[u8; 16], hop: u8, sport: u16, dport: u16) -> Vec<u8> {
    let f = frames::tcp6_frame([0; 6], [0; 6], CLIENT6, *dst, hop, sport, dport, SYN, PAYLOAD);
    f[14..].to_vec()
}

fn eth(dmac: [u8; 6], smac: [u8; 6], ethertype: [u8; 2], ip: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dmac);
    f.extend_from_slice(&smac);
    f.extend_from_slice(&ethertype);
    f.extend_from_slice(ip);
    f
}

/// Copies the outer IPv4 ID and header checksum from `got` into `want`, after checking that
/// the header checksum `got` carries is right for its header.
fn free_id(want: &mut [u8], got: &[u8]) {
    if got.len() < 34 || want.len() < 34 {
        return;
    }
    assert_eq!(csum::checksum(&got[14..34]), 0, "outer IPv4 header checksum: {}", hex(&got[14..34]));
    want[18..20].copy_from_slice(&got[18..20]);
    want[24..26].copy_from_slice(&got[24..26]);
}

fn gue_sport(out: &[u8], ip_hlen: usize) -> u16 {
    u16::from_be_bytes([out[14 + ip_hlen], out[14 + ip_hlen + 1]])
}

#[test]
fn tunnel_type_fixtures() {
    in_netns(Netns::Director6, || {
        let mut rig = Rig::new("tun");
        let vip = IpAddr::from(VIP);
        rig.service(Protocol::Tcp, vip, 6000, IpAddr::from(RS1), TunType::Gue, (6080, 0));
        rig.service(Protocol::Tcp, vip, 6001, IpAddr::from(RS1), TunType::Gue, (6081, tun_flags::CSUM));
        rig.service(Protocol::Udp, vip, 6002, IpAddr::from(RS2), TunType::Gue, (6082, tun_flags::REMCSUM));
        rig.service(Protocol::Tcp, vip, 7000, IpAddr::from(RS2), TunType::Gre, (0, 0));
        rig.service(Protocol::Udp, vip, 7001, IpAddr::from(RS2), TunType::Gre, (0, tun_flags::CSUM));
        rig.service(Protocol::Tcp, vip, 8000, IpAddr::from(RS1_6), TunType::Ipip, (0, 0));
        rig.service(Protocol::Tcp, vip, 8001, IpAddr::from(RS1_6), TunType::Gue, (6083, tun_flags::CSUM));
        rig.service(Protocol::Tcp, IpAddr::from(VIP6), 8002, IpAddr::from(RS1), TunType::Ipip, (0, 0));
        rig.service(Protocol::Tcp, IpAddr::from(VIP6), 8003, IpAddr::from(RS1), TunType::Gre, (0, tun_flags::CSUM));

        let mut failures = Failures::default();
        let syn4 = |sport: u16, dport: u16| {
            frames::tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), sport, dport, SYN, PAYLOAD)
        };
        let udp4 = |sport: u16, dport: u16, payload: &[u8]| {
            frames::udp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), sport, dport, payload)
        };

        // GUE without checksum: outer IPv4 (DF and TOS copied, ID 0, TTL 63), UDP to the
        // tunnel port with checksum 0, GUE header [0, 4, 0, 0].
        let input = syn4(40000, 6000);
        let got = rig.run(&input);
        let sport = gue_sport(&got.1, 20);
        assert!((32768..61000).contains(&sport), "GUE source port {sport} outside 32768..60999");
        let want = outer4(RS1_MAC, RS1, 0, true, 63, 17, &gue4(RS1, sport, 6080, 4, &ttl63(&input)[14..], false));
        failures.check("GUE nocsum: TCP SYN", &input, XDP_REDIRECT, &want, got);
        // The same flow again: the same source port (a flow stays on one receive queue).
        let got = rig.run(&input);
        assert_eq!(gue_sport(&got.1, 20), sport, "a flow's GUE source port changed");
        // Another flow: usually another port (any hash maps two flows to one port sometimes;
        // eight flows all on one port would mean no hashing at all).
        let ports: std::collections::HashSet<u16> =
            (0..8).map(|i| gue_sport(&rig.run(&syn4(40100 + i, 6000)).1, 20)).collect();
        assert!(ports.len() > 1, "eight flows, one GUE source port: {ports:?}");

        // GUE with --tun-csum: the UDP checksum over the whole packet.
        let input = syn4(40001, 6001);
        let got = rig.run(&input);
        let sport = gue_sport(&got.1, 20);
        let want = outer4(RS1_MAC, RS1, 0, true, 63, 17, &gue4(RS1, sport, 6081, 4, &ttl63(&input)[14..], true));
        failures.check("GUE csum: TCP SYN", &input, XDP_REDIRECT, &want, got);

        // GUE with --tun-remcsum, a UDP datagram: a forwarded packet has no partial checksum,
        // so plain GUE with the checksum, as IPVS.
        let input = udp4(40002, 6002, b"a datagram of some length.");
        let got = rig.run(&input);
        let sport = gue_sport(&got.1, 20);
        let want = outer4(RS2_MAC, RS2, 0, true, 63, 17, &gue4(RS2, sport, 6082, 4, &ttl63(&input)[14..], true));
        failures.check("GUE remcsum: UDP", &input, XDP_REDIRECT, &want, got);

        // GRE without and with the checksum.
        let input = syn4(40003, 7000);
        let want = outer4(RS2_MAC, RS2, 0, true, 63, 47, &gre(&ttl63(&input)[14..], false, false));
        let got = rig.run(&input);
        failures.check("GRE: TCP SYN", &input, XDP_REDIRECT, &want, got);
        let input = udp4(40004, 7001, b"odd length!");
        let want = outer4(RS2_MAC, RS2, 0, true, 63, 47, &gre(&ttl63(&input)[14..], false, true));
        let got = rig.run(&input);
        failures.check("GRE csum: UDP of odd length", &input, XDP_REDIRECT, &want, got);

        // An ICMP error about that GRE connection (time exceeded for the real server's reply
        // VIP:7000 -> client, sent to the VIP) goes to the real server in the connection's
        // tunnel, GRE, as IPVS relays it; its sum is the ICMP message's (valid, so zero).
        let reply = frames::quote_of(&frames::tcp_frame(CLIENT_MAC, RS2_MAC, Ip::new(VIP, CLIENT), 7000, 40003, frames::TCP_ACK, b""));
        let input = frames::icmp_error_frame(DIRECTOR_IN_MAC, CLIENT_MAC, &Ip::new([198, 51, 100, 254], VIP), 11, 0, [0; 4], &reply);
        let want = outer4(RS2_MAC, RS2, 0, true, 63, 47, &gre(&ttl63(&input)[14..], false, false));
        let got = rig.run(&input);
        failures.check("ICMP error about a GRE connection: relayed in GRE", &input, XDP_REDIRECT, &want, got);
        // The same about the GRE-with-checksum UDP flow, with the checksum.
        let reply = frames::quote_of(&frames::udp_frame(CLIENT_MAC, RS2_MAC, Ip::new(VIP, CLIENT), 7001, 40004, b"odd length!"));
        let input = frames::icmp_error_frame(DIRECTOR_IN_MAC, CLIENT_MAC, &Ip::new([198, 51, 100, 254], VIP), 3, 3, [0; 4], &reply);
        let want = outer4(RS2_MAC, RS2, 0, true, 63, 47, &gre(&ttl63(&input)[14..], false, true));
        let got = rig.run(&input);
        failures.check("ICMP error about a GRE csum connection: relayed in GRE with its checksum", &input, XDP_REDIRECT, &want, got);

        // IPv4 in IPv6: next header 4, hop limit the inner TTL after its decrement.
        let input = syn4(40005, 8000);
        let want = outer6(RS1_MAC, &RS1_6, 0, 63, 4, &ttl63(&input)[14..]);
        let got = rig.run(&input);
        failures.check("IPv4 in IPv6: TCP SYN", &input, XDP_REDIRECT, &want, got);

        // GUE in IPv6 carrying IPv4, with the checksum over the IPv6 pseudo-header.
        let input = syn4(40006, 8001);
        let got = rig.run(&input);
        let sport = gue_sport(&got.1, 40);
        let mut u = gue4(RS1, sport, 6083, 4, &ttl63(&input)[14..], false);
        let c = !csum::fold(csum::sum_words(&u, frames::pseudo6_sum(&DIRECTOR_RS_IP6, &RS1_6, u.len(), 17)));
        u[6..8].copy_from_slice(&c.to_ne_bytes());
        let want = outer6(RS1_MAC, &RS1_6, 0, 63, 17, &u);
        failures.check("GUE csum in IPv6: TCP SYN", &input, XDP_REDIRECT, &want, got);

        // IPv6 in IPv4: protocol 41, no DF (IPVS sets none for an IPv6 inner packet). Without
        // DF the outer ID is the director's to choose: taken from the output (with the header
        // checksum that covers it), which must then be valid.
        let inner = tcp6(&VIP6, 64, 40007, 8002);
        let input = eth(DIRECTOR_IN_MAC, CLIENT_MAC, [0x86, 0xdd], &inner);
        let mut want = outer4(RS1_MAC, RS1, 0, false, 63, 41, &tcp6(&VIP6, 63, 40007, 8002));
        let got = rig.run(&input);
        free_id(&mut want, &got.1);
        failures.check("IPv6 in IPv4: TCP SYN", &input, XDP_REDIRECT, &want, got);

        // IPv6 in GRE with the checksum, in IPv4.
        let inner = tcp6(&VIP6, 64, 40008, 8003);
        let input = eth(DIRECTOR_IN_MAC, CLIENT_MAC, [0x86, 0xdd], &inner);
        let mut want = outer4(RS1_MAC, RS1, 0, false, 63, 47, &gre(&tcp6(&VIP6, 63, 40008, 8003), true, true));
        let got = rig.run(&input);
        free_id(&mut want, &got.1);
        failures.check("GRE csum carrying IPv6, in IPv4", &input, XDP_REDIRECT, &want, got);

        // PMTU: 1500 bytes with DF in GUE (20 + 8 + 4 more) do not fit the 1500-byte link:
        // ICMP fragmentation needed with 1468.
        let mut ip = Ip::new(CLIENT, VIP);
        ip.frag = 0x4000;
        let big = frames::tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, ip, 41000, 6000, SYN, &[0x5a; 1460]);
        let got = rig.run(&big);
        failures.check("GUE: 1500 bytes with DF: fragmentation needed, MTU 1468", &big, XDP_REDIRECT, &frames::icmp_frag_needed(&big, 1468), got);
        // GRE with the checksum: 1500 - 20 - 8.
        let mut ip = Ip::new(CLIENT, VIP);
        ip.frag = 0x4000;
        let big = frames::udp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, ip, 41001, 7001, &[0x5a; 1472]);
        let got = rig.run(&big);
        failures.check("GRE csum: 1500 bytes with DF: fragmentation needed, MTU 1472", &big, XDP_REDIRECT, &frames::icmp_frag_needed(&big, 1472), got);

        failures.assert_none();
        assert_eq!(rig.counter(Counter::TxIcmpFragNeeded), 2);
        assert_eq!(rig.counter(Counter::DropUnsupportedForward), 0);
        assert_eq!(rig.counter(Counter::PassFibFallback), 0);
    });
}
