//! wrr, twos and one-packet scheduling (`--ops`) over real traffic: the sequences and
//! exclusions the kernel's schedulers produce, read from which real server answered.

use std::net::SocketAddr;
use std::time::Duration;

use lvs_tests::*;

fn bare_lvsd(topo: &Topology, tmp: &TempDir) -> Lvsd {
    let cfg = tmp
        .write("bare.yaml", &format!("interfaces: [{DIRECTOR_CLIENT_IF}, {DIRECTOR_SERVER_IF}]\nconnection_table_size: 4096\n"))
        .unwrap();
    Lvsd::start(&topo.director, &cfg).unwrap()
}

fn run(lvsd: &Lvsd, cmds: &[&str]) {
    for c in cmds {
        let args: Vec<&str> = c.split_whitespace().collect();
        lvsd.ipvsadm_ok(&args).unwrap_or_else(|e| panic!("ipvsadm {c}: {e:#}"));
    }
}

/// Which real server answers each of `n` fresh HTTP connections to the VIP's `port`.
fn http_sequence(topo: &Topology, port: u16, n: usize) -> Vec<String> {
    (0..n).map(|_| topo.client.http_get(vip(port), "/").unwrap().text()).collect()
}

fn names(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// The spec's sequences for weights 4, 3, 2 (rs1, rs2, rs3), over real TCP connections:
/// - added heaviest first (kernel order rs3 rs2 rs1): the mark is left at cw = 1, so a first
///   partial pass C B A, then cycles of 9;
/// - added lightest first (kernel order rs1 rs2 rs3): a pass at cw = 1, then the cycles;
/// - bound while the servers exist (`-E` from rr): cw starts at the highest weight,
///   A A B A B C A B C; `-E` with the same scheduler changes nothing (no re-init), an edit of a
///   server goes back to the head of the list.
#[test]
fn wrr_follows_the_kernel_sequences() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(3).with_servers().build().unwrap();
    let tmp = TempDir::new("wrr").unwrap();
    let lvsd = bare_lvsd(&topo, &tmp);
    run(
        &lvsd,
        &[
            "-A -t 203.0.113.10:80 -s wrr",
            "-a -t 203.0.113.10:80 -r 192.0.2.11:80 -m -w 4",
            "-a -t 203.0.113.10:80 -r 192.0.2.12:80 -m -w 3",
            "-a -t 203.0.113.10:80 -r 192.0.2.13:80 -m -w 2",
            "-A -t 203.0.113.10:81 -s wrr",
            "-a -t 203.0.113.10:81 -r 192.0.2.13:80 -m -w 2",
            "-a -t 203.0.113.10:81 -r 192.0.2.12:80 -m -w 3",
            "-a -t 203.0.113.10:81 -r 192.0.2.11:80 -m -w 4",
            "-A -t 203.0.113.10:82 -s rr",
            "-a -t 203.0.113.10:82 -r 192.0.2.13:80 -m -w 2",
            "-a -t 203.0.113.10:82 -r 192.0.2.12:80 -m -w 3",
            "-a -t 203.0.113.10:82 -r 192.0.2.11:80 -m -w 4",
            "-E -t 203.0.113.10:82 -s wrr",
        ],
    );
    let cycle_cba = "rs1 rs2 rs1 rs3 rs2 rs1 rs3 rs2 rs1";
    assert_eq!(http_sequence(&topo, 80, 21), names(&format!("rs3 rs2 rs1 {cycle_cba} {cycle_cba}")));
    let cycle_abc = "rs1 rs1 rs2 rs1 rs2 rs3 rs1 rs2 rs3";
    assert_eq!(http_sequence(&topo, 81, 21), names(&format!("rs1 rs2 rs3 {cycle_abc} {cycle_abc}")));
    assert_eq!(http_sequence(&topo, 82, 5), names("rs1 rs1 rs2 rs1 rs2"));
    run(&lvsd, &["-E -t 203.0.113.10:82 -s wrr"]);
    assert_eq!(http_sequence(&topo, 82, 4), names("rs3 rs1 rs2 rs3"));
    // Edit (same weight): the mark goes back to the head, cw (1) is kept: rs1 rs2 rs3 again.
    run(&lvsd, &["-e -t 203.0.113.10:82 -r 192.0.2.12:80 -m -w 3"]);
    assert_eq!(http_sequence(&topo, 82, 4), names("rs1 rs2 rs3 rs1"));
    // Weight 0 on rs1 of the first service: never chosen again, the others keep their share.
    run(&lvsd, &["-e -t 203.0.113.10:80 -r 192.0.2.11:80 -m -w 0"]);
    let seq = http_sequence(&topo, 80, 10);
    assert!(!seq.contains(&"rs1".to_string()), "{seq:?}");
    assert_eq!(seq, names("rs3 rs2 rs2 rs3 rs2 rs3 rs2 rs2 rs3 rs2"));
    // Every weight 0: no destination, the client is refused (ICMP port unreachable).
    run(
        &lvsd,
        &["-e -t 203.0.113.10:80 -r 192.0.2.12:80 -m -w 0", "-e -t 203.0.113.10:80 -r 192.0.2.13:80 -m -w 0"],
    );
    assert!(topo.client.tcp_connect(vip(80), Duration::from_secs(2)).is_err());
}

