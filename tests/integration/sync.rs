//! Connection synchronisation between two directors: the master forwards real TCP traffic and
//! sends its connections to the backup; then the client and the real server are re-routed to
//! the backup, and an established NAT connection keeps working through it.
//!
//! ```text
//!                      [front: br0]                               [back: br0]
//!  [client] eth0 ---- p-cli   p-a ---- to-clients [A] to-servers ---- p-a    p-rs1 ---- eth0 [rs1]
//!  198.51.100.2           p-b ---- to-clients [B] to-servers ---- p-b          192.0.2.11
//!                     A: 198.51.100.1 / 192.0.2.1     B: 198.51.100.3 / 192.0.2.2
//! ```
//! The sync messages go over the back LAN (224.0.0.81 on `to-servers`).

use std::{io::BufReader, time::Duration};

use lvs_tests::{client::keepalive_get, *};

const A_FRONT: &str = "198.51.100.1";
const B_FRONT: &str = "198.51.100.3";
const A_BACK: &str = "192.0.2.1";
const B_BACK: &str = "192.0.2.2";

struct Rig {
    // Servers first: fields drop in order, and the servers must stop before their namespaces.
    _http: HttpServer,
    _udp: UdpEchoServer,
    client: Netns,
    a: Netns,
    b: Netns,
    _front: Netns,
    _back: Netns,
    rs: Netns,
}

fn director(d: &Netns, front: &str, back: &str) -> anyhow::Result<()> {
    d.addr_add(DIRECTOR_CLIENT_IF, &format!("{front}/24"))?;
    d.addr_add(DIRECTOR_SERVER_IF, &format!("{back}/24"))?;
    d.addr_add("lo", &format!("{VIP}/32"))?;
    d.link_up(DIRECTOR_CLIENT_IF)?;
    d.link_up(DIRECTOR_SERVER_IF)?;
    let mut kv = vec![("net.ipv4.ip_forward".to_string(), "1".to_string())];
    for dev in ["all", "default", "lo", DIRECTOR_CLIENT_IF, DIRECTOR_SERVER_IF] {
        kv.push((format!("net.ipv4.conf.{dev}.rp_filter"), "0".into()));
    }
    for dev in [DIRECTOR_CLIENT_IF, DIRECTOR_SERVER_IF] {
        kv.push((format!("net.ipv4.conf.{dev}.accept_local"), "1".into()));
    }
    let kv: Vec<(&str, &str)> = kv.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    d.sysctls(&kv)?;
    // The sync messages are sent from this stack; with XDP on the receiving veth, partial
    // checksums would not be completed (the platform's veth rule for originating traffic).
    d.tx_off(DIRECTOR_SERVER_IF)?;
    Ok(())
}

fn rig() -> anyhow::Result<Rig> {
    let client = Netns::new("client")?;
    let a = Netns::new("dir-a")?;
    let b = Netns::new("dir-b")?;
    let front = Netns::new("front")?;
    let back = Netns::new("back")?;
    let rs = Netns::new("rs1")?;
    for (ns, br) in [(&front, "br0"), (&back, "br0")] {
        ns.ip(&["link", "add", br, "type", "bridge"])?;
    }
    let ports = [
        (&client, CLIENT_IF, &front, "p-cli"),
        (&a, DIRECTOR_CLIENT_IF, &front, "p-a"),
        (&b, DIRECTOR_CLIENT_IF, &front, "p-b"),
        (&a, DIRECTOR_SERVER_IF, &back, "p-a"),
        (&b, DIRECTOR_SERVER_IF, &back, "p-b"),
        (&rs, RS_IF, &back, "p-rs1"),
    ];
    for (ns, dev, lan, port) in ports {
        veth_pair(ns, dev, lan, port)?;
        lan.ip(&["link", "set", port, "master", "br0"])?;
        lan.link_up(port)?;
        // NAPI on every bridge port: the directors' XDP redirects into their veths.
        lan.gro_on(port)?;
    }
    front.link_up("br0")?;
    back.link_up("br0")?;

    client.addr_add(CLIENT_IF, &format!("{CLIENT_IP}/24"))?;
    client.link_up(CLIENT_IF)?;
    client.ip(&["route", "add", &format!("{VIP}/32"), "via", A_FRONT])?;
    client.ethtool_k(CLIENT_IF, &[("gro", true), ("tx", false)])?;
    director(&a, A_FRONT, A_BACK)?;
    director(&b, B_FRONT, B_BACK)?;
    rs.addr_add(RS_IF, "192.0.2.11/24")?;
    rs.link_up(RS_IF)?;
    rs.default_route(A_BACK)?;
    rs.ethtool_k(RS_IF, &[("gro", true), ("tx", false)])?;
    let http = HttpServer::start(&rs, sa(std::net::Ipv4Addr::UNSPECIFIED, RS_HTTP_PORT), "rs1")?;
    let udp = UdpEchoServer::start(&rs, sa(std::net::Ipv4Addr::UNSPECIFIED, RS_UDP_PORT), "rs1")?;
    Ok(Rig { _http: http, _udp: udp, client, a, b, _front: front, _back: back, rs })
}

