//! Direct routing (`-g`) and IP-in-IP tunnelling (`-i`) end to end: real TCP and UDP clients
//! and servers in namespaces, replies going straight from the real servers to the client over
//! a second link, the director's view of them measured.
//!
//! ```text
//!  [client] eth0 ---- [director] ---- [lan br0] ---- rs1, rs2 (VIP on lo, no ARP for it)
//!           eth1 192.0.2.100 ----------/              route to the client via 192.0.2.100
//! ```

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use lvs_tests::{direct::RS_ECHO_PORT, *};

/// Real servers ready for DR/TUN over IPv4 (VIP on lo, ARP sysctls) and a direct path back to
/// the client that does not cross the director.
pub(crate) fn dr_topology() -> Topology {
    direct::dr_topology(Family::V4).unwrap()
}

/// Services on the VIP: HTTP 80, echo 9000 (TCP) and 53 (UDP), rr, every real server with
/// `forward`.
pub(crate) fn config(topo: &Topology, forward: &str) -> String {
    let servers: Vec<String> =
        (1..=topo.n()).map(|i| format!("{{ address: {}, forward: {forward} }}", rs_ip(i))).collect();
    direct::rr_config(IpAddr::V4(VIP), &[("tcp", 80), ("tcp", RS_ECHO_PORT), ("udp", RS_UDP_PORT)], &servers)
}

/// Application servers on every real server: HTTP on 0.0.0.0:80, echo on 0.0.0.0:9000, UDP
/// echo bound to the VIP (so its answers leave from the VIP, as a DR service's must).
pub(crate) struct Apps {
    _http: Vec<HttpServer>,
    _udp: Vec<UdpEchoServer>,
    _echo: Vec<TcpEchoServer>,
}

pub(crate) fn start_apps(topo: &Topology) -> Apps {
    let mut a = Apps { _http: Vec::new(), _udp: Vec::new(), _echo: Vec::new() };
    for i in 1..=topo.n() {
        let rs = topo.rs(i);
        a._http.push(HttpServer::start(rs, sa(Ipv4Addr::UNSPECIFIED, RS_HTTP_PORT), &rs_name(i)).unwrap());
        a._udp.push(UdpEchoServer::start(rs, sa(VIP, RS_UDP_PORT), &rs_name(i)).unwrap());
        a._echo.push(TcpEchoServer::start(rs, sa(Ipv4Addr::UNSPECIFIED, RS_ECHO_PORT)).unwrap());
    }
    a
}

/// The traffic both methods must carry (see `direct::exercise_tcp_udp`). Returns (director's
/// to-servers rx packets, client's eth1 rx packets) during the traffic.
fn exercise(topo: &Topology) -> (u64, u64) {
    direct::exercise_tcp_udp(topo, IpAddr::V4(VIP), true)
}

fn assert_replies_bypass_director(dir_rx: u64, cli_rx: u64) {
    // 3 MiB went to the client in segments of at most 1448 bytes: over 2000 packets on eth1.
    direct::assert_replies_bypass_director(dir_rx, cli_rx, 2000);
}

#[test]
fn dr_tcp_udp_replies_bypass_the_director() {
    if !require_root() {
        return;
    }
    let _load = timing_exclusive();
    let topo = dr_topology();
    let _apps = start_apps(&topo);
    let tmp = TempDir::new("fwd-dr").unwrap();
    let cfg = tmp.write("lvs.yaml", config(&topo, "route")).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    let before = lvsd.counters().unwrap();
    let (dir_rx, cli_rx) = exercise(&topo);
    assert_replies_bypass_director(dir_rx, cli_rx);
    let after = lvsd.counters().unwrap();
    let d = |k: &str| after[k] - before[k];
    // Every packet the director saw was the client's, forwarded by redirect; none passed to
    // its stack as "no service" (which replies would have been).
    assert!(d("redirect") > 500, "redirects: {}", d("redirect"));
    assert_eq!(d("pass_no_service"), 0, "the director saw packets for no service (replies?)");
    assert_eq!(d("drop_unsupported_forward"), 0);
    let l = lvsd.ipvsadm_ok(&["-L", "-n"]).unwrap();
    assert!(l.contains(&format!("  -> {:<28} Route   1 ", format!("{}:80", rs_ip(1)))), "{l}");
    // The connection table holds the client side only, in INPUT_ONLY states (DR's last state
    // is FIN_WAIT, never TIME_WAIT).
    let c = lvsd.ipvsadm_ok(&["-L", "-n", "-c"]).unwrap();
    assert!(c.contains("FIN_WAIT"), "{c}");
    assert!(!c.contains("TIME_WAIT"), "{c}");

    // The director forgets its neighbours (as when entries are garbage-collected): the next
    // SYN cannot be sent and is dropped, the dataplane reports the real server, lvsd has the
    // kernel resolve it, and the client's retransmitted SYN goes through.
    topo.director.ip(&["neigh", "flush", "dev", DIRECTOR_SERVER_IF]).unwrap();
    // lvsd reads the kernel's neighbour events on a thread of its own and then retires the
    // dataplane's cached next hops; give it a moment (far less than the cache's 1 s backstop).
    std::thread::sleep(direct::EVENT_SETTLE);
    let before = lvsd.counters().unwrap();
    let t0 = std::time::Instant::now();
    assert!(topo.client.http_get(vip(80), "/").unwrap().text().starts_with("rs"));
    let after = lvsd.counters().unwrap();
    assert_eq!(after["drop_no_neigh"] - before["drop_no_neigh"], 1, "one SYN dropped for want of a neighbour");
    assert!(t0.elapsed() < Duration::from_secs(3), "took {:?}: the neighbour was not resolved for the first retransmission", t0.elapsed());
}

