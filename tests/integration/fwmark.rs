//! Firewall-mark services: the config's classifier marks packets in XDP, `-f MARK` services
//! take them, with real TCP and UDP traffic, exact listings and reloads of the rules.

use std::time::Duration;

use lvs_tests::*;

const HEADER: &str = "IP Virtual Server version 1.2.1 (size=4096)\n\
                      Prot LocalAddress:Port Scheduler Flags\n\
                      \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n";

fn dest_line(addr: &str, weight: u32, active: u32, inact: u32) -> String {
    format!("  -> {:<28} {:<7} {:<6} {:<10} {:<10}\n", addr, "Masq", weight, active, inact)
}

/// Marks 5 (TCP to VIP ports 80-81) and 6 (UDP to VIP ports 53-54) for two fwmark services
/// over both real servers, and an address service on VIP:80 with rs1 alone, which the
/// classifier's mark takes precedence over as in IPVS. `rules` replaces the classifier.
fn config(rules: &str) -> String {
    let rs = |port: u16| format!("[ {{ address: {}, port: {port}, forward: masq }}, {{ address: {}, port: {port}, forward: masq }} ]", rs_ip(1), rs_ip(2));
    format!(
        "interfaces: [{DIRECTOR_CLIENT_IF}, {DIRECTOR_SERVER_IF}]\n\
         connection_table_size: 4096\n\
         {rules}\
         services:\n\
         \x20 - {{ fwmark: 5, scheduler: rr, real_servers: {} }}\n\
         \x20 - {{ fwmark: 6, scheduler: rr, real_servers: {} }}\n\
         \x20 - {{ protocol: tcp, address: {VIP}, port: 80, scheduler: rr, real_servers: [ {{ address: {}, forward: masq }} ] }}\n",
        rs(80),
        rs(53),
        rs_ip(1)
    )
}

const RULES: &str = "classifier:\n\
                     \x20 - { mark: 5, destination: 203.0.113.10/32, protocol: tcp, ports: 80-81 }\n\
                     \x20 - { mark: 6, destination: 203.0.113.10, protocol: udp, ports: 53-54 }\n";

/// The real server answering `GET /` on VIP:`port`.
fn who(topo: &Topology, port: u16) -> String {
    topo.client.http_get(vip(port), "/").unwrap().text()
}

