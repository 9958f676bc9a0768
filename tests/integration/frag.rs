//! Fragmented UDP datagrams to a VIP, end to end: datagrams of 4000 bytes over links of MTU
//! 1500, so that the client's kernel sends each in three fragments (and a NAT real server its
//! echo too). Each must arrive whole at one real server, the one its first fragment was
//! scheduled to, and its echo come back whole: `client::udp_exact` compares every byte. Several
//! client ports make several flows, which rr spreads over both servers. NAT and DR, IPv4 and
//! IPv6, and IPv4 TUN, on the topologies of fwd.rs and ipv6.rs.

use std::{collections::HashMap, net::{Ipv6Addr, SocketAddr}};

use lvs_tests::*;

/// Datagrams sent per test, each from a socket (port) of its own.
const N: usize = 4;
/// Bytes of UDP payload per datagram: three fragments at MTU 1500.
const SIZE: u32 = 4000;

/// Sends `N` datagrams of `SIZE` bytes, each a different pattern from a new socket, and
/// checks each echo byte for byte; returns the answering real servers in order.
fn big_datagrams(topo: &Topology, dst: SocketAddr) -> Vec<String> {
    (0..N)
        .map(|i| {
            let payload: Vec<u8> = (0..SIZE).map(|j| (j.wrapping_mul(7) ^ (i as u32 * 59)) as u8).collect();
            client::udp_exact(&topo.client, dst, &payload)
        })
        .collect()
}

/// rr over two servers, one new flow per datagram: they alternate, both servers serve.
fn assert_alternating(names: &[String]) {
    assert_ne!(names[0], names[1], "{names:?}");
    for (i, n) in names.iter().enumerate() {
        assert_eq!(n, &names[i % 2], "{names:?}");
    }
    let mut seen = names.to_vec();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["rs1", "rs2"]);
}

fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>, k: &str) -> u64 {
    after[k] - before[k]
}

/// Checks the fragment counters over the run: at least `tracked` first fragments recorded,
/// `hits` later fragments forwarded after them, and no later fragment given to the kernel.
fn assert_fragments(lvsd: &Lvsd, before: &HashMap<String, u64>, tracked: u64, hits: u64, miss: &str) {
    let after = lvsd.counters().unwrap();
    let d = |k: &str| delta(before, &after, k);
    assert!(d("frag_tracked") >= tracked, "frag_tracked {} < {tracked}", d("frag_tracked"));
    assert!(d("frag_hit") >= hits, "frag_hit {} < {hits}", d("frag_hit"));
    assert_eq!(d(miss), 0, "later fragments passed to the director's kernel");
    assert_eq!(d("pass_no_service"), 0);
}

#[test]
fn nat_ipv4_fragmented_udp_reassembled_at_one_server() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(2).with_servers().build().unwrap();
    let tmp = TempDir::new("frag-nat4").unwrap();
    let cfg = tmp.write("lvs.yaml", crate::fwd::config(&topo, "masq")).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    let before = lvsd.counters().unwrap();
    let names = big_datagrams(&topo, vip(RS_UDP_PORT));
    assert_alternating(&names);
    // Each datagram reached its server whole (the echo servers count datagrams, not
    // fragments); the client's kernel reassembled each echo (checked in `udp_exact`).
    let hits = topo.rs_udp_hits();
    assert!(hits.iter().all(|&h| h >= N as u64 / 2), "datagrams per server {hits:?}");
    // Requests and replies: a first fragment and two later ones each.
    assert_fragments(&lvsd, &before, 2 * N as u64, 4 * N as u64, "pass_fragment");
}

#[test]
fn dr_ipv4_fragmented_udp_reassembled_at_one_server() {
    if !require_root() {
        return;
    }
    let topo = crate::fwd::dr_topology();
    let _apps = crate::fwd::start_apps(&topo);
    let tmp = TempDir::new("frag-dr4").unwrap();
    let cfg = tmp.write("lvs.yaml", crate::fwd::config(&topo, "route")).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    let before = lvsd.counters().unwrap();
    assert_alternating(&big_datagrams(&topo, vip(RS_UDP_PORT)));
    // The echoes go straight to the client: only the requests' fragments cross the director.
    assert_fragments(&lvsd, &before, N as u64, 2 * N as u64, "pass_fragment");
}

#[test]
fn nat_ipv6_fragmented_udp_reassembled_at_one_server() {
    if !require_root() {
        return;
    }
    let topo = crate::ipv6::topology();
    let _apps = crate::ipv6::start_apps(&topo, Ipv6Addr::UNSPECIFIED);
    let tmp = TempDir::new("frag-nat6").unwrap();
    let cfg = tmp.write("lvs.yaml", crate::ipv6::config(&topo, "masq")).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    let before = lvsd.counters().unwrap();
    assert_alternating(&big_datagrams(&topo, vip6(RS_UDP_PORT)));
    assert_fragments(&lvsd, &before, 2 * N as u64, 4 * N as u64, "pass_fragment_v6");
}

#[test]
fn dr_ipv6_fragmented_udp_reassembled_at_one_server() {
    if !require_root() {
        return;
    }
    let topo = crate::ipv6::dr_topology();
    // Bound to the VIP, so the echoes leave from it as a DR service's must.
    let _apps = crate::ipv6::start_apps(&topo, VIP6);
    let tmp = TempDir::new("frag-dr6").unwrap();
    let cfg = tmp.write("lvs.yaml", crate::ipv6::config(&topo, "route")).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    let before = lvsd.counters().unwrap();
    assert_alternating(&big_datagrams(&topo, vip6(RS_UDP_PORT)));
    assert_fragments(&lvsd, &before, N as u64, 2 * N as u64, "pass_fragment_v6");
}

#[test]
fn tun_ipv4_fragments_each_tunnelled_and_reassembled_at_one_server() {
    if !require_root() {
        return;
    }
    let topo = crate::fwd::dr_topology();
    // Fragments of at most 1400 bytes, so that each still fits the 1500-byte link once
    // encapsulated: our decapsulation program takes unfragmented outer packets only (and
    // these hosts have no ipip module to reassemble outer fragments).
    topo.client.ip(&["link", "set", CLIENT_IF, "mtu", "1400"]).unwrap();
    let _apps = crate::fwd::start_apps(&topo);
    let decaps = Decap::attach_all(&topo, "frag-rs", Family::V4, &[]);
    let tmp = TempDir::new("frag-tun4").unwrap();
    let cfg = tmp.write("lvs.yaml", crate::fwd::config(&topo, "tunnel")).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    let before = lvsd.counters().unwrap();
    assert_alternating(&big_datagrams(&topo, vip(RS_UDP_PORT)));
    assert_fragments(&lvsd, &before, N as u64, 2 * N as u64, "pass_fragment");
    // Every fragment came out of a tunnel at its real server: 4000 bytes at MTU 1400 are three.
    let dec: Vec<u64> = decaps.iter().map(Decap::decapsulated).collect();
    assert!(dec.iter().all(|&n| n >= 3 * N as u64 / 2), "decapsulated per real server: {dec:?}");
}
