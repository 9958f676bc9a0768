//! NAT (masquerading) director end to end: real clients and servers in namespaces, lvsd with
//! the XDP dataplane on the director.

use std::{
    io::BufReader,
    net::TcpStream,
    time::Duration,
};

use lvs_tests::*;

/// Two services on the VIP, real servers added rs1 then rs2 (kernel order: rs2 first).
fn nat_config(topo: &Topology) -> String {
    let mut servers = String::new();
    for i in 1..=topo.n() {
        servers.push_str(&format!("      - {{ address: {}, forward: masq }}\n", rs_ip(i)));
    }
    format!(
        "interfaces: [{DIRECTOR_CLIENT_IF}, {DIRECTOR_SERVER_IF}]\n\
         connection_table_size: 4096\n\
         services:\n\
         \x20 - protocol: tcp\n    address: {VIP}\n    port: 80\n    scheduler: rr\n    real_servers:\n{servers}\
         \x20 - protocol: udp\n    address: {VIP}\n    port: 53\n    scheduler: rr\n    real_servers:\n{servers}"
    )
}

fn start(topo: &Topology, tmp: &TempDir, config: &str) -> Lvsd {
    let cfg = tmp.write("lvs.yaml", config).unwrap();
    Lvsd::start(&topo.director, &cfg).unwrap()
}

/// A second lvsd on the pins and socket of `first` (a restart or an upgrade).
fn restart_on(topo: &Topology, first: &Lvsd, cfg: &std::path::Path, tag: &str) -> Lvsd {
    Lvsd::start_at(&topo.director, cfg, first.pin_dir(), first.socket(), &[], TempDir::new(tag).unwrap()).unwrap()
}

/// Runs lvsd in the director namespace on `cfg` with its own pin dir, expecting it to refuse
/// to start; returns its output and whether it left anything in `pin_dir`.
fn lvsd_refusing(topo: &Topology, tmp: &TempDir, cfg: &std::path::Path, tag: &str) -> (CmdOutput, bool) {
    Lvsd::refusing(&topo.director, cfg, tmp, tag).unwrap()
}

/// The rs name in the body of `GET /` (the servers answer with their name).
fn who(topo: &Topology) -> String {
    topo.client.http_get(vip(80), "/").unwrap().text()
}

/// The exact `ipvsadm -L -n` text for the NAT config with the given InActConn counts.
fn listing(tcp_inact: [u32; 2], udp_inact: [u32; 2]) -> String {
    let line = |ip: &str, port: u16, inact: u32| {
        format!("  -> {:<28} {:<7} {:<6} {:<10} {:<10}\n", format!("{ip}:{port}"), "Masq", 1, 0, inact)
    };
    format!(
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port Scheduler Flags\n\
         \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
         TCP  203.0.113.10:80 rr\n{}{}\
         UDP  203.0.113.10:53 rr\n{}{}",
        line("192.0.2.11", 80, tcp_inact[0]),
        line("192.0.2.12", 80, tcp_inact[1]),
        line("192.0.2.11", 53, udp_inact[0]),
        line("192.0.2.12", 53, udp_inact[1]),
    )
}

#[test]
fn rr_alternates_exactly_and_listing_counts_connections() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(2).with_servers().build().unwrap();
    let tmp = TempDir::new("nat-rr").unwrap();
    let lvsd = start(&topo, &tmp, &nat_config(&topo));

    const N: usize = 10;
    let seq: Vec<String> = (0..N).map(|_| who(&topo)).collect();
    // Kernel order is newest first, so rr starts with rs2.
    let want: Vec<String> = (0..N).map(|i| rs_name(if i % 2 == 0 { 2 } else { 1 })).collect();
    assert_eq!(seq, want, "requests must alternate rs2, rs1, ...");
    assert_eq!(topo.rs_http_hits(), vec![N as u64 / 2, N as u64 / 2]);

    // Masquerading keeps the client's address; the real server answers through the director.
    let peer = topo.client.http_get(vip(80), "/peer").unwrap().text();
    assert!(peer.starts_with(&format!("{CLIENT_IP}:")), "real server saw {peer}");

    // 11 closed connections, 6 on rs2 and 5 on rs1, all in closing states (InActConn) once
    // the FIN exchanges are through.
    let want = listing([5, 6], [0, 0]);
    let mut last = String::new();
    let ok = wait_for("listing with closed connections", Duration::from_secs(5), || {
        last = lvsd.ipvsadm_ok(&["-L", "-n"])?;
        Ok((last == want).then_some(()))
    });
    assert!(ok.is_ok(), "ipvsadm -L -n:\n{last}\nwant:\n{want}");

    let c = lvsd.counters().unwrap();
    assert_eq!(c["new_conn"], N as u64 + 1);
    assert!(c["redirect"] + c["pass_fib_fallback"] >= 4 * (N as u64 + 1), "{c:?}");
    assert_eq!(c["drop_no_dest"], 0);
}

