//! Tunnel types end to end: GUE and GRE tunnel servers, and tunnel servers of the other
//! address family (an IPv4 VIP served by IPv6 real servers, IPv4 in IPv6; an IPv6 VIP served
//! by IPv4 real servers, IPv6 in IPv4). Real TCP through our decapsulation program on the real
//! servers (this host has no ipip, ip6_tunnel, GRE or fou module, so nothing else could
//! deliver it), replies straight from the real servers to the client, data checked byte for
//! byte.
//!
//! ```text
//!  [client] eth0 ---- [director] ---- [lan br0] ---- rs1, rs2 (VIP on lo)
//!           eth1 192.0.2.100 / 2001:db8:1::100 ----/  routes to the client via eth1
//! ```

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use lvs_tests::{direct::RS_ECHO_PORT, *};

/// Real servers ready for tunnels of both families: both VIPs on lo (no ARP for the IPv4
/// one), IPv6 everywhere, and a direct return path to the client over a second link.
fn topology() -> Topology {
    direct::dr_topology(Family::Both).unwrap()
}

/// HTTP and TCP echo on every real server, both families.
struct Apps {
    _http: Vec<HttpServer>,
    _echo: Vec<TcpEchoServer>,
}

fn start_apps(topo: &Topology) -> Apps {
    let mut a = Apps { _http: Vec::new(), _echo: Vec::new() };
    for i in 1..=topo.n() {
        let rs = topo.rs(i);
        // [::] takes IPv4 too (bindv6only is 0).
        let any: SocketAddr = (Ipv6Addr::UNSPECIFIED, RS_HTTP_PORT).into();
        a._http.push(HttpServer::start(rs, any, &rs_name(i)).unwrap());
        a._echo.push(TcpEchoServer::start(rs, SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), RS_ECHO_PORT)).unwrap());
    }
    a
}

/// TCP services HTTP (80) and echo (9000) on `vip`, rr, with the given real-server lines.
fn config(vip: IpAddr, servers: &[String]) -> String {
    direct::rr_config(vip, &[("tcp", 80), ("tcp", RS_ECHO_PORT)], servers)
}

/// rr over both servers by HTTP; 512 KiB echoed byte for byte through each real server (two
/// connections, rr); a 1 MiB download byte for byte. Returns the client's eth1 rx packets
/// during it (the replies' direct path) and the director's to-servers rx packets.
fn exercise(topo: &Topology, http: SocketAddr, echo: SocketAddr) -> (u64, u64) {
    let rx = direct::ReturnPathRx::start(topo, true);
    direct::assert_rr_over_both(topo, http);
    for _ in 0..2 {
        lvs_tests::client::echo_exact(&topo.client, echo, 512 << 10);
    }
    const N: u64 = 1024 * 1024 + 3;
    let r = topo.client.http_get(http, &format!("/bytes/{N}")).unwrap();
    assert!(r.body == expected_bytes(N), "download differs from the expected pattern");
    let (dir_rx, cli_rx) = rx.done(topo);
    (cli_rx, dir_rx)
}

fn assert_direct_replies(cli_rx: u64, dir_rx: u64) {
    // Over 1.5 MiB came back to the client in segments of at most 1448 bytes.
    direct::assert_replies_bypass_director(dir_rx, cli_rx, 1000);
}

#[test]
fn gue_and_gre_tunnels_with_our_decap() {
    if !require_root() {
        return;
    }
    let _load = timing_exclusive();
    let topo = topology();
    let _apps = start_apps(&topo);
    let decaps = Decap::attach_all(&topo, "g", Family::Both, &["6080", "6081"]);
    // rs1 by GUE (port 6080, UDP checksum), rs2 by GRE (with its checksum).
    let servers = [
        format!("{{ address: {}, forward: tunnel, tun_type: gue, tun_port: 6080, tun_csum: csum }}", rs_ip(1)),
        format!("{{ address: {}, forward: tunnel, tun_type: gre, tun_csum: csum }}", rs_ip(2)),
    ];
    let tmp = TempDir::new("tun-gue-gre").unwrap();
    let cfg = tmp.write("lvs.yaml", config(IpAddr::V4(VIP), &servers)).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    let l = lvsd.ipvsadm_ok(&["-L", "-n", "--tun-info", "-t", &format!("{VIP}:80")]).unwrap();
    assert!(l.contains(&format!("  -> {:<28} Tunnel  gue:6080:+c   1 ", format!("{}:80", rs_ip(1)))), "{l}");
    assert!(l.contains(&format!("  -> {:<28} Tunnel  gre:+c        1 ", format!("{}:80", rs_ip(2)))), "{l}");
    let before = lvsd.counters().unwrap();
    let (cli_rx, dir_rx) = exercise(&topo, vip(80), vip(RS_ECHO_PORT));
    assert_direct_replies(cli_rx, dir_rx);
    let dec: Vec<u64> = decaps.iter().map(|d| d.counter("decapsulated")).collect();
    assert!(dec.iter().all(|&n| n > 20), "decapsulated per real server: {dec:?}");

    // Both without checksums now (`ipvsadm -e` on the running director), GUE to the other
    // port the real servers listen on.
    for port in [80u16, RS_ECHO_PORT] {
        let svc = format!("{VIP}:{port}");
        lvsd.ipvsadm_ok(&["-e", "-t", &svc, "-r", &rs_ip(1).to_string(), "-i", "--tun-type", "gue", "--tun-port", "6081", "--tun-nocsum"]).unwrap();
        lvsd.ipvsadm_ok(&["-e", "-t", &svc, "-r", &rs_ip(2).to_string(), "-i", "--tun-type", "gre"]).unwrap();
    }
    let s = lvsd.ipvsadm_ok(&["-S", "-n"]).unwrap();
    assert!(s.contains(&format!("-a -t {VIP}:80 -r {}:80 -i -w 1 --tun-type gue --tun-port 6081 --tun-nocsum\n", rs_ip(1))), "{s}");
    assert!(s.contains(&format!("-a -t {VIP}:80 -r {}:80 -i -w 1 --tun-type gre --tun-nocsum\n", rs_ip(2))), "{s}");
    let (cli_rx, dir_rx) = exercise(&topo, vip(80), vip(RS_ECHO_PORT));
    assert_direct_replies(cli_rx, dir_rx);
    let after = lvsd.counters().unwrap();
    assert_eq!(after["pass_no_service"] - before["pass_no_service"], 0);
    assert_eq!(after["drop_unsupported_forward"] - before["drop_unsupported_forward"], 0);
    let dec2: Vec<u64> = decaps.iter().map(|d| d.counter("decapsulated")).collect();
    assert!(dec2[0] > dec[0] + 20 && dec2[1] > dec[1] + 20, "decapsulated per real server: {dec:?} then {dec2:?}");

    // A real server that does not take GUE on that port gets nothing it can use: the UDP
    // goes to its stack, which has no socket there.
    lvsd.ipvsadm_ok(&["-e", "-t", &format!("{VIP}:80"), "-r", &rs_ip(1).to_string(), "-i", "--tun-type", "gue", "--tun-port", "6099"]).unwrap();
    lvsd.ipvsadm_ok(&["-d", "-t", &format!("{VIP}:80"), "-r", &rs_ip(2).to_string()]).unwrap();
    let r = topo.client.output("curl", ["-s", "-m", "2", &format!("http://{VIP}/")]).unwrap();
    assert!(!r.success(), "an answer came back through GUE to a port the real server does not decapsulate");
}

