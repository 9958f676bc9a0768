//! IPv6 end to end: NAT, direct routing and IPv6-in-IPv6 tunnelling (our decapsulation on the
//! real servers), with real TCP and UDP clients and servers in namespaces, data checked byte
//! for byte both ways; the director's view of DR/TUN replies measured; ICMPv6 port unreachable
//! and packet too big.
//!
//! ```text
//!  [client] eth0 2001:db8:2::2 ---- [director] ---- [lan br0] ---- rs1, rs2 2001:db8:1::1N
//!           VIP 2001:db8::10 on the director's lo (and on the real servers' lo for DR/TUN)
//!           eth1 2001:db8:1::100 (DR/TUN only) -----/   route to the client via ::100
//! ```

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use lvs_tests::{direct::RS_ECHO_PORT, *};

pub(crate) fn topology() -> Topology {
    let topo = Topology::new(2).unwrap();
    topo.enable_ipv6().unwrap();
    topo
}

/// Real servers ready for DR/TUN over IPv6 (the IPv6 VIP on lo) and a direct path back to the
/// client that does not cross the director.
pub(crate) fn dr_topology() -> Topology {
    direct::dr_topology(Family::V6).unwrap()
}

/// A UDP echo server on `bind` in `ns` answering `<name>:<payload>` (the harness's
/// `UdpEchoServer` speaks IPv4 only), until dropped.
struct UdpEcho6 {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpEcho6 {
    fn start(ns: &Netns, bind: SocketAddr, name: &str) -> UdpEcho6 {
        let sock = ns.enter(|| std::net::UdpSocket::bind(bind)).unwrap().unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, name) = (stop.clone(), name.to_string());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while !s.load(Ordering::SeqCst) {
                if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                    let mut reply = format!("{name}:").into_bytes();
                    reply.extend_from_slice(&buf[..n]);
                    let _ = sock.send_to(&reply, peer);
                }
            }
        });
        UdpEcho6 { stop, thread: Some(thread) }
    }
}

impl Drop for UdpEcho6 {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// HTTP on [::]:80, TCP echo on [::]:9000, UDP echo on `udp_bind`:53 on every real server.
pub(crate) struct Apps {
    _http: Vec<HttpServer>,
    _udp: Vec<UdpEcho6>,
    _echo: Vec<TcpEchoServer>,
}

pub(crate) fn start_apps(topo: &Topology, udp_bind: Ipv6Addr) -> Apps {
    let mut a = Apps { _http: Vec::new(), _udp: Vec::new(), _echo: Vec::new() };
    for i in 1..=topo.n() {
        let rs = topo.rs(i);
        let any: SocketAddr = (Ipv6Addr::UNSPECIFIED, RS_HTTP_PORT).into();
        a._http.push(HttpServer::start(rs, any, &rs_name(i)).unwrap());
        a._udp.push(UdpEcho6::start(rs, (udp_bind, RS_UDP_PORT).into(), &rs_name(i)));
        a._echo.push(TcpEchoServer::start(rs, SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), RS_ECHO_PORT)).unwrap());
    }
    a
}

/// Services on the IPv6 VIP: HTTP 80, echo 9000 (TCP) and 53 (UDP), rr, every real server
/// with `forward`.
pub(crate) fn config(topo: &Topology, forward: &str) -> String {
    let servers: Vec<String> =
        (1..=topo.n()).map(|i| format!("{{ address: '{}', forward: {forward} }}", rs_ip6(i))).collect();
    direct::rr_config(IpAddr::V6(VIP6), &[("tcp", 80), ("tcp", RS_ECHO_PORT), ("udp", RS_UDP_PORT)], &servers)
}

/// rr over both servers, 1 MiB echoed and a 2 MiB download byte for byte, UDP both ways.
/// Returns (director's to-servers rx packets, client's eth1 rx packets, if it has one).
fn exercise(topo: &Topology, lan_link: bool) -> (u64, u64) {
    direct::exercise_tcp_udp(topo, IpAddr::V6(VIP6), lan_link)
}