#[test]
fn long_transfer_arrives_intact_through_nat() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(2).with_servers().build().unwrap();
    let tmp = TempDir::new("nat-big").unwrap();
    let lvsd = start(&topo, &tmp, &nat_config(&topo));
    const N: u64 = 12 * 1024 * 1024 + 13;
    let r = topo.client.http_get(vip(80), &format!("/bytes/{N}")).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len() as u64, N);
    assert!(r.body == expected_bytes(N), "body differs from the expected pattern");
    // The bulk went through the XDP fast path, not the kernel fallback.
    let c = lvsd.counters().unwrap();
    assert!(c["redirect"] > 1000, "{c:?}");
}

#[test]
fn udp_request_and_reply_through_nat() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(2).with_servers().build().unwrap();
    let tmp = TempDir::new("nat-udp").unwrap();
    let _lvsd = start(&topo, &tmp, &nat_config(&topo));
    for i in 0..4 {
        // A fresh source port each time: a new connection, so rr alternates.
        let sock = topo.client.udp_socket("0.0.0.0:0".parse().unwrap()).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        sock.send_to(format!("q{i}").as_bytes(), vip(53)).unwrap();
        let mut buf = [0u8; 1500];
        let (n, from) = sock.recv_from(&mut buf).unwrap();
        let expect = rs_name(if i % 2 == 0 { 2 } else { 1 });
        assert_eq!(String::from_utf8_lossy(&buf[..n]), format!("{expect}:q{i}"));
        // The reply must come from the VIP, or a connected client would never see it.
        assert_eq!(from, vip(53), "reply source not rewritten");
        // Same socket again: same connection, same server.
        sock.send_to(b"again", vip(53)).unwrap();
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        assert_eq!(String::from_utf8_lossy(&buf[..n]), format!("{expect}:again"));
    }
    assert_eq!(topo.rs_udp_hits(), vec![4, 4]);
}

#[test]
fn traffic_not_for_a_vip_is_untouched() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(2).with_servers().build().unwrap();
    let tmp = TempDir::new("nat-pass").unwrap();
    let lvsd = start(&topo, &tmp, &nat_config(&topo));
    // The director's own service.
    let r = topo.client.curl(&format!("http://{DIRECTOR_CLIENT_IP}:{DIRECTOR_HTTP_PORT}/"), &[]).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "director"));
    // A real server addressed directly is routed by the kernel and sees the client.
    let r = topo.client.http_get(sa(rs_ip(1), RS_HTTP_PORT), "/peer").unwrap();
    assert!(r.text().starts_with(&format!("{CLIENT_IP}:")));
    // A port on the VIP without a service reaches the director's stack: nothing listens.
    let refused = topo.client.tcp_connect(vip(81), Duration::from_secs(2)).unwrap_err();
    assert!(format!("{refused:#}").contains("refused"), "{refused:#}");
    let c = lvsd.counters().unwrap();
    assert!(c["pass_no_service"] > 0, "{c:?}");
    assert_eq!(c["new_conn"], 0, "{c:?}");
}

/// One request on a keep-alive connection; returns the body.
fn keepalive_get(s: &mut BufReader<TcpStream>, path: &str) -> String {
    lvs_tests::client::keepalive_get(s, path).unwrap()
}