/// twos: random draws, so statistical properties and exclusions only. Weight 0 is never
/// chosen; a server over its u-threshold gets exactly that many connections and then none
/// (its connections stay counted while in TIME_WAIT, so it stays overloaded); between the two
/// left, the heavier gets clearly more.
#[test]
fn twos_excludes_and_weighs() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(4).with_servers().build().unwrap();
    let tmp = TempDir::new("twos").unwrap();
    let lvsd = bare_lvsd(&topo, &tmp);
    run(
        &lvsd,
        &[
            "-A -t 203.0.113.10:80 -s twos",
            "-a -t 203.0.113.10:80 -r 192.0.2.11:80 -m -w 1",
            "-a -t 203.0.113.10:80 -r 192.0.2.12:80 -m -w 0",
            "-a -t 203.0.113.10:80 -r 192.0.2.13:80 -m -w 4",
            "-a -t 203.0.113.10:80 -r 192.0.2.14:80 -m -w 50 -x 3",
        ],
    );
    let seq = http_sequence(&topo, 80, 200);
    let count = |n: &str| seq.iter().filter(|s| *s == n).count();
    let (rs1, rs2, rs3, rs4) = (count("rs1"), count("rs2"), count("rs3"), count("rs4"));
    eprintln!("twos over 200 connections: rs1 {rs1}, rs2 {rs2}, rs3 {rs3}, rs4 {rs4}");
    assert_eq!(rs1 + rs2 + rs3 + rs4, 200, "{seq:?}");
    assert_eq!(rs2, 0, "weight 0 chosen: {seq:?}");
    assert_eq!(rs4, 3, "u-threshold 3: {seq:?}");
    // Weights 1:4. The least loaded per weight of two draws: the shares settle near 1:4
    // (about 39 and 158); 2x leaves a wide margin for chance.
    assert!(rs1 > 0 && rs3 > 2 * rs1, "rs1 {rs1} rs3 {rs3}");
    let listing = lvsd.ipvsadm_ok(&["-L", "-n"]).unwrap();
    assert!(listing.contains("TCP  203.0.113.10:80 twos\n"), "{listing}");
}

/// One datagram on `sock` to `dst`; the reply's payload and the address it came from.
fn udp_exchange(sock: &std::net::UdpSocket, dst: SocketAddr, payload: &[u8]) -> (String, SocketAddr) {
    sock.send_to(payload, dst).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = sock.recv_from(&mut buf).expect("UDP reply");
    (String::from_utf8_lossy(&buf[..n]).into_owned(), from)
}

