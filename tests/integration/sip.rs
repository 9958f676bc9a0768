//! The sip persistence engine (`--pe sip`) with real SIP requests over UDP through a NAT
//! director: the template is keyed on the Call-ID too, so one call from one client network
//! reaches one real server whatever its source port, and other calls are scheduled afresh.
//! The kernel-compared listing and saving of such a service is the `listings` oracle
//! scenario; the scan itself has packet fixtures (lvs-userspace/tests/packet_fixtures.rs).

use std::{net::SocketAddr, time::Duration};

use lvs_tests::*;

fn config() -> String {
    format!(
        "interfaces: [{DIRECTOR_CLIENT_IF}, {DIRECTOR_SERVER_IF}]\n\
         connection_table_size: 4096\n\
         services:\n\
         \x20 - protocol: udp\n    address: {VIP}\n    port: {RS_UDP_PORT}\n    scheduler: rr\n\
         \x20   persistent: 120\n    persistence_engine: sip\n    real_servers:\n\
         \x20     - {{ address: {}, forward: masq }}\n\
         \x20     - {{ address: {}, forward: masq }}\n\
         \x20     - {{ address: {}, forward: masq }}\n",
        rs_ip(1),
        rs_ip(2),
        rs_ip(3),
    )
}

/// A SIP INVITE whose Call-ID line is `header` (an empty one: no Call-ID).
fn invite(header: &str, sport: u16) -> Vec<u8> {
    format!(
        "INVITE sip:bob@{VIP} SIP/2.0\r\nVia: SIP/2.0/UDP {CLIENT_IP}:{sport};branch=z9hG4bK776asdhds\r\n\
         Max-Forwards: 70\r\nFrom: Alice <sip:alice@{CLIENT_IP}>;tag=1928301774\r\nTo: Bob <sip:bob@{VIP}>\r\n\
         {header}\r\nCSeq: 314159 INVITE\r\nContact: <sip:alice@{CLIENT_IP}:{sport}>\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Sends `payload` from the client's port `sport`; the real server that echoed it, or `None`
/// when nothing came back (one retry: a retransmission follows the same connection).
fn ask(topo: &Topology, sport: u16, payload: &[u8]) -> Option<String> {
    let sock = topo.client.udp_socket(SocketAddr::from((CLIENT_IP, sport))).unwrap();
    for _ in 0..2 {
        if let Ok(reply) = lvs_tests::client::udp_request_on(&sock, vip(RS_UDP_PORT), payload, Duration::from_millis(700)) {
            let colon = reply.iter().position(|&b| b == b':').expect("name:payload");
            assert_eq!(&reply[colon + 1..], payload, "the request is echoed byte for byte");
            return Some(String::from_utf8(reply[..colon].to_vec()).unwrap());
        }
    }
    None
}

#[test]
fn one_call_one_real_server_whatever_the_client_port() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(3).with_servers().build().unwrap();
    let tmp = TempDir::new("pe-sip").unwrap();
    let cfg = tmp.write("lvs.yaml", &config()).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();

    let (a, b, c) = ("a84b4c76e66710@pc33.example.com", "f81d4fae-7dec-11d0-a765-00a0c91e6bf6", "3848276298220188511@atlanta.example.com");
    // Call A from four client ports: one real server.
    let sa = ask(&topo, 42001, &invite(&format!("Call-ID: {a}"), 42001)).expect("call A answered");
    for sport in 42002..42005 {
        assert_eq!(ask(&topo, sport, &invite(&format!("Call-ID: {a}"), sport)).as_deref(), Some(sa.as_str()), "call A from port {sport}");
    }
    // Calls B and C: new templates, scheduled by rr onto the two other servers (a plain
    // persistent service would have kept this client on A's server).
    let sb = ask(&topo, 42011, &invite(&format!("Call-ID: {b}"), 42011)).expect("call B answered");
    let sc = ask(&topo, 42021, &invite(&format!("call-id:{c}"), 42021)).expect("call C answered");
    let mut all = vec![sa.clone(), sb.clone(), sc.clone()];
    all.sort();
    assert_eq!(all, ["rs1", "rs2", "rs3"], "three calls, three servers by rr");
    // The compact form names the same call.
    assert_eq!(ask(&topo, 42012, &invite(&format!("i: {b}"), 42012)).as_deref(), Some(sb.as_str()), "i: form of call B");
    assert_eq!(ask(&topo, 42005, &invite(&format!("I:\t{a}"), 42005)).as_deref(), Some(sa.as_str()), "I: form of call A");
    // No Call-ID: dropped, as the kernel drops it.
    assert_eq!(ask(&topo, 42031, &invite("Subject: lunch", 42031)), None);
    let counters = lvsd.counters().unwrap();
    assert_eq!(counters.get("drop_sip_no_callid"), Some(&2), "the datagram and its retry: {counters:?}");
    // Eight requests answered, one per client port (so one connection each).
    assert_eq!(topo.rs_udp_hits().iter().sum::<u64>(), 8);

    // The templates carry the engine's name and the Call-ID (-L -c --persistent-conn).
    let list = lvsd.ipvsadm_ok(&["-L", "-n", "-c", "--persistent-conn"]).unwrap();
    let rs_addr = |name: &str| rs_ip(name.trim_start_matches("rs").parse().unwrap());
    for (id, server) in [(a, &sa), (b, &sb), (c, &sc)] {
        let want = [
            "UDP".to_string(),
            format!("{CLIENT_IP}:0"),
            format!("{VIP}:53"),
            format!("{}:53", rs_addr(server)),
            "sip".to_string(),
            id.to_string(),
        ];
        let found = list.lines().filter(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            // pro expire state source virtual destination pe-name pe-data
            w.len() == 8 && [w[0], w[3], w[4], w[5], w[6], w[7]] == want.each_ref().map(String::as_str)
        });
        assert_eq!(found.count(), 1, "template of {id} on {server}:\n{list}");
    }
    assert_eq!(list.lines().filter(|l| l.contains(" sip ")).count(), 3, "{list}");
    // Without --persistent-conn, the template lines have no engine columns.
    let plain = lvsd.ipvsadm_ok(&["-L", "-n", "-c"]).unwrap();
    assert!(!plain.contains(" sip "), "{plain}");

    // The service line and its saved form.
    let l = lvsd.ipvsadm_ok(&["-L", "-n"]).unwrap();
    assert!(l.contains(&format!("UDP  {VIP}:53 rr persistent 120 pe sip\n")), "{l}");
    let s = lvsd.ipvsadm_ok(&["-S", "-n"]).unwrap();
    assert!(s.contains(&format!("-A -u {VIP}:53 -s rr -p 120 --pe sip\n")), "{s}");
    // -E without --pe removes the engine, as the kernel does.
    lvsd.ipvsadm_ok(&["-E", "-u", &format!("{VIP}:53"), "-s", "rr", "-p", "120"]).unwrap();
    let s = lvsd.ipvsadm_ok(&["-S", "-n"]).unwrap();
    assert!(s.contains(&format!("-A -u {VIP}:53 -s rr -p 120\n")), "{s}");
    // Now a datagram without Call-ID is scheduled by client address (its existing template).
    assert!(ask(&topo, 42041, &invite("Subject: lunch", 42041)).is_some(), "plain persistence again");
}