#[test]
fn sigkill_keeps_forwarding_and_restart_picks_up_pinned_state() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(2).with_servers().build().unwrap();
    let tmp = TempDir::new("nat-kill").unwrap();
    let cfg = tmp.write("lvs.yaml", &nat_config(&topo)).unwrap();
    let mut first = Lvsd::start(&topo.director, &cfg).unwrap();

    let conn = topo.client.tcp_connect(vip(80), Duration::from_secs(3)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut conn = BufReader::new(conn);
    let held_by = keepalive_get(&mut conn, "/");
    assert_eq!(held_by, "rs2");

    first.process().signal(libc::SIGKILL).unwrap();
    first.process().wait_timeout(Duration::from_secs(5)).unwrap().expect("lvsd died");

    // Nothing is left to manage the dataplane, yet the open connection keeps its server and
    // new connections keep alternating.
    assert_eq!(keepalive_get(&mut conn, "/"), "rs2");
    assert_eq!(who(&topo), "rs1");
    assert_eq!(who(&topo), "rs2");

    // A new lvsd on the same pins recovers the services and the connection table, without a
    // config that names any service.
    let bare = tmp.write("bare.yaml", &format!("interfaces: [{DIRECTOR_CLIENT_IF}, {DIRECTOR_SERVER_IF}]\n")).unwrap();
    let second = restart_on(&topo, &first, &bare, "nat-kill2");
    let listing = second.ipvsadm_ok(&["-L", "-n"]).unwrap();
    assert!(listing.contains("TCP  203.0.113.10:80 rr\n"), "{listing}");
    // The held connection is ESTABLISHED on rs2: one ActiveConn.
    let rs2_line = format!("  -> {:<28} {:<7} {:<6} {:<10} ", "192.0.2.12:80", "Masq", 1, 1);
    assert!(listing.contains(&rs2_line), "rs2 should show 1 active connection:\n{listing}");
    assert_eq!(keepalive_get(&mut conn, "/"), "rs2");
    // rr continues from where the dataplane left it.
    assert_eq!(who(&topo), "rs1");
    drop(conn);
    drop(second);
    drop(first);
}

#[test]
fn sigterm_detaches_and_unpins() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(2).with_servers().build().unwrap();
    let tmp = TempDir::new("nat-term").unwrap();
    let mut lvsd = start(&topo, &tmp, &nat_config(&topo));
    assert_eq!(who(&topo), "rs2");
    let status = lvsd.stop().unwrap();
    assert!(status.success(), "lvsd exit status {status}");
    lvsd.wait_unpinned(Duration::from_secs(5)).unwrap();
    for dev in [DIRECTOR_CLIENT_IF, DIRECTOR_SERVER_IF] {
        assert!(!topo.director.xdp_attached(dev).unwrap(), "{dev} still has XDP");
    }
    // Without the dataplane the VIP is just the director's local address, with nothing on
    // port 80: the director's own stack refuses the connection.
    let refused = topo.client.tcp_connect(vip(80), Duration::from_secs(2)).unwrap_err();
    assert!(format!("{refused:#}").contains("refused"), "{refused:#}");
}

#[test]
fn bad_config_is_refused_with_location_and_nothing_is_attached() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(2).build().unwrap();
    let tmp = TempDir::new("nat-bad").unwrap();
    let cfg = tmp
        .write(
            "bad.yaml",
            &format!(
                "interfaces: [{DIRECTOR_CLIENT_IF}]\nservices:\n  - protocol: tcp\n    address: 203.0.113.300\n    port: 80\n"
            ),
        )
        .unwrap();
    let (out, pins_left) = lvsd_refusing(&topo, &tmp, &cfg, "bad");
    let err = out.stderr_str();
    assert!(err.contains(&format!("{}:4:", cfg.display())), "no file:line in: {err}");
    assert!(!pins_left, "pins created for a refused config");
    assert!(!topo.director.xdp_attached(DIRECTOR_CLIENT_IF).unwrap());
}

#[test]
fn keep_dataplane_survives_sigterm_until_a_plain_stop() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(2).with_servers().build().unwrap();
    let tmp = TempDir::new("nat-keep").unwrap();
    let cfg = tmp.write("lvs.yaml", &nat_config(&topo)).unwrap();
    let mut first = Lvsd::start_with(&topo.director, &cfg, &["--keep-dataplane"]).unwrap();
    assert_eq!(who(&topo), "rs2");
    assert!(first.stop().unwrap().success());
    assert!(first.layout_dir().join("maps/CONNS").exists(), "maps must stay pinned");
    assert!(first.layout_dir().join("links/to-clients").exists(), "links must stay pinned");
    // No lvsd at all, and the director still balances.
    assert_eq!(who(&topo), "rs1");
    assert_eq!(who(&topo), "rs2");

    // A plain restart and stop takes the dataplane down.
    let mut second = restart_on(&topo, &first, &cfg, "nat-keep2");
    assert_eq!(who(&topo), "rs1");
    assert!(second.stop().unwrap().success());
    second.wait_unpinned(Duration::from_secs(5)).unwrap();
    assert!(!topo.director.xdp_attached(DIRECTOR_CLIENT_IF).unwrap());
    drop(second);
    drop(first);
}