#[test]
fn nat_tcp_udp_over_ipv6() {
    if !require_root() {
        return;
    }
    // Megabytes through the rig: never beside the oracle's timing comparisons.
    let _load = timing_exclusive();
    let topo = topology();
    let _apps = start_apps(&topo, Ipv6Addr::UNSPECIFIED);
    let tmp = TempDir::new("v6-nat").unwrap();
    let cfg = tmp.write("lvs.yaml", config(&topo, "masq")).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    let before = lvsd.counters().unwrap();
    let (dir_rx, _) = exercise(&topo, false);
    let after = lvsd.counters().unwrap();
    let d = |k: &str| after[k] - before[k];
    // Both directions went through the dataplane: the replies too (over 2000 segments of the
    // download came in on to-servers and were redirected, not passed to the stack).
    assert!(dir_rx > 2000, "to-servers rx {dir_rx}");
    assert!(d("redirect") > 3000, "redirects: {}", d("redirect"));
    assert_eq!(d("new_conn"), 4 + 1 + 1 + 2, "connections: 4 GETs, the echo, the download, 2 datagrams");
    assert_eq!(d("pass_no_service"), 0);
    // The real servers saw the client's own address (NAT keeps it) on the rewritten port.
    let peer = topo.client.http_get(vip6(80), "/peer").unwrap().text();
    assert!(peer.starts_with(&format!("[{CLIENT_IP6}]:")), "{peer}");
    let l = lvsd.ipvsadm_ok(&["-L", "-n"]).unwrap();
    assert!(l.contains(&format!("TCP  [{VIP6}]:80 rr\n")), "{l}");
    assert!(l.contains(&format!("  -> {:<28} Masq    1 ", format!("[{}]:80", rs_ip6(1)))), "{l}");
    let c = lvsd.ipvsadm_ok(&["-L", "-n", "-c"]).unwrap();
    assert!(c.contains(&format!("[{CLIENT_IP6}]:")) && c.contains(&format!("[{VIP6}]:9000")), "{c}");
}

fn assert_replies_bypass_director(dir_rx: u64, cli_rx: u64) {
    // 3 MiB went to the client in segments of at most 1428 bytes: over 2000 packets on eth1.
    direct::assert_replies_bypass_director(dir_rx, cli_rx, 2000);
}

#[test]
fn dr_tcp_udp_over_ipv6_replies_bypass_the_director() {
    if !require_root() {
        return;
    }
    // Megabytes through the rig: never beside the oracle's timing comparisons.
    let _load = timing_exclusive();
    let topo = dr_topology();
    // UDP echo bound to the VIP, so its answers leave from the VIP as a DR service's must.
    let _apps = start_apps(&topo, VIP6);
    let tmp = TempDir::new("v6-dr").unwrap();
    let cfg = tmp.write("lvs.yaml", config(&topo, "route")).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    let before = lvsd.counters().unwrap();
    let (dir_rx, cli_rx) = exercise(&topo, true);
    assert_replies_bypass_director(dir_rx, cli_rx);
    let after = lvsd.counters().unwrap();
    let d = |k: &str| after[k] - before[k];
    assert!(d("redirect") > 500, "redirects: {}", d("redirect"));
    assert_eq!(d("pass_no_service"), 0, "the director saw packets for no service (replies?)");
    let l = lvsd.ipvsadm_ok(&["-L", "-n"]).unwrap();
    assert!(l.contains(&format!("  -> {:<28} Route   1 ", format!("[{}]:80", rs_ip6(1)))), "{l}");
    let c = lvsd.ipvsadm_ok(&["-L", "-n", "-c"]).unwrap();
    assert!(c.contains("FIN_WAIT") && !c.contains("TIME_WAIT"), "{c}");

    // Forgotten neighbours: the next SYN is dropped and reported, lvsd has the kernel resolve
    // the real server (neighbour discovery), and the retransmitted SYN goes through.
    topo.director.ip(&["-6", "neigh", "flush", "dev", DIRECTOR_SERVER_IF]).unwrap();
    let before = lvsd.counters().unwrap();
    assert!(topo.client.http_get(vip6(80), "/").unwrap().text().starts_with("rs"));
    let after = lvsd.counters().unwrap();
    assert!(after["drop_no_neigh"] - before["drop_no_neigh"] <= 1, "more than one SYN dropped for want of a neighbour");
}

