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
    io::{Read, Write},
    net::{Ipv6Addr, SocketAddr, TcpListener},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use lvs_tests::*;

/// The client's second address, on the servers' LAN: the direct return path of DR/TUN.
const CLIENT_LAN_IP6: &str = "2001:db8:1::100";
const ECHO_PORT: u16 = 9000;

fn topology() -> Topology {
    let topo = Topology::new(2).unwrap();
    topo.enable_ipv6().unwrap();
    topo
}

/// Real servers ready for DR/TUN: the IPv6 VIP on lo (a Linux host answers neighbour
/// solicitations only for addresses of the interface they arrive on, so no sysctl is needed
/// to keep it quiet) and a direct path back to the client that does not cross the director.
fn dr_topology() -> Topology {
    let topo = topology();
    for i in 1..=topo.n() {
        topo.rs(i).ip(&["-6", "addr", "add", &format!("{VIP6}/128"), "dev", "lo", "nodad"]).unwrap();
    }
    veth_pair(&topo.client, "eth1", &topo.lan, "p-client").unwrap();
    topo.lan.ip(&["link", "set", "p-client", "master", BRIDGE]).unwrap();
    topo.lan.link_up("p-client").unwrap();
    topo.client.ip(&["-6", "addr", "add", &format!("{CLIENT_LAN_IP6}/64"), "dev", "eth1", "nodad"]).unwrap();
    topo.client.link_up("eth1").unwrap();
    topo.client.ethtool_k("eth1", &[("gro", true), ("tx", false)]).unwrap();
    for i in 1..=topo.n() {
        topo.rs(i).ip(&["-6", "route", "add", "2001:db8:2::/64", "via", CLIENT_LAN_IP6]).unwrap();
    }
    topo
}