#[test]
fn generic_xdp_mode_balances_too() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(2).with_servers().build().unwrap();
    let tmp = TempDir::new("nat-generic").unwrap();
    let _lvsd = start(&topo, &tmp, &nat_config(&topo).replacen("\n", "\nxdp_mode: generic\n", 1));
    let link = topo.director.ip(&["link", "show", "dev", DIRECTOR_CLIENT_IF]).unwrap().stdout_str();
    assert!(link.contains("xdpgeneric"), "{link}");
    let names: Vec<String> = (0..4).map(|_| who(&topo)).collect();
    assert_eq!(names, ["rs2", "rs1", "rs2", "rs1"]);
    const N: u64 = 3 * 1024 * 1024;
    let r = topo.client.http_get(vip(80), &format!("/bytes/{N}")).unwrap();
    assert!(r.body == expected_bytes(N));
    let reply = topo.client.udp_request(vip(53), b"g", Duration::from_secs(3)).unwrap();
    assert_eq!(reply, b"rs2:g");
}

#[test]
fn failed_attach_on_first_start_leaves_nothing_behind() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(2).build().unwrap();
    let tmp = TempDir::new("nat-noif").unwrap();
    // The first interface exists and gets attached; the second does not exist.
    let cfg = tmp.write("lvs.yaml", &format!("interfaces: [{DIRECTOR_CLIENT_IF}, no-such-if]\n")).unwrap();
    let (out, pins_left) = lvsd_refusing(&topo, &tmp, &cfg, "noif");
    assert!(out.stderr_str().contains("no-such-if"), "{}", out.stderr_str());
    assert!(!topo.director.xdp_attached(DIRECTOR_CLIENT_IF).unwrap(), "left attached");
    assert!(!pins_left, "pins left behind");
}

/// Entries in a pinned map, counted by bpftool (independent of lvsd's own code).
fn pinned_entries(lvsd: &Lvsd, map: &str) -> usize {
    let path = lvsd.layout_dir().join("maps").join(map);
    let out = std::process::Command::new("bpftool").args(["-j", "map", "dump", "pinned"]).arg(&path).output().unwrap();
    assert!(out.status.success(), "bpftool: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).matches("\"key\"").count()
}

#[test]
fn expired_connections_stop_counting_and_are_reclaimed() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(2).with_servers().build().unwrap();
    let tmp = TempDir::new("nat-expire").unwrap();
    let short = "timeouts: { time_wait: 3, close: 3, fin_wait: 3, close_wait: 3, last_ack: 3, udp: 3 }\n";
    let lvsd = start(&topo, &tmp, &nat_config(&topo).replacen('\n', &format!("\n{short}"), 1));
    for _ in 0..4 {
        who(&topo);
    }
    let sock = topo.client.udp_socket("0.0.0.0:0".parse().unwrap()).unwrap();
    let first = lvs_tests::client::udp_request_on(&sock, vip(53), b"a", Duration::from_secs(3)).unwrap();
    assert_eq!(first, b"rs2:a");
    assert_eq!(pinned_entries(&lvsd, "CONNS"), 5);
    assert_eq!(pinned_entries(&lvsd, "CONNS_OUT"), 5);
    // Two closed TCP connections per server, one UDP connection on rs2: all InActConn.
    let busy = listing([2, 2], [0, 1]);
    wait_for("closing handshakes", Duration::from_secs(2), || {
        Ok((lvsd.ipvsadm_ok(&["-L", "-n"])? == busy).then_some(()))
    })
    .unwrap();

    // After the short timeouts the counts return to zero and both tables are empty again.
    let want = listing([0, 0], [0, 0]);
    wait_for("connections to expire", Duration::from_secs(8), || {
        let l = lvsd.ipvsadm_ok(&["-L", "-n"])?;
        Ok((l == want && pinned_entries(&lvsd, "CONNS") == 0 && pinned_entries(&lvsd, "CONNS_OUT") == 0).then_some(()))
    })
    .unwrap();
    // The same UDP socket is a new connection now: rr moves on to rs1.
    let again = lvs_tests::client::udp_request_on(&sock, vip(53), b"b", Duration::from_secs(3)).unwrap();
    assert_eq!(again, b"rs1:b");
}