#[test]
fn ipv4_vip_on_ipv6_tunnel_servers() {
    if !require_root() {
        return;
    }
    let _load = timing_exclusive();
    let topo = topology();
    let _apps = start_apps(&topo);
    let decaps = Decap::attach_all(&topo, "m", Family::Both, &[]);
    let servers: Vec<String> = (1..=topo.n()).map(|i| format!("{{ address: '{}', forward: tunnel }}", rs_ip6(i))).collect();
    let tmp = TempDir::new("tun-4in6").unwrap();
    let cfg = tmp.write("lvs.yaml", config(IpAddr::V4(VIP), &servers)).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    let l = lvsd.ipvsadm_ok(&["-L", "-n", "-t", &format!("{VIP}:80")]).unwrap();
    assert!(l.contains(&format!("  -> {:<28} Tunnel  1 ", format!("[{}]:80", rs_ip6(1)))), "{l}");
    let (cli_rx, dir_rx) = exercise(&topo, vip(80), vip(RS_ECHO_PORT));
    assert_direct_replies(cli_rx, dir_rx);
    let dec: Vec<u64> = decaps.iter().map(|d| d.counter("decapsulated")).collect();
    assert!(dec.iter().all(|&n| n > 20), "decapsulated per real server: {dec:?}");
    // The connections are the client's IPv4 ones, to IPv6 real servers.
    let c = lvsd.ipvsadm_ok(&["-L", "-n", "-c"]).unwrap();
    assert!(c.contains(&format!("{VIP}:80 ")) && c.contains(&format!("[{}]:80", rs_ip6(1))), "{c}");
    // The kernel's rule: no sync daemon while such a server exists.
    let out = lvsd.ipvsadm(&["--start-daemon", "master", "--mcast-interface", DIRECTOR_SERVER_IF]).unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(out.stderr_str(), "Invalid operation.  Possibly wrong module version, address not unicast, ...\n");
    // Nor from a config that starts one beside such a server: refused whole, at the server.
    let both = config(IpAddr::V4(VIP), &servers).replace("services:\n", &format!("sync:\n  master: {{interface: {DIRECTOR_SERVER_IF}}}\nservices:\n"));
    let cfg2 = tmp.write("sync.yaml", both).unwrap();
    let out = topo.director.output(lvs_bin("lvsd").to_str().unwrap(), ["--check-config", cfg2.to_str().unwrap(), "--socket", "/nonexistent/lvsd.sock"]).unwrap();
    assert!(!out.success());
    assert!(
        out.stderr_str().contains(":11:9: real server 2001:db8:1::11 is of the other address family than its service, which a sync daemon cannot carry (the config starts one)"),
        "{}",
        out.stderr_str()
    );
}

#[test]
fn ipv6_vip_on_ipv4_tunnel_servers() {
    if !require_root() {
        return;
    }
    let _load = timing_exclusive();
    let topo = topology();
    let _apps = start_apps(&topo);
    let decaps = Decap::attach_all(&topo, "s", Family::Both, &[]);
    let servers: Vec<String> = (1..=topo.n()).map(|i| format!("{{ address: {}, forward: tunnel }}", rs_ip(i))).collect();
    let tmp = TempDir::new("tun-6in4").unwrap();
    let cfg = tmp.write("lvs.yaml", config(IpAddr::V6(VIP6), &servers)).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    let l = lvsd.ipvsadm_ok(&["-L", "-n", "--tun-info"]).unwrap();
    assert!(l.contains(&format!("  -> {:<28} Tunnel  ipip          1 ", format!("{}:80", rs_ip(1)))), "{l}");
    let (cli_rx, dir_rx) = exercise(&topo, vip6(80), vip6(RS_ECHO_PORT));
    assert_direct_replies(cli_rx, dir_rx);
    let dec: Vec<u64> = decaps.iter().map(|d| d.counter("decapsulated")).collect();
    assert!(dec.iter().all(|&n| n > 20), "decapsulated per real server: {dec:?}");
}
