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

/// `lvsd ARGS --socket <l's>` from the host: `--reload`, `--check-config`.
fn lvsd_cli(l: &Lvsd, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(lvs_bin("lvsd")).args(args).arg("--socket").arg(l.socket()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn daemon_line(role: &str, syncid: u8, maxlen: u16) -> String {
    format!("{role} sync daemon (mcast={DIRECTOR_SERVER_IF}, syncid={syncid}, maxlen={maxlen}, group=224.0.0.81, port=8848, ttl=1)\n")
}

/// Opens a keep-alive connection through the master and waits until the backup shows the
/// master's TCP entries.
fn synced_connection(r: &Rig, a: &Lvsd, b: &Lvsd) -> BufReader<std::net::TcpStream> {
    let conn = r.client.tcp_connect(vip(80), Duration::from_secs(3)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut conn = BufReader::new(conn);
    assert_eq!(keepalive_get(&mut conn, "/").unwrap(), "rs1");
    let on_a: Vec<String> = conns(a).into_iter().filter(|l| l.starts_with("TCP ESTABLISHED")).collect();
    assert!(!on_a.is_empty());
    let got = wait_for("the connections on the backup", Duration::from_secs(6), || {
        let c = conns(b);
        Ok(on_a.iter().all(|l| c.contains(l)).then_some(c))
    });
    assert!(got.is_ok(), "backup: {:?}\nmaster: {on_a:?}\nbackup log:\n{}", conns(b), b.stderr());
    conn
}

/// Both daemons from the config files; a reload restarts, stops and starts them as the files
/// change (the file wins over ipvsadm for the roles it declares), and a file naming a missing
/// interface is refused with its position, changing nothing.
#[test]
fn sync_daemons_from_the_config_and_reload() {
    if !require_root() {
        return;
    }
    let r = rig().unwrap();
    let tmp = TempDir::new("sync-cfg").unwrap();
    let master = format!("sync:\n  master: {{interface: {DIRECTOR_SERVER_IF}, syncid: 5}}\n");
    let backup = |id: u8, ifn: &str| format!("sync:\n  backup:\n    interface: {ifn}\n    syncid: {id}\n    sync_maxlen: 1400\n");
    let ca = tmp.write("a.yaml", config(false, false) + &master).unwrap();
    let cb = tmp.write("b.yaml", config(false, false) + &backup(5, DIRECTOR_SERVER_IF)).unwrap();
    let a = Lvsd::start(&r.a, &ca).unwrap();
    let b = Lvsd::start(&r.b, &cb).unwrap();
    assert_eq!(a.ipvsadm_ok(&["-L", "--daemon"]).unwrap(), daemon_line("master", 5, 1472));
    assert_eq!(b.ipvsadm_ok(&["-L", "--daemon"]).unwrap(), daemon_line("backup", 5, 1400));
    let _held = synced_connection(&r, &a, &b);

    // Stopped with ipvsadm, the file's master comes back at the next reload.
    a.ipvsadm_ok(&["--stop-daemon", "master"]).unwrap();
    assert_eq!(a.ipvsadm_ok(&["-L", "--daemon"]).unwrap(), "");
    let (st, out, err) = lvsd_cli(&a, &["--reload"]);
    assert_eq!((st, out.as_str()), (0, "reloaded: 1 change(s)\n  --start-daemon master --mcast-interface to-servers --syncid 5\n"), "{err}");
    assert_eq!(a.ipvsadm_ok(&["-L", "--daemon"]).unwrap(), daemon_line("master", 5, 1472));

    // A changed section: the dry run says it, the reload restarts the daemon.
    let next = tmp.write("b-next.yaml", config(false, false) + &backup(6, DIRECTOR_SERVER_IF)).unwrap();
    let (st, out, err) = lvsd_cli(&b, &["--check-config", next.to_str().unwrap()]);
    assert_eq!(st, 0, "{err}");
    assert_eq!(
        out,
        format!(
            "{}: OK: 2 interface(s), 1 service(s), 1 real server(s)\na reload of the lvsd at {} would make 2 change(s):\n  \
             --stop-daemon backup\n  --start-daemon backup --mcast-interface to-servers --syncid 6 --sync-maxlen 1400\n",
            next.display(),
            b.socket().display()
        )
    );
    assert_eq!(b.ipvsadm_ok(&["-L", "--daemon"]).unwrap(), daemon_line("backup", 5, 1400), "a dry run changed something");
    std::fs::write(&cb, config(false, false) + &backup(6, DIRECTOR_SERVER_IF)).unwrap();
    let (st, out, err) = lvsd_cli(&b, &["--reload"]);
    assert_eq!(
        (st, out.as_str()),
        (0, "reloaded: 2 change(s)\n  --stop-daemon backup\n  --start-daemon backup --mcast-interface to-servers --syncid 6 --sync-maxlen 1400\n"),
        "{err}"
    );
    assert_eq!(b.ipvsadm_ok(&["-L", "--daemon"]).unwrap(), daemon_line("backup", 6, 1400));

    // A missing interface: refused at its line and column, the running daemon untouched.
    std::fs::write(&cb, config(false, false) + &backup(7, "nosuch0")).unwrap();
    let (st, _, err) = lvsd_cli(&b, &["--reload"]);
    assert_eq!(st, 1);
    assert_eq!(
        err,
        format!("lvsd: reload refused, nothing changed: {}:12:5: the backup sync daemon's interface nosuch0 does not exist\n", cb.display())
    );
    assert_eq!(b.ipvsadm_ok(&["-L", "--daemon"]).unwrap(), daemon_line("backup", 6, 1400));

    // The section removed: the daemon the file started is stopped.
    std::fs::write(&ca, config(false, false)).unwrap();
    let (st, out, err) = lvsd_cli(&a, &["--reload"]);
    assert_eq!((st, out.as_str()), (0, "reloaded: 1 change(s)\n  --stop-daemon master\n"), "{err}");
    assert_eq!(a.ipvsadm_ok(&["-L", "--daemon"]).unwrap(), "");
}

/// A backup started at runtime with ipvsadm is running again, with the same parameters, after
/// its lvsd is SIGKILLed and restarted on the same pins, and keeps receiving the master's
/// connections; a reload of a file that never named it leaves it alone.
#[test]
fn a_daemon_started_with_ipvsadm_comes_back_after_sigkill() {
    if !require_root() {
        return;
    }
    let r = rig().unwrap();
    let tmp = TempDir::new("sync-kill").unwrap();
    let master = format!("sync:\n  master: {{interface: {DIRECTOR_SERVER_IF}, syncid: 9}}\n");
    let ca = tmp.write("a.yaml", config(false, false) + &master).unwrap();
    let cb = tmp.write("b.yaml", config(false, false)).unwrap();
    let a = Lvsd::start(&r.a, &ca).unwrap();
    let mut b = Lvsd::start(&r.b, &cb).unwrap();
    b.ipvsadm_ok(&["--start-daemon", "backup", "--mcast-interface", DIRECTOR_SERVER_IF, "--syncid", "9", "--sync-maxlen", "1200"])
        .unwrap();
    let before = b.ipvsadm_ok(&["-L", "--daemon"]).unwrap();
    assert_eq!(before, daemon_line("backup", 9, 1200));
    let _first = synced_connection(&r, &a, &b);

    b.process().signal(libc::SIGKILL).unwrap();
    b.process().wait_timeout(Duration::from_secs(5)).unwrap().expect("lvsd died");
    let mut b2 = Lvsd::start_at(&r.b, &cb, b.pin_dir(), b.socket(), &[], TempDir::new("sync-kill2").unwrap()).unwrap();
    assert_eq!(b2.ipvsadm_ok(&["-L", "--daemon"]).unwrap(), before, "log:\n{}", b2.stderr());
    assert!(b2.stderr().contains("sync daemon restored from the previous lvsd"), "{}", b2.stderr());
    // It receives: a new connection through the master shows up on the restarted backup.
    let _second = synced_connection(&r, &a, &b2);
    assert_eq!(conns(&b2).iter().filter(|l| l.starts_with("TCP ESTABLISHED")).count(), 2, "{:?}", conns(&b2));

    // The file never named a backup: a reload keeps the one ipvsadm started.
    let (st, out, err) = lvsd_cli(&b2, &["--reload"]);
    assert_eq!((st, out.as_str()), (0, "reloaded: 0 change(s)\n"), "{err}");
    assert_eq!(b2.ipvsadm_ok(&["-L", "--daemon"]).unwrap(), before);
    // Stopped with ipvsadm, it stays stopped across a restart.
    b2.ipvsadm_ok(&["--stop-daemon", "backup"]).unwrap();
    b2.process().signal(libc::SIGKILL).unwrap();
    b2.process().wait_timeout(Duration::from_secs(5)).unwrap().expect("lvsd died");
    let b3 = Lvsd::start_at(&r.b, &cb, b.pin_dir(), b.socket(), &[], TempDir::new("sync-kill3").unwrap()).unwrap();
    assert_eq!(b3.ipvsadm_ok(&["-L", "--daemon"]).unwrap(), "");
    drop(b3);
    drop(b2);
    drop(b);
    drop(a);
}