#[test]
fn sighup_applies_the_edited_file_and_keeps_ipvsadm_services() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(2).with_servers().build().unwrap();
    let tmp = TempDir::new("nat-hup").unwrap();
    let cfg = tmp.write("lvs.yaml", &nat_config(&topo)).unwrap();
    let mut lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    lvsd.ipvsadm_ok(&["-A", "-t", "203.0.113.10:8080", "-s", "rr"]).unwrap();
    assert_eq!(who(&topo), "rs2");

    // The file now has only the TCP service, with rs1 alone; rs2 is gone from it.
    let edited = format!(
        "interfaces: [{DIRECTOR_CLIENT_IF}, {DIRECTOR_SERVER_IF}]\nconnection_table_size: 4096\nservices:\n  - {{ protocol: tcp, address: {VIP}, port: 80, scheduler: rr, real_servers: [{{ address: {}, forward: masq }}] }}\n",
        rs_ip(1)
    );
    std::fs::write(&cfg, edited).unwrap();
    lvsd.process().signal(libc::SIGHUP).unwrap();
    let want = format!(
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port Scheduler Flags\n\
         \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
         TCP  203.0.113.10:80 rr\n  -> {:<28} Masq    1      0          0         \n\
         TCP  203.0.113.10:8080 rr\n",
        "192.0.2.11:80"
    );
    let mut last = String::new();
    let done = wait_for("reload", Duration::from_secs(5), || {
        last = lvsd.ipvsadm_ok(&["-L", "-n"])?;
        Ok((last == want).then_some(()))
    });
    assert!(done.is_ok(), "after SIGHUP:\n{last}\nwant:\n{want}");
    for _ in 0..3 {
        assert_eq!(who(&topo), "rs1");
    }
    let settled = want.replace("0          0         \n", "0          3         \n");
    wait_for("closed connections counted", Duration::from_secs(5), || {
        Ok((lvsd.ipvsadm_ok(&["-L", "-n"])? == settled).then_some(()))
    })
    .unwrap();

    // A broken edit is refused and changes nothing.
    std::fs::write(&cfg, "interfaces: [to-clients]\nservices: [ { protocol: icmp } ]\n").unwrap();
    lvsd.process().signal(libc::SIGHUP).unwrap();
    wait_for("refusal logged", Duration::from_secs(5), || Ok(lvsd.stderr().contains("reload refused").then_some(())))
        .unwrap();
    assert_eq!(lvsd.ipvsadm_ok(&["-L", "-n"]).unwrap(), settled);
}

#[test]
fn pins_of_another_map_layout_are_refused_or_taken_over_explicitly() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(2).with_servers().build().unwrap();
    let tmp = TempDir::new("nat-abi").unwrap();
    let cfg = tmp.write("lvs.yaml", &nat_config(&topo)).unwrap();
    let mut first = start(&topo, &tmp, &nat_config(&topo));
    let mut conn = BufReader::new(topo.client.tcp_connect(vip(80), Duration::from_secs(5)).unwrap());
    conn.get_ref().set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    assert_eq!(keepalive_get(&mut conn, "/"), "rs2");
    first.process().signal(libc::SIGKILL).unwrap();
    first.process().wait_timeout(Duration::from_secs(5)).unwrap().expect("lvsd died");

    // What an older lvsd would have left: the same dataplane under another layout version.
    let ours = first.layout_dir();
    let old = first.pin_dir().join("v1");
    std::fs::rename(&ours, &old).unwrap();

    // Refused, naming the directory, and the old dataplane goes on forwarding untouched.
    let run = |extra: &[&str]| {
        let mut args = vec!["--config", cfg.to_str().unwrap(), "--pin-dir", first.pin_dir().to_str().unwrap()];
        args.extend_from_slice(extra);
        let sock = tmp.join("second.sock");
        args.extend_from_slice(&["--socket", sock.to_str().unwrap()]);
        topo.director.output_timeout(lvs_bin("lvsd").to_str().unwrap(), args, Duration::from_secs(5)).unwrap()
    };
    let out = run(&[]);
    assert!(!out.success());
    let err = out.stderr_str();
    assert!(
        err.contains(&format!("{} holds a dataplane pinned by an lvsd with another map layout", old.display())),
        "{err}"
    );
    assert!(old.join("maps/CONNS").exists() && !ours.exists(), "the refusal touched the pins");
    assert_eq!(keepalive_get(&mut conn, "/"), "rs2");
    assert_eq!(who(&topo), "rs1");

    // Taken over on request: the interfaces keep a program throughout, the old state is gone,
    // so the held connection (unknown to the new tables) breaks while new ones are balanced.
    let second = Lvsd::start_at(
        &topo.director,
        &cfg,
        first.pin_dir(),
        &tmp.join("third.sock"),
        &["--replace-incompatible-dataplane"],
        TempDir::new("nat-abi2").unwrap(),
    )
    .unwrap();
    assert!(!old.exists(), "the old layout is still pinned");
    assert!(ours.join("links/to-clients").exists() && ours.join("links/to-servers").exists());
    assert!(second.stderr().contains("taking over the link of an incompatible dataplane"));
    assert_eq!(who(&topo), "rs2");
    assert_eq!(who(&topo), "rs1");
    assert!(lvs_tests::client::keepalive_get(&mut conn, "/").is_err(), "the old connection should be lost");
    drop(second);
    drop(first);
}