/// The TCP service on both directors (persistent: its template is synced too); the master
/// also has a UDP service the backup lacks.
fn config(with_udp: bool, persistent: bool) -> String {
    let p = if persistent { "    persistent: 60\n" } else { "" };
    let mut s = format!(
        "interfaces: [{DIRECTOR_CLIENT_IF}, {DIRECTOR_SERVER_IF}]\n\
         connection_table_size: 4096\n\
         services:\n\
         \x20 - protocol: tcp\n    address: {VIP}\n    port: 80\n    scheduler: rr\n{p}    real_servers:\n\
         \x20     - {{ address: 192.0.2.11, forward: masq }}\n"
    );
    if with_udp {
        s.push_str(&format!(
            "\x20 - protocol: udp\n    address: {VIP}\n    port: 53\n    scheduler: rr\n    real_servers:\n\
             \x20     - {{ address: 192.0.2.11, forward: masq }}\n"
        ));
    }
    s
}

/// `-L -n -c` lines without the expiry column, sorted: protocol, state, client, virtual, dest.
fn conns(l: &Lvsd) -> Vec<String> {
    let out = l.ipvsadm_ok(&["-L", "-n", "-c"]).unwrap();
    let mut v: Vec<String> = out
        .lines()
        .skip(2)
        .map(|line| {
            let w: Vec<&str> = line.split_whitespace().collect();
            format!("{} {} {} {} {}", w[0], w[2], w[3], w[4], w[5])
        })
        .collect();
    v.sort();
    v
}

/// The `-L -n` line of rs1 in the TCP service: ActiveConn and InActConn.
fn rs1_counts(l: &Lvsd) -> (u64, u64) {
    let out = l.ipvsadm_ok(&["-L", "-n", "-t", &format!("{VIP}:80")]).unwrap();
    let line = out.lines().find(|x| x.contains("192.0.2.11:80")).unwrap_or_else(|| panic!("{out}"));
    let w: Vec<&str> = line.split_whitespace().collect();
    (w[4].parse().unwrap(), w[5].parse().unwrap())
}