/// The IPv6 next hop is cached per real server as the IPv4 one is (`nexthop.rs`), and changed
/// neighbours and routes are followed at once (see `direct::assert_next_hop_follows_changes`).
/// HTTP connections here.
#[test]
fn dr_ipv6_next_hop_cache_follows_neighbour_and_route_changes() {
    if !require_root() {
        return;
    }
    let _load = timing_exclusive();
    let topo = dr_topology();
    let _apps = start_apps(&topo, VIP6);
    let tmp = TempDir::new("v6-nexthop").unwrap();
    let cfg = tmp.write("lvs.yaml", config(&topo, "route")).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    let answers = || {
        let mut v: Vec<String> = (0..4)
            .map(|_| topo.client.http_get(vip6(80), "/").unwrap().text().chars().take(3).collect())
            .collect();
        v.sort();
        v
    };
    direct::assert_next_hop_follows_changes(&topo, &lvsd, rs_ip6(1).into(), rs_ip6(2).into(), answers);
}

#[test]
fn tun_ipv6_in_ipv6_with_our_decap() {
    if !require_root() {
        return;
    }
    // Megabytes through the rig: never beside the oracle's timing comparisons.
    let _load = timing_exclusive();
    let topo = dr_topology();
    let _apps = start_apps(&topo, VIP6);
    // This host has no ip6_tunnel module: without our program a real server drops IPv6-in-IPv6,
    // so the traffic below can only work through it.
    let decaps = Decap::attach_all(&topo, "v6-rs", Family::V6, &[]);
    let tmp = TempDir::new("v6-tun").unwrap();
    let cfg = tmp.write("lvs.yaml", config(&topo, "tunnel")).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    let before = lvsd.counters().unwrap();
    let (dir_rx, cli_rx) = exercise(&topo, true);
    assert_replies_bypass_director(dir_rx, cli_rx);
    let after = lvsd.counters().unwrap();
    assert_eq!(after["pass_no_service"] - before["pass_no_service"], 0);
    let dec: Vec<u64> = decaps.iter().map(Decap::decapsulated).collect();
    assert!(dec.iter().sum::<u64>() > 300, "decapsulated per real server: {dec:?}");
    assert!(dec.iter().all(|&n| n > 0), "decapsulated per real server: {dec:?}");
    let l = lvsd.ipvsadm_ok(&["-L", "-n", "--tun-info"]).unwrap();
    assert!(l.contains(&format!("  -> {:<28} Tunnel  ipip          1 ", format!("[{}]:80", rs_ip6(1)))), "{l}");
}

#[test]
fn tun_ipv6_pmtu_packet_too_big() {
    if !require_root() {
        return;
    }
    // Megabytes through the rig: never beside the oracle's timing comparisons.
    let _load = timing_exclusive();
    let topo = dr_topology();
    let _apps = start_apps(&topo, VIP6);
    let _decaps = Decap::attach_all(&topo, "v6-p", Family::V6, &[]);
    // 1400 bytes from the director to the real servers: a full-sized client segment (1500)
    // no longer fits once the 40-byte outer header is added.
    topo.director.set_mtu(DIRECTOR_SERVER_IF, 1400).unwrap();
    let tmp = TempDir::new("v6-pmtu").unwrap();
    let cfg = tmp.write("lvs.yaml", config(&topo, "tunnel")).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    lvs_tests::client::echo_exact(&topo.client, vip6(RS_ECHO_PORT), 4 << 20);
    let c = lvsd.counters().unwrap();
    assert!(c["tx_icmp_frag_needed"] >= 1, "no ICMPv6 packet too big was sent: {c:?}");
    // The client learnt the MTU our ICMPv6 carried: 1400 minus the 40-byte outer header.
    let r = topo.client.run("ip", ["-6", "route", "get", &VIP6.to_string()]).unwrap().stdout_str();
    assert!(r.contains("mtu 1360"), "client's route to the VIP: {r}");
}