/// Room for a thousand held connections and their servers' sockets in this process.
fn raise_fd_limit(want: u64) {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        if rl.rlim_cur < want {
            rl.rlim_cur = want.min(rl.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

#[test]
fn sigkill_and_restart_under_load_keep_a_thousand_connections() {
    if !require_root() {
        return;
    }
    let _load = timing_exclusive();
    raise_fd_limit(8192);
    let topo = Topology::builder().real_servers(2).with_servers().build().unwrap();
    let tmp = TempDir::new("nat-load").unwrap();
    let cfg = tmp.write("lvs.yaml", &nat_config(&topo)).unwrap();
    let mut first = Lvsd::start(&topo.director, &cfg).unwrap();

    const HELD: usize = 1000;
    // Opened from 10 threads: one after the other they take long enough for the first ones
    // to reach the test servers' idle limit.
    let mut held: Vec<(BufReader<TcpStream>, String)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..10)
            .map(|_| {
                scope.spawn(|| {
                    (0..HELD / 10)
                        .map(|_| {
                            let s = topo.client.tcp_connect(vip(80), Duration::from_secs(5)).unwrap();
                            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                            let mut r = BufReader::new(s);
                            let who = keepalive_get(&mut r, "/");
                            (r, who)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    assert_eq!(held.iter().filter(|(_, w)| w == "rs1").count(), HELD / 2);

    // New connections keep arriving through the kill, the gap without a daemon, and the restart.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (ok, failed) = (std::sync::atomic::AtomicUsize::new(0), std::sync::atomic::AtomicUsize::new(0));
    let second = std::thread::scope(|scope| {
        scope.spawn(|| {
            use std::sync::atomic::Ordering::Relaxed;
            while !stop.load(Relaxed) {
                match topo.client.http_get(vip(80), "/") {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Relaxed),
                    _ => failed.fetch_add(1, Relaxed),
                };
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        first.process().signal(libc::SIGKILL).unwrap();
        first.process().wait_timeout(Duration::from_secs(5)).unwrap().expect("lvsd died");
        std::thread::sleep(Duration::from_millis(500));
        let second = restart_on(&topo, &first, &cfg, "nat-load2");
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        second
    });
    assert_eq!(failed.load(std::sync::atomic::Ordering::Relaxed), 0, "new connections failed around the restart");
    assert!(ok.load(std::sync::atomic::Ordering::Relaxed) > 0);

    // Every held connection still reaches its server, and the restarted lvsd counts them.
    // Checked from 10 threads too (a request on a held connection takes tens of ms here).
    let broken: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = held
            .chunks_mut(HELD / 10)
            .map(|chunk| {
                scope.spawn(move || {
                    let mut bad = Vec::new();
                    for (conn, who) in chunk.iter_mut() {
                        match lvs_tests::client::keepalive_get(conn, "/") {
                            Ok(w) if w == *who => {}
                            other => bad.push(format!("{:?} ({who}): {other:?}", conn.get_ref().local_addr())),
                        }
                    }
                    bad
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    assert!(broken.is_empty(), "{} held connections broken: {:?}", broken.len(), &broken[..broken.len().min(5)]);
    let active = |listing: &str| -> u32 {
        listing
            .lines()
            .filter(|l| l.starts_with("  -> 192.0.2.1"))
            .filter_map(|l| l.split_whitespace().nth(4)?.parse::<u32>().ok())
            .sum()
    };
    let mut last = String::new();
    let settled = wait_for("ActiveConn of the held connections", Duration::from_secs(5), || {
        last = second.ipvsadm_ok(&["-L", "-n", "-t", "203.0.113.10:80"])?;
        Ok((active(&last) == HELD as u32).then_some(()))
    });
    assert!(settled.is_ok(), "ActiveConn should be {HELD}:\n{last}");
    drop(held);
    drop(second);
    drop(first);
}