/// One UDP request from a fresh port to VIP:`port`; the answering server's name. The reply
/// must come from the VIP and port asked, or a connected client would never see it.
fn udp_who(topo: &Topology, port: u16) -> String {
    let sock = topo.client.udp_socket("0.0.0.0:0".parse().unwrap()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    sock.send_to(b"q", vip(port)).unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = sock.recv_from(&mut buf).unwrap();
    assert_eq!(from, vip(port), "reply source not rewritten");
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    text.strip_suffix(":q").unwrap_or_else(|| panic!("echo {text}")).to_string()
}

/// Rewrites the config, sends SIGHUP and waits until lvsd says it applied it.
fn reload(lvsd: &mut Lvsd, cfg: &std::path::Path, text: &str) {
    let before = lvsd.stderr().matches("configuration reloaded").count();
    std::fs::write(cfg, text).unwrap();
    lvsd.process().signal(libc::SIGHUP).unwrap();
    wait_for("reload", Duration::from_secs(5), || {
        let log = lvsd.stderr();
        assert!(!log.contains("reload refused"), "{log}");
        Ok((log.matches("configuration reloaded").count() > before).then_some(()))
    })
    .unwrap();
}

fn refused(topo: &Topology, port: u16) -> bool {
    match topo.client.tcp_connect(vip(port), Duration::from_secs(2)) {
        Ok(_) => false,
        Err(e) => format!("{e:#}").contains("refused"),
    }
}

#[test]
fn two_ports_one_mark_tcp_and_udp_and_reloads_change_the_rules() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(2).with_servers().build().unwrap();
    let tmp = TempDir::new("fwmark").unwrap();
    let cfg = tmp.write("lvs.yaml", config(RULES)).unwrap();
    let mut lvsd = Lvsd::start(&topo.director, &cfg).unwrap();

    // TCP to ports 80 and 81 is one service: one rr sequence over both ports (kernel order
    // newest first: rs2, rs1, ...). Without the mark, :80 would go to rs1 alone (the address
    // service) and :81 would be refused.
    let seq: Vec<String> = [80, 81, 80, 81].iter().map(|p| who(&topo, *p)).collect();
    assert_eq!(seq, ["rs2", "rs1", "rs2", "rs1"]);
    // UDP to ports 53 and 54: mark 6, its own rr sequence.
    let seq: Vec<String> = [53, 54, 54, 53].iter().map(|p| udp_who(&topo, *p)).collect();
    assert_eq!(seq, ["rs2", "rs1", "rs2", "rs1"]);
    assert_eq!(topo.rs_http_hits(), vec![2, 2]);
    assert_eq!(topo.rs_udp_hits(), vec![2, 2]);

    // Traffic matching no rule and no service is untouched: the director's own stack answers
    // (nothing listens on VIP:82; its own HTTP server works).
    assert!(refused(&topo, 82));
    let r = topo.client.curl(&format!("http://{DIRECTOR_CLIENT_IP}:{DIRECTOR_HTTP_PORT}/"), &[]).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "director"));
    let c = lvsd.counters().unwrap();
    assert_eq!(c["new_conn"], 8, "{c:?}");
    assert!(c["pass_no_service"] > 0, "{c:?}");

    // The listing: address services first, then FWM lines; the closed TCP connections and the
    // UDP ones in InActConn.
    let want = format!(
        "{HEADER}TCP  203.0.113.10:80 rr\n{}FWM  5 rr\n{}{}FWM  6 rr\n{}{}",
        dest_line("192.0.2.11:80", 1, 0, 0),
        dest_line("192.0.2.11:80", 1, 0, 2),
        dest_line("192.0.2.12:80", 1, 0, 2),
        dest_line("192.0.2.11:53", 1, 0, 2),
        dest_line("192.0.2.12:53", 1, 0, 2),
    );
    let mut last = String::new();
    let ok = wait_for("listing", Duration::from_secs(5), || {
        last = lvsd.ipvsadm_ok(&["-L", "-n"])?;
        Ok((last == want).then_some(()))
    });
    assert!(ok.is_ok(), "ipvsadm -L -n:\n{last}\nwant:\n{want}");
    assert_eq!(
        lvsd.ipvsadm_ok(&["-S", "-n"]).unwrap(),
        "-A -t 203.0.113.10:80 -s rr\n-a -t 203.0.113.10:80 -r 192.0.2.11:80 -m -w 1\n\
         -A -f 5 -s rr\n-a -f 5 -r 192.0.2.11:80 -m -w 1\n-a -f 5 -r 192.0.2.12:80 -m -w 1\n\
         -A -f 6 -s rr\n-a -f 6 -r 192.0.2.11:53 -m -w 1\n-a -f 6 -r 192.0.2.12:53 -m -w 1\n"
    );

    // Reload: port 80 leaves the rule. :80 now finds the address service (rs1 only); :81 keeps
    // the fwmark service, whose rr position carries on (rs2 next).
    reload(
        &mut lvsd,
        &cfg,
        &config("classifier:\n  - { mark: 5, destination: 203.0.113.10, protocol: tcp, ports: 81 }\n  - { mark: 6, destination: 203.0.113.10, protocol: udp, ports: 53-54 }\n"),
    );
    let seq: Vec<String> = [80, 81, 80, 81].iter().map(|p| who(&topo, *p)).collect();
    assert_eq!(seq, ["rs1", "rs2", "rs1", "rs1"]);

    // Reload without a classifier: nothing is marked; :81 has no service, :80 still has one.
    reload(&mut lvsd, &cfg, &config(""));
    assert!(refused(&topo, 81));
    assert_eq!(who(&topo, 80), "rs1");
    let before = topo.rs_udp_hits();
    let sock = topo.client.udp_socket("0.0.0.0:0".parse().unwrap()).unwrap();
    let lost = lvs_tests::client::udp_request_on(&sock, vip(54), b"x", Duration::from_millis(500));
    assert!(lost.is_err(), "UDP to :54 was answered without a mark: {lost:?}");
    assert_eq!(topo.rs_udp_hits(), before);

    // And back: the rules return at once.
    reload(&mut lvsd, &cfg, &config(RULES));
    assert_eq!(who(&topo, 81), "rs2");

    // The rules live in the pinned dataplane: with lvsd killed, packets are still marked.
    lvsd.process().signal(libc::SIGKILL).unwrap();
    lvsd.process().wait_timeout(Duration::from_secs(5)).unwrap().expect("lvsd died");
    assert_eq!(who(&topo, 81), "rs1");
    assert_eq!(udp_who(&topo, 54), "rs2");
}