/// `--ops`: datagrams from one client socket are each scheduled (rr alternates, where without
/// it they all follow the first one's connection), no connection entry is kept (`-L -c` is
/// empty, InActConn stays 0), and, as in the kernel, whose one-packet connections are never
/// hashed, the real server's reply goes back unchanged, from its own address.
#[test]
fn one_packet_scheduling_spreads_datagrams() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(2).with_servers().build().unwrap();
    let tmp = TempDir::new("ops").unwrap();
    let lvsd = bare_lvsd(&topo, &tmp);
    // ipvsadm refuses -o on a TCP service, as ipvsadm 1.31 does.
    let out = lvsd.ipvsadm(&["-A", "-t", "203.0.113.10:80", "-s", "rr", "-o"]).unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(out.stderr_str(), "One-Packet Scheduling is only for UDP virtual services\n");

    run(
        &lvsd,
        &[
            "-A -u 203.0.113.10:53 -s rr -o",
            "-a -u 203.0.113.10:53 -r 192.0.2.11:53 -m",
            "-a -u 203.0.113.10:53 -r 192.0.2.12:53 -m",
        ],
    );
    let sock = topo.client.udp_socket("0.0.0.0:0".parse().unwrap()).unwrap();
    let mut seen = Vec::new();
    for i in 0..6 {
        let (reply, from) = udp_exchange(&sock, vip(53), format!("d{i}").as_bytes());
        let (name, payload) = reply.split_once(':').unwrap();
        assert_eq!(payload, format!("d{i}"));
        let rs = if name == "rs1" { 1 } else { 2 };
        assert_eq!(from, sa(rs_ip(rs), 53), "reply to datagram {i} from {from}");
        seen.push(name.to_string());
    }
    assert_eq!(seen, names("rs2 rs1 rs2 rs1 rs2 rs1"));
    assert_eq!(topo.rs_udp_hits(), [3, 3]);
    let dest = |a: &str, inact: u32| format!("  -> {:<28} {:<7} {:<6} {:<10} {:<10}\n", a, "Masq", 1, 0, inact);
    let header = "IP Virtual Server version 1.2.1 (size=4096)\n\
                  Prot LocalAddress:Port Scheduler Flags\n\
                  \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n";
    assert_eq!(
        lvsd.ipvsadm_ok(&["-L", "-n"]).unwrap(),
        format!("{header}UDP  203.0.113.10:53 rr ops\n{}{}", dest("192.0.2.11:53", 0), dest("192.0.2.12:53", 0))
    );
    let conns = lvsd.ipvsadm_ok(&["-L", "-n", "-c"]).unwrap();
    assert_eq!(conns.lines().count(), 2, "no connection entry expected (2 title lines):\n{conns}");
    assert_eq!(lvsd.ipvsadm_ok(&["-S", "-n"]).unwrap().lines().next().unwrap(), "-A -u 203.0.113.10:53 -s rr -o");

    // Without -o the same socket's datagrams stay on one connection, shown in -L -c and
    // counted in InActConn; the replies come back from the VIP.
    run(&lvsd, &["-E -u 203.0.113.10:53 -s rr"]);
    let mut seen = Vec::new();
    for i in 0..3 {
        let (reply, from) = udp_exchange(&sock, vip(53), b"x");
        assert_eq!(from, vip(53), "reply {i}");
        seen.push(reply);
    }
    assert_eq!(seen, ["rs2:x", "rs2:x", "rs2:x"]);
    assert_eq!(
        lvsd.ipvsadm_ok(&["-L", "-n"]).unwrap(),
        format!("{header}UDP  203.0.113.10:53 rr\n{}{}", dest("192.0.2.11:53", 0), dest("192.0.2.12:53", 1))
    );
    let conns = lvsd.ipvsadm_ok(&["-L", "-n", "-c"]).unwrap();
    assert_eq!(conns.lines().count(), 3, "{conns}");
    assert!(conns.contains("UDP ") && conns.contains("192.0.2.12:53"), "{conns}");
}