/// The next hop towards a real server is cached; changed neighbours and routes are still
/// followed at once (see `direct::assert_next_hop_follows_changes`). UDP connections here.
#[test]
fn dr_next_hop_cache_follows_neighbour_and_route_changes() {
    if !require_root() {
        return;
    }
    let _load = timing_exclusive();
    let topo = dr_topology();
    let _apps = start_apps(&topo);
    let tmp = TempDir::new("fwd-nexthop").unwrap();
    let cfg = tmp.write("lvs.yaml", config(&topo, "route")).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    let answers = || {
        let mut v: Vec<String> =
            (0..4).map(|i| lvs_tests::client::udp_exact(&topo.client, vip(RS_UDP_PORT), &[b'a' + i; 64])).collect();
        v.sort();
        v
    };
    direct::assert_next_hop_follows_changes(&topo, &lvsd, rs_ip(1).into(), rs_ip(2).into(), answers);
}

#[test]
fn tun_with_our_decap_on_the_real_servers() {
    if !require_root() {
        return;
    }
    let _load = timing_exclusive();
    let topo = dr_topology();
    let _apps = start_apps(&topo);
    // A bad interface is refused by name, and nothing is pinned.
    let pin = format!("/sys/fs/bpf/lvs-{}-decap-bad", std::process::id());
    let out = topo.rs(1).output(lvs_bin("lvsd").to_str().unwrap(), ["decap", "--interface", "nosuch0", "--pin-dir", &pin]).unwrap();
    assert!(!out.success());
    assert_eq!(out.stderr_str(), "lvsd: --interface nosuch0: no such interface\n");
    assert!(!std::path::Path::new(&pin).exists());
    // Without decapsulation a real server drops IP-in-IP (this host has no ipip module), so
    // the traffic below can only work through our program.
    let decaps = Decap::attach_all(&topo, "rs", Family::V4, &[]);
    let tmp = TempDir::new("fwd-tun").unwrap();
    let cfg = tmp.write("lvs.yaml", config(&topo, "tunnel")).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    let before = lvsd.counters().unwrap();
    let (dir_rx, cli_rx) = exercise(&topo);
    assert_replies_bypass_director(dir_rx, cli_rx);
    let after = lvsd.counters().unwrap();
    assert_eq!(after["pass_no_service"] - before["pass_no_service"], 0);
    // Every client packet reached a real server through the tunnel: the 1 MiB upload alone is
    // over 700 segments (fewer skbs where GRO merged them before TC ingress), and both servers
    // had connections.
    let dec: Vec<u64> = decaps.iter().map(Decap::decapsulated).collect();
    assert!(dec.iter().sum::<u64>() > 300, "decapsulated per real server: {dec:?}");
    assert!(dec.iter().all(|&n| n > 0), "decapsulated per real server: {dec:?}");
    let l = lvsd.ipvsadm_ok(&["-L", "-n", "--tun-info"]).unwrap();
    assert!(l.contains(&format!("  -> {:<28} Tunnel  ipip          1 ", format!("{}:80", rs_ip(1)))), "{l}");
    // Detaching leaves the interface without the program: tunnelled traffic no longer arrives.
    let pins: Vec<String> = decaps.iter().map(|d| d.pin_dir().to_string()).collect();
    drop(decaps);
    for p in pins {
        assert!(!std::path::Path::new(&p).exists(), "{p} left behind");
    }
    let s = topo.client.udp_socket("0.0.0.0:0".parse().unwrap()).unwrap();
    s.connect(vip(RS_UDP_PORT)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    s.send(b"after detach").unwrap();
    let mut buf = [0u8; 64];
    assert!(s.recv(&mut buf).is_err(), "an answer came back through a real server without decapsulation");
}

#[test]
fn tun_pmtu_large_transfer_through_smaller_mtu() {
    if !require_root() {
        return;
    }
    let _load = timing_exclusive();
    let topo = dr_topology();
    let _apps = start_apps(&topo);
    let _decaps = Decap::attach_all(&topo, "p", Family::V4, &[]);
    // The path from the director to the real servers carries 1400 bytes; the client's and the
    // servers' own links 1500. A full-sized client segment (1500) no longer fits once
    // encapsulated (1520).
    topo.director.set_mtu(DIRECTOR_SERVER_IF, 1400).unwrap();
    let tmp = TempDir::new("fwd-pmtu").unwrap();
    let cfg = tmp.write("lvs.yaml", config(&topo, "tunnel")).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    lvs_tests::client::echo_exact(&topo.client, vip(RS_ECHO_PORT), 4 << 20);
    let c = lvsd.counters().unwrap();
    assert!(c["tx_icmp_frag_needed"] >= 1, "no ICMP fragmentation needed was sent: {c:?}");
    // The client learnt the MTU our ICMP carried: 1400 minus the 20-byte outer header.
    let r = topo.client.run("ip", ["route", "get", &VIP.to_string()]).unwrap().stdout_str();
    assert!(r.contains("mtu 1380"), "client's route to the VIP: {r}");
}