#[test]
fn ipvsadm_manages_fwmark_services() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(2).build().unwrap();
    let tmp = TempDir::new("fwmark-cli").unwrap();
    let cfg = tmp
        .write("bare.yaml", format!("interfaces: [{DIRECTOR_CLIENT_IF}, {DIRECTOR_SERVER_IF}]\nconnection_table_size: 4096\n"))
        .unwrap();
    let mut lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    for cmd in [
        vec!["-A", "-f", "9", "-s", "wlc"],
        vec!["-a", "-f", "9", "-r", "192.0.2.12", "-m", "-w", "2"],
        vec!["-a", "-f", "9", "-r", "192.0.2.11:8080", "-m"],
        vec!["-A", "-f", "10", "-6", "-s", "rr"],
        vec!["-A", "-f", "4294967295", "-s", "lc"],
        vec!["-A", "-t", "203.0.113.10:80", "-s", "rr"],
        vec!["-e", "-f", "9", "-r", "192.0.2.11:8080", "-m", "-w", "3"],
        vec!["-E", "-f", "9", "-s", "rr"],
    ] {
        let out = lvsd.ipvsadm(&cmd).unwrap();
        assert!(out.success() && out.stdout.is_empty() && out.stderr.is_empty(), "ipvsadm {cmd:?}: {out:?}");
    }
    // libipvs compares marks as an int difference: 4294967295 - 0 wraps negative, so that
    // service sorts before the address services, as with the kernel (spec section 4).
    assert_eq!(
        lvsd.ipvsadm_ok(&["-L", "-n"]).unwrap(),
        format!(
            "{HEADER}FWM  -1 lc\nTCP  203.0.113.10:80 rr\nFWM  9 rr\n{}{}FWM  10 IPv6 rr\n",
            dest_line("192.0.2.11:8080", 3, 0, 0),
            dest_line("192.0.2.12:0", 2, 0, 0)
        )
    );
    assert_eq!(
        lvsd.ipvsadm_ok(&["-L", "-n", "-f", "9", "--nosort"]).unwrap(),
        format!(
            "{}FWM  9 rr\n{}{}",
            HEADER.split_once('\n').unwrap().1,
            dest_line("192.0.2.11:8080", 3, 0, 0),
            dest_line("192.0.2.12:0", 2, 0, 0)
        )
    );
    assert_eq!(
        lvsd.ipvsadm_ok(&["-S", "-n"]).unwrap(),
        "-A -f -1 -s lc\n-A -t 203.0.113.10:80 -s rr\n-A -f 9 -s rr\n-a -f 9 -r 192.0.2.11:8080 -m -w 3\n\
         -a -f 9 -r 192.0.2.12:0 -m -w 2\n-A -f 10 -6 -s rr\n"
    );
    // A new lvsd on the same pins (after SIGKILL) rebuilds the fwmark services from the maps.
    let before = lvsd.ipvsadm_ok(&["-L", "-n"]).unwrap();
    lvsd.process().signal(libc::SIGKILL).unwrap();
    lvsd.process().wait_timeout(Duration::from_secs(5)).unwrap().expect("lvsd died");
    let second = Lvsd::start_at(&topo.director, &cfg, lvsd.pin_dir(), lvsd.socket(), &[], TempDir::new("fwmark-cli2").unwrap())
        .unwrap();
    assert_eq!(second.ipvsadm_ok(&["-L", "-n"]).unwrap(), before);
    let lvsd = second;

    // Kernel errors, as the kernel gives them.
    let out = lvsd.ipvsadm(&["-A", "-f", "9"]).unwrap();
    assert_eq!((out.status.code(), out.stderr_str().as_str()), (Some(255), "Service already exists\n"), "{out:?}");
    let out = lvsd.ipvsadm(&["-D", "-f", "11"]).unwrap();
    assert_eq!((out.status.code(), out.stderr_str().as_str()), (Some(255), "No such service\n"), "{out:?}");
    for cmd in [vec!["-d", "-f", "9", "-r", "192.0.2.12"], vec!["-D", "-f", "10", "-6"], vec!["-D", "-f", "4294967295"]] {
        lvsd.ipvsadm_ok(&cmd).unwrap();
    }
    assert_eq!(
        lvsd.ipvsadm_ok(&["-L", "-n"]).unwrap(),
        format!("{HEADER}TCP  203.0.113.10:80 rr\nFWM  9 rr\n{}", dest_line("192.0.2.11:8080", 3, 0, 0))
    );
}