#[test]
fn backup_takes_over_an_established_nat_connection() {
    if !require_root() {
        return;
    }
    let r = rig().unwrap();
    let tmp = TempDir::new("sync").unwrap();
    let ca = tmp.write("a.yaml", config(true, true)).unwrap();
    let cb = tmp.write("b.yaml", config(false, true)).unwrap();
    let a = Lvsd::start(&r.a, &ca).unwrap();
    let b = Lvsd::start(&r.b, &cb).unwrap();

    // Daemons, as ipvsadm lists them.
    let ok = |l: &Lvsd, args: &[&str]| {
        let o = l.ipvsadm(args).unwrap();
        assert!(o.success(), "ipvsadm {args:?}: {}", o.stderr_str());
    };
    ok(&a, &["--start-daemon", "master", "--mcast-interface", DIRECTOR_SERVER_IF, "--syncid", "5"]);
    ok(&b, &["--start-daemon", "backup", "--mcast-interface", DIRECTOR_SERVER_IF, "--syncid", "5"]);
    assert_eq!(
        a.ipvsadm_ok(&["-L", "--daemon"]).unwrap(),
        "master sync daemon (mcast=to-servers, syncid=5, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
    );
    assert_eq!(
        b.ipvsadm_ok(&["-L", "--daemon"]).unwrap(),
        "backup sync daemon (mcast=to-servers, syncid=5, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
    );
    let again = a.ipvsadm(&["--start-daemon", "master", "--mcast-interface", DIRECTOR_SERVER_IF]).unwrap();
    assert_eq!((again.status.code(), again.stderr_str().as_str()), (Some(255), "Daemon has already run\n"));

    // Real traffic through the master: a held keep-alive TCP connection, and a UDP exchange
    // on a service the backup does not have.
    let conn = r.client.tcp_connect(vip(80), Duration::from_secs(3)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut conn = BufReader::new(conn);
    assert_eq!(keepalive_get(&mut conn, "/").unwrap(), "rs1");
    let reply = r.client.udp_request(vip(RS_UDP_PORT), b"ping", Duration::from_secs(3)).unwrap();
    assert_eq!(reply, b"rs1:ping");

    let on_a = conns(&a);
    assert!(on_a.iter().any(|l| l.starts_with("TCP ESTABLISHED 198.51.100.2:")), "{on_a:?}");
    assert!(on_a.iter().any(|l| l.starts_with("UDP UDP 198.51.100.2:")), "{on_a:?}");
    // The persistence template: client port 0, ASSURED once its connection is established.
    assert!(on_a.contains(&format!("TCP ASSURED 198.51.100.2:0 {VIP}:80 192.0.2.11:80")), "{on_a:?}");
    let tcp_on_a: Vec<String> = on_a.iter().filter(|l| l.starts_with("TCP")).cloned().collect();
    // The backup shows the master's TCP connection and its template within a few seconds: same
    // client, virtual address, destination and state. The UDP one has no service there and is
    // dropped.
    let on_b = wait_for("the connection on the backup", Duration::from_secs(6), || {
        let c = conns(&b);
        Ok((c == tcp_on_a).then_some(c))
    });
    assert!(on_b.is_ok(), "backup: {:?}\nmaster: {on_a:?}\nbackup log:\n{}", conns(&b), b.stderr());
    // Counted on the backup's rs1 as ActiveConn, as the dataplane would have, and the template
    // as PersistConn.
    assert_eq!(rs1_counts(&b), (1, 0));
    let pc = b.ipvsadm_ok(&["-L", "-n", "--persistent-conn"]).unwrap();
    assert!(pc.lines().any(|l| l.contains("192.0.2.11:80") && l.split_whitespace().nth(3) == Some("1")), "{pc}");
    // The backup's entry carries the master's timeout: ESTABLISHED's 900 s, not a default.
    let listing = b.ipvsadm_ok(&["-L", "-n", "-c"]).unwrap();
    assert!(listing.lines().any(|l| l.starts_with("TCP 14:5")), "{listing}");

    // Fail over: the client and the real server now route through the backup.
    r.client.ip(&["route", "replace", &format!("{VIP}/32"), "via", B_FRONT]).unwrap();
    r.rs.ip(&["route", "replace", "default", "via", B_BACK]).unwrap();
    // The same TCP connection goes on, NAT'ed both ways by the backup (its reverse entry).
    assert_eq!(keepalive_get(&mut conn, "/").unwrap(), "rs1");
    assert_eq!(keepalive_get(&mut conn, "/").unwrap(), "rs1");
    drop(conn);

    ok(&b, &["--stop-daemon", "backup"]);
    assert_eq!(b.ipvsadm_ok(&["-L", "--daemon"]).unwrap(), "");
    let none = b.ipvsadm(&["--stop-daemon", "backup"]).unwrap();
    assert_eq!((none.status.code(), none.stderr_str().as_str()), (Some(255), "No daemon is running\n"));
    ok(&a, &["--stop-daemon", "master"]);
}

/// A backup with another sync id ignores the master's messages; an unknown interface is
/// refused with the kernel's ENODEV text and starts nothing, an IPv6 group as not supported.
#[test]
fn sync_id_filter_and_unknown_interface() {
    if !require_root() {
        return;
    }
    let r = rig().unwrap();
    let tmp = TempDir::new("sync-id").unwrap();
    let a = Lvsd::start(&r.a, &tmp.write("a.yaml", config(false, false)).unwrap()).unwrap();
    let b = Lvsd::start(&r.b, &tmp.write("b.yaml", config(false, true)).unwrap()).unwrap();
    let bad = b.ipvsadm(&["--start-daemon", "backup", "--mcast-interface", "nosuch0"]).unwrap();
    assert_eq!((bad.status.code(), bad.stderr_str().as_str()), (Some(255), "No such device\n"));
    assert_eq!(b.ipvsadm_ok(&["-L", "--daemon"]).unwrap(), "");
    // An IPv6 group is refused as not supported, changing nothing either.
    let v6 = b.ipvsadm(&["--start-daemon", "backup", "--mcast-interface", DIRECTOR_SERVER_IF, "--mcast-group", "ff02::1:2:3"]).unwrap();
    assert_eq!(v6.status.code(), Some(255));
    assert!(v6.stderr_str().ends_with("are not supported by lvsd yet\n"), "{}", v6.stderr_str());
    assert_eq!(b.ipvsadm_ok(&["-L", "--daemon"]).unwrap(), "");

    a.ipvsadm_ok(&["--start-daemon", "master", "--mcast-interface", DIRECTOR_SERVER_IF, "--syncid", "5"]).unwrap();
    b.ipvsadm_ok(&["--start-daemon", "backup", "--mcast-interface", DIRECTOR_SERVER_IF, "--syncid", "6"]).unwrap();
    let conn = r.client.tcp_connect(vip(80), Duration::from_secs(3)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut conn = BufReader::new(conn);
    assert_eq!(keepalive_get(&mut conn, "/").unwrap(), "rs1");
    assert_eq!(conns(&a).len(), 1);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(conns(&b), Vec::<String>::new());

    // Sync id 0 on the backup accepts every master: the entry arrives on the next send (the
    // master resends only on a change, so make one: the connection closes).
    b.ipvsadm_ok(&["--stop-daemon", "backup"]).unwrap();
    b.ipvsadm_ok(&["--start-daemon", "backup", "--mcast-interface", DIRECTOR_SERVER_IF]).unwrap();
    drop(conn);
    let got = wait_for("a closing connection on the backup", Duration::from_secs(6), || {
        let c = conns(&b);
        Ok((c.len() == 1 && !c[0].contains("ESTABLISHED")).then_some(c))
    });
    assert!(got.is_ok(), "backup: {:?} master: {:?}", conns(&b), conns(&a));
}
