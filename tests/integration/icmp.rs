//! ICMP and ICMPv6 errors about NAT connections relayed by the dataplane (IPVS
//! `ip_vs_out_icmp`, `ip_vs_out_icmp_v6`): a real server's port unreachable refuses the
//! client's connected UDP socket, and a router behind the director teaches the client a
//! smaller path MTU to the VIP, over IPv4 and over IPv6.

use std::{
    io::{ErrorKind, Read, Write},
    net::{Ipv6Addr, SocketAddr, TcpListener},
    time::Duration,
};

use lvs_tests::*;

fn start(topo: &Topology, tmp: &TempDir, addr: &str, proto: &str, port: u16) -> Lvsd {
    let cfg = format!(
        "interfaces: [{DIRECTOR_CLIENT_IF}, {DIRECTOR_SERVER_IF}]\nconnection_table_size: 4096\nservices:\n\
         \x20 - protocol: {proto}\n    address: {VIP}\n    port: {port}\n    scheduler: rr\n    real_servers:\n\
         \x20     - {{ address: {addr}, forward: masq }}\n"
    );
    Lvsd::start(&topo.director, &tmp.write("lvs.yaml", cfg).unwrap()).unwrap()
}

#[test]
fn udp_port_unreachable_from_a_real_server_refuses_the_client() {
    if !require_root() {
        return;
    }
    // No servers started: nothing listens on rs1's UDP port 53, so its kernel answers
    // with port unreachable (from 192.0.2.11, quoting client -> 192.0.2.11:53).
    let topo = Topology::builder().real_servers(2).build().unwrap();
    let tmp = TempDir::new("icmp-udp").unwrap();
    let _lvsd = start(&topo, &tmp, &rs_ip(1).to_string(), "udp", 53);
    let s = topo.client.udp_socket("0.0.0.0:0".parse().unwrap()).unwrap();
    s.connect(vip(53)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.send(b"anyone?").unwrap();
    let mut buf = [0u8; 64];
    // Unrelayed, the error would reach the client quoting the real server's address, which
    // matches no socket: the read would time out instead.
    let err = s.recv(&mut buf).expect_err("a reply from nowhere");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
}

/// A sink on `ns` at `bind`: reads one connection to EOF, answers with the byte count.
fn byte_counting_sink(ns: &Netns, bind: SocketAddr) -> std::thread::JoinHandle<()> {
    let l = ns.enter(|| TcpListener::bind(bind)).unwrap().unwrap();
    std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut n = 0u64;
        let mut buf = vec![0u8; 65536];
        loop {
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => n += k as u64,
                Err(e) => panic!("sink: {e}"),
            }
        }
        c.write_all(n.to_string().as_bytes()).unwrap();
    })
}

/// Sends 2 MiB to `to` through the director and checks the sink behind the router counted
/// all of it.
fn upload_through_the_router(topo: &Topology, to: SocketAddr, sink: std::thread::JoinHandle<()>) {
    const N: usize = 2 << 20;
    let mut c = topo.client.tcp_connect(to, Duration::from_secs(5)).unwrap();
    c.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(&vec![0x5a; N]).expect("upload through the 1400-byte link");
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = String::new();
    c.read_to_string(&mut got).unwrap();
    sink.join().unwrap();
    assert_eq!(got, N.to_string(), "bytes the real server received");
}

#[test]
fn router_behind_the_director_teaches_the_client_the_path_mtu() {
    if !require_root() {
        return;
    }
    // rs1 is a router here: the real server is `back`, behind it on a link of 1400 bytes.
    // back's own interface keeps 1500, so it announces MSS 1460 and the client's full-sized
    // segments reach rs1, which answers them with fragmentation needed (MTU 1400) to the
    // client, quoting client -> 198.18.0.2:9000.
    let topo = Topology::builder().real_servers(2).build().unwrap();
    let back = Netns::new("back").unwrap();
    veth_pair(topo.rs(1), "inner", &back, "eth0").unwrap();
    let rs = topo.rs(1);
    rs.addr_add("inner", "198.18.0.1/24").unwrap();
    rs.set_mtu("inner", 1400).unwrap();
    rs.link_up("inner").unwrap();
    rs.sysctl("net.ipv4.ip_forward", "1").unwrap();
    back.addr_add("eth0", "198.18.0.2/24").unwrap();
    back.link_up("eth0").unwrap();
    back.link_up("lo").unwrap();
    back.default_route("198.18.0.1").unwrap();
    topo.director.ip(&["route", "add", "198.18.0.0/24", "via", &rs_ip(1).to_string()]).unwrap();
    let sink = byte_counting_sink(&back, "198.18.0.2:9000".parse().unwrap());

    let tmp = TempDir::new("icmp-pmtu").unwrap();
    let _lvsd = start(&topo, &tmp, "198.18.0.2", "tcp", 9000);
    upload_through_the_router(&topo, vip(9000), sink);
    // The client learnt the MTU from the router's error, relayed as coming from the VIP.
    let r = topo.client.run("ip", ["route", "get", &VIP.to_string()]).unwrap().stdout_str();
    assert!(r.contains("mtu 1400"), "client's route to the VIP: {r}");
}