/// Persistence across the ports of one mark (IPVS's classic HTTP + HTTPS case, here HTTP on
/// TCP 80 and the UDP echo on 53): the template is keyed on the mark, not the port or the
/// protocol, so a client's connections to both stay on one real server, where rr alone would
/// alternate. As in the kernel, a persistent fwmark service keeps the packet's own port.
#[test]
fn persistence_holds_a_client_across_the_ports_of_one_mark() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(2).with_servers().build().unwrap();
    let tmp = TempDir::new("fwmark-persist").unwrap();
    let text = format!(
        "interfaces: [{DIRECTOR_CLIENT_IF}, {DIRECTOR_SERVER_IF}]\n\
         connection_table_size: 4096\n\
         classifier:\n\
         \x20 - {{ mark: 7, destination: {VIP}, protocol: tcp, ports: 80 }}\n\
         \x20 - {{ mark: 7, destination: {VIP}, protocol: udp, ports: 53 }}\n\
         services:\n\
         \x20 - {{ fwmark: 7, scheduler: rr, persistent: 60, real_servers: [ {{ address: {}, forward: masq }}, {{ address: {}, forward: masq }} ] }}\n",
        rs_ip(1),
        rs_ip(2)
    );
    let cfg = tmp.write("lvs.yaml", text).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    let seq: Vec<String> =
        (0..6).map(|i| if i % 2 == 0 { who(&topo, 80) } else { udp_who(&topo, 53) }).collect();
    assert_eq!(seq, ["rs2"; 6], "one client, one mark: one real server");
    assert_eq!((topo.rs_http_hits(), topo.rs_udp_hits()), (vec![0, 3], vec![0, 3]));
    // One template, shown as the kernel shows a fwmark service's: protocol IP, the client's
    // address with port 0, the mark as the virtual address.
    let conns = lvsd.ipvsadm_ok(&["-L", "-n", "-c"]).unwrap();
    let templates: Vec<&str> = conns.lines().filter(|l| l.starts_with("IP ")).collect();
    assert_eq!(templates.len(), 1, "{conns}");
    let fields: Vec<&str> = templates[0].split_whitespace().collect();
    assert_eq!(
        (fields[0], fields[3], fields[4], fields[5]),
        ("IP", "198.51.100.2:0", "0.0.0.7:0", "192.0.2.12:0"),
        "{conns}"
    );
    assert!(lvsd.ipvsadm_ok(&["-S", "-n"]).unwrap().starts_with("-A -f 7 -s rr -p 60\n"));
}