/// A TCP echo server on `[::]:port` in `ns`, until dropped.
struct EchoServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    fn start(ns: &Netns, port: u16) -> EchoServer {
        let l = ns.enter(|| TcpListener::bind(("::", port))).unwrap().unwrap();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        c.set_nonblocking(false).unwrap();
                        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                        std::thread::spawn(move || {
                            let mut buf = [0u8; 65536];
                            while let Ok(n) = c.read(&mut buf) {
                                if n == 0 || c.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        EchoServer { stop, thread: Some(thread) }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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
struct Apps {
    _http: Vec<HttpServer>,
    _udp: Vec<UdpEcho6>,
    _echo: Vec<EchoServer>,
}

fn start_apps(topo: &Topology, udp_bind: Ipv6Addr) -> Apps {
    let mut a = Apps { _http: Vec::new(), _udp: Vec::new(), _echo: Vec::new() };
    for i in 1..=topo.n() {
        let rs = topo.rs(i);
        let any: SocketAddr = (Ipv6Addr::UNSPECIFIED, RS_HTTP_PORT).into();
        a._http.push(HttpServer::start(rs, any, &rs_name(i)).unwrap());
        a._udp.push(UdpEcho6::start(rs, (udp_bind, RS_UDP_PORT).into(), &rs_name(i)));
        a._echo.push(EchoServer::start(rs, ECHO_PORT));
    }
    a
}

/// Services on the IPv6 VIP: HTTP 80, echo 9000 (TCP) and 53 (UDP), rr, every real server
/// with `forward`.
fn config(topo: &Topology, forward: &str) -> String {
    let mut servers = String::new();
    for i in 1..=topo.n() {
        servers.push_str(&format!("      - {{ address: '{}', forward: {forward} }}\n", rs_ip6(i)));
    }
    let svc = |proto: &str, port: u16| {
        format!("  - protocol: {proto}\n    address: '{VIP6}'\n    port: {port}\n    scheduler: rr\n    real_servers:\n{servers}")
    };
    format!(
        "interfaces: [{DIRECTOR_CLIENT_IF}, {DIRECTOR_SERVER_IF}]\nconnection_table_size: 4096\nservices:\n{}{}{}",
        svc("tcp", 80),
        svc("tcp", ECHO_PORT),
        svc("udp", RS_UDP_PORT)
    )
}

/// Sends `n` pattern bytes to [VIP6]:9000 and checks exactly the same bytes come back.
fn echo_exact(topo: &Topology, n: u64) {
    let s = topo.client.tcp_connect(vip6(ECHO_PORT), Duration::from_secs(10)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        w.write_all(&expected_bytes(n)).unwrap();
        w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut got = Vec::with_capacity(n as usize);
    let mut r = s;
    r.read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    assert_eq!(got.len() as u64, n, "echoed byte count");
    assert!(got == expected_bytes(n), "echoed bytes differ from those sent");
}

/// One datagram to [VIP6]:53 on a socket connected to the VIP (only the VIP's answer is
/// received); checks the echo byte for byte and returns the server's name.
fn udp_exact(topo: &Topology, payload: &[u8]) -> String {
    let sock = topo.client.udp_socket("[::]:0".parse().unwrap()).unwrap();
    sock.connect(vip6(RS_UDP_PORT)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 4096];
    // The first datagram may find a neighbour unresolved (DR drops it and lvsd resolves it);
    // one retry covers that, as a client's own retransmission would.
    for _ in 0..2 {
        sock.send(payload).unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let reply = &buf[..n];
            let colon = reply.iter().position(|&b| b == b':').expect("name:payload");
            assert_eq!(&reply[colon + 1..], payload, "UDP payload echoed byte for byte");
            return String::from_utf8(reply[..colon].to_vec()).unwrap();
        }
    }
    panic!("no UDP answer from the IPv6 VIP");
}

fn rx_packets(ns: &Netns, dev: &str) -> u64 {
    let out = ns.run("ip", ["-j", "-s", "link", "show", "dev", dev]).unwrap().stdout_str();
    let rx = out.split("\"rx\":{").nth(1).expect("rx stats");
    let p = rx.split("\"packets\":").nth(1).expect("rx packets");
    p.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

fn counters(lvsd: &Lvsd) -> std::collections::HashMap<String, u64> {
    let out = std::process::Command::new(lvs_bin("lvsd")).arg("--counters").arg("--socket").arg(lvsd.socket()).output().unwrap();
    assert!(out.status.success(), "lvsd --counters: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.trim().parse().unwrap()))
        .collect()
}

/// rr over both servers, 1 MiB echoed and a 2 MiB download byte for byte, UDP both ways.
/// Returns (director's to-servers rx packets, client's eth1 rx packets, if it has one).
fn exercise(topo: &Topology, lan_link: bool) -> (u64, u64) {
    let dir_rx0 = rx_packets(&topo.director, DIRECTOR_SERVER_IF);
    let cli_rx0 = if lan_link { rx_packets(&topo.client, "eth1") } else { 0 };
    let mut seen: Vec<String> = (0..4).map(|_| topo.client.http_get(vip6(80), "/").unwrap().text()).collect();
    assert_ne!(seen[0], seen[1], "rr alternates between the real servers");
    assert_eq!(seen[0], seen[2]);
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["rs1", "rs2"]);

    echo_exact(topo, 1 << 20);
    const N: u64 = 2 * 1024 * 1024 + 7;
    let r = topo.client.http_get(vip6(80), &format!("/bytes/{N}")).unwrap();
    assert!(r.body == expected_bytes(N), "download differs from the expected pattern");

    let mut names: Vec<String> = (0..2).map(|i| udp_exact(topo, &vec![b'a' + i as u8; 1200])).collect();
    names.sort();
    assert_eq!(names, ["rs1", "rs2"]);
    let cli_rx = if lan_link { rx_packets(&topo.client, "eth1") - cli_rx0 } else { 0 };
    (rx_packets(&topo.director, DIRECTOR_SERVER_IF) - dir_rx0, cli_rx)
}

#[test]
fn nat_tcp_udp_over_ipv6() {
    if !require_root() {
        return;
    }
    let topo = topology();
    let _apps = start_apps(&topo, Ipv6Addr::UNSPECIFIED);
    let tmp = TempDir::new("v6-nat").unwrap();
    let cfg = tmp.write("lvs.yaml", config(&topo, "masq")).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    let before = counters(&lvsd);
    let (dir_rx, _) = exercise(&topo, false);
    let after = counters(&lvsd);
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