#[test]
fn icmpv6_port_unreachable_when_no_server_can_take_it() {
    if !require_root() {
        return;
    }
    let topo = topology();
    let tmp = TempDir::new("v6-unreach").unwrap();
    // The only real server has weight 0: no new connection can be scheduled.
    let cfg = format!(
        "interfaces: [{DIRECTOR_CLIENT_IF}, {DIRECTOR_SERVER_IF}]\nservices:\n  - protocol: tcp\n    address: '{VIP6}'\n    port: 81\n    scheduler: rr\n    real_servers:\n      - {{ address: '{}', forward: masq, weight: 0 }}\n",
        rs_ip6(1)
    );
    let cfg = tmp.write("lvs.yaml", cfg).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    let t0 = std::time::Instant::now();
    let e = topo.client.tcp_connect(vip6(81), Duration::from_secs(5)).unwrap_err();
    // Refused at once by our ICMPv6 destination unreachable (port unreachable), which the
    // client's stack only accepts with a correct checksum and quote of its own SYN.
    let refused = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    });
    let took = t0.elapsed();
    assert!(refused, "{e:#}");
    // On veths the error for the first SYN comes back while connect() still holds the socket
    // lock, and TCP then keeps it only as a soft error; the error for the retransmitted SYN
    // (one second later) ends the attempt. One or two errors, no third SYN.
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let sent = lvsd.counters().unwrap()["tx_icmp_unreachable"];
    assert!((1..=2).contains(&sent), "ICMPv6 errors sent: {sent}");
}

#[test]
fn persistence_over_ipv6_keeps_a_prefix_on_one_server() {
    if !require_root() {
        return;
    }
    let topo = topology();
    // A second client address in the same /64.
    topo.client.ip(&["-6", "addr", "add", "2001:db8:2::3/64", "dev", CLIENT_IF, "nodad"]).unwrap();
    let _apps = start_apps(&topo, Ipv6Addr::UNSPECIFIED);
    let tmp = TempDir::new("v6-persist").unwrap();
    let mut servers = String::new();
    for i in 1..=topo.n() {
        servers.push_str(&format!("      - {{ address: '{}', forward: masq }}\n", rs_ip6(i)));
    }
    let cfg = format!(
        "interfaces: [{DIRECTOR_CLIENT_IF}, {DIRECTOR_SERVER_IF}]\nservices:\n  - protocol: tcp\n    address: '{VIP6}'\n    port: 80\n    scheduler: rr\n    persistent: 300\n    netmask: 64\n    real_servers:\n{servers}"
    );
    let cfg = tmp.write("lvs.yaml", cfg).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    // GETs from one address, then from another in the same /64: one template, one server
    // (rr alone would alternate).
    let get_from = |src: &str| -> String {
        let url = format!("http://[{VIP6}]:80/");
        topo.client.curl(&url, &["--globoff", "--interface", src]).unwrap().text()
    };
    let names: Vec<String> = ["2001:db8:2::2", "2001:db8:2::2", "2001:db8:2::3", "2001:db8:2::3", "2001:db8:2::2"]
        .iter()
        .map(|a| get_from(a))
        .collect();
    assert!(names.iter().all(|n| *n == names[0]), "{names:?}");
    // The template is listed with the client's /64 network and port 0, as the kernel lists it.
    let c = lvsd.ipvsadm_ok(&["-L", "-n", "-c"]).unwrap();
    let template: Vec<&str> = c.lines().filter(|l| l.contains("[2001:db8:2::]:0 ")).collect();
    assert_eq!(template.len(), 1, "{c}");
    // ASSURED: its connections reached ESTABLISHED, as the kernel marks a template.
    assert!(template[0].contains(" ASSURED ") && template[0].contains(&format!("[{VIP6}]:80")), "{c}");
}