/// An IPv6 NAT service on [VIP6]:`port` with the one real server `addr`.
fn start6(topo: &Topology, tmp: &TempDir, addr: Ipv6Addr, proto: &str, port: u16) -> Lvsd {
    let cfg = format!(
        "interfaces: [{DIRECTOR_CLIENT_IF}, {DIRECTOR_SERVER_IF}]\nconnection_table_size: 4096\nservices:\n\
         \x20 - protocol: {proto}\n    address: '{VIP6}'\n    port: {port}\n    scheduler: rr\n    real_servers:\n\
         \x20     - {{ address: '{addr}', forward: masq }}\n"
    );
    Lvsd::start(&topo.director, &tmp.write("lvs.yaml", cfg).unwrap()).unwrap()
}

#[test]
fn ipv6_udp_port_unreachable_from_a_real_server_refuses_the_client() {
    if !require_root() {
        return;
    }
    // Nothing listens on rs1's UDP port 53: its kernel answers with ICMPv6 port unreachable
    // from rs1, quoting client -> [rs1]:53, which only the relay turns into one the client's
    // socket matches (from the VIP, quoting [VIP]:53).
    let topo = Topology::builder().real_servers(2).build().unwrap();
    topo.enable_ipv6().unwrap();
    let tmp = TempDir::new("icmp6-udp").unwrap();
    let lvsd = start6(&topo, &tmp, rs_ip6(1), "udp", 53);
    let s = topo.client.udp_socket("[::]:0".parse().unwrap()).unwrap();
    s.connect(vip6(53)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.send(b"anyone?").unwrap();
    let mut buf = [0u8; 64];
    let err = s.recv(&mut buf).expect_err("a reply from nowhere");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    // The datagram and the error: one connection, both counted on it.
    let c = lvsd.counters().unwrap();
    assert!(c["conn_hit"] >= 1, "the error did not find its connection: {c:?}");
}

#[test]
fn ipv6_router_behind_the_director_teaches_the_client_the_path_mtu() {
    if !require_root() {
        return;
    }
    // The IPv6 twin of the test above: rs1 routes to `back` (2001:db8:3::2) over a link of
    // 1400 bytes and answers the client's full-sized segments with ICMPv6 packet too big
    // (MTU 1400), quoting client -> [2001:db8:3::2]:9000; the relay sends it on from the VIP.
    let topo = Topology::builder().real_servers(2).build().unwrap();
    topo.enable_ipv6().unwrap();
    let back = Netns::new("back").unwrap();
    back.sysctls(&[("net.ipv6.conf.all.disable_ipv6", "0"), ("net.ipv6.conf.default.disable_ipv6", "0")]).unwrap();
    veth_pair(topo.rs(1), "inner", &back, "eth0").unwrap();
    let rs = topo.rs(1);
    rs.ip(&["-6", "addr", "add", "2001:db8:3::1/64", "dev", "inner", "nodad"]).unwrap();
    rs.set_mtu("inner", 1400).unwrap();
    rs.link_up("inner").unwrap();
    rs.sysctls(&[("net.ipv6.conf.all.forwarding", "1")]).unwrap();
    back.ip(&["-6", "addr", "add", "2001:db8:3::2/64", "dev", "eth0", "nodad"]).unwrap();
    back.link_up("eth0").unwrap();
    back.link_up("lo").unwrap();
    back.ip(&["-6", "route", "add", "default", "via", "2001:db8:3::1"]).unwrap();
    topo.director.ip(&["-6", "route", "add", "2001:db8:3::/64", "via", &rs_ip6(1).to_string()]).unwrap();
    let back_ip: Ipv6Addr = "2001:db8:3::2".parse().unwrap();
    let sink = byte_counting_sink(&back, SocketAddr::new(back_ip.into(), 9000));

    let tmp = TempDir::new("icmp6-pmtu").unwrap();
    let _lvsd = start6(&topo, &tmp, back_ip, "tcp", 9000);
    upload_through_the_router(&topo, vip6(9000), sink);
    let r = topo.client.run("ip", ["-6", "route", "get", &VIP6.to_string()]).unwrap().stdout_str();
    assert!(r.contains("mtu 1400"), "client's route to the VIP: {r}");
}
