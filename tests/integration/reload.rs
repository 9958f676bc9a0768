//! Live reload through the config file: `lvsd --reload` and `--check-config` against a running
//! lvsd, under traffic. Only the difference is applied; connections the change does not touch
//! keep their real server without a single reset.

use std::{
    io::BufReader,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::Duration,
};

use lvs_tests::*;

fn config(tcp_servers: &str, udp: bool, extra: &str) -> String {
    let udp = if udp {
        format!(
            "  - {{protocol: udp, address: {VIP}, port: 53, scheduler: rr, real_servers: [{{address: {}, forward: masq}}, {{address: {}, forward: masq}}]}}\n",
            rs_ip(1),
            rs_ip(2)
        )
    } else {
        String::new()
    };
    format!(
        "interfaces: [{DIRECTOR_CLIENT_IF}, {DIRECTOR_SERVER_IF}]\n\
         connection_table_size: 4096\n\
         services:\n\
         \x20 - protocol: tcp\n    address: {VIP}\n    port: 80\n    scheduler: rr\n    real_servers:\n{tcp_servers}{udp}{extra}"
    )
}

fn server(i: usize, weight: u32) -> String {
    format!("      - {{address: {}, forward: masq, weight: {weight}}}\n", rs_ip(i))
}

struct Cli {
    status: i32,
    stdout: String,
    stderr: String,
}

/// `lvsd ARGS --socket <lvsd's>`, run from the host (the control socket is a file).
fn lvsd_cli(lvsd: &Lvsd, args: &[&str]) -> Cli {
    let mut c = std::process::Command::new(lvs_bin("lvsd"));
    c.args(args).arg("--socket").arg(lvsd.socket());
    let out = c.output().unwrap();
    Cli {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn reload_applies_only_the_difference_under_traffic() {
    if !require_root() {
        return;
    }
    let _load = timing_exclusive();
    let topo = Topology::builder().real_servers(3).with_servers().build().unwrap();
    let tmp = TempDir::new("reload").unwrap();
    let cfg = tmp.write("lvs.yaml", &config(&(server(1, 1) + &server(2, 1)), true, "")).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();

    // Long-lived keep-alive connections, alternating rs2, rs1 (kernel order).
    let mut held: Vec<(BufReader<std::net::TcpStream>, String)> = (0..12)
        .map(|_| {
            let s = topo.client.tcp_connect(vip(80), Duration::from_secs(5)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut r = BufReader::new(s);
            let who = lvs_tests::client::keepalive_get(&mut r, "/").unwrap();
            (r, who)
        })
        .collect();
    assert_eq!(held.iter().filter(|(_, w)| w == "rs1").count(), 6);

    let edited = config(
        &(server(1, 3) + &server(2, 1) + &server(3, 1)),
        false,
        &format!("  - {{protocol: tcp, address: {VIP}, port: 8080, scheduler: rr, real_servers: [{{address: {}, port: 80, forward: masq}}]}}\n", rs_ip(3)),
    );
    let changes = "  -D -u 203.0.113.10:53\n\
                   \x20 -e -t 203.0.113.10:80 -r 192.0.2.11:80 -m -w 3\n\
                   \x20 -a -t 203.0.113.10:80 -r 192.0.2.13:80 -m -w 1\n\
                   \x20 -A -t 203.0.113.10:8080 -s rr\n\
                   \x20 -a -t 203.0.113.10:8080 -r 192.0.2.13:80 -m -w 1\n";

    // A dry run against the running lvsd says what the edit would do, and does nothing.
    let next = tmp.write("next.yaml", &edited).unwrap();
    let before = lvsd.ipvsadm_ok(&["-S", "-n"]).unwrap();
    let dry = lvsd_cli(&lvsd, &["--check-config", next.to_str().unwrap()]);
    assert_eq!(dry.status, 0, "{}", dry.stderr);
    assert_eq!(
        dry.stdout,
        format!(
            "{}: OK: 2 interface(s), 2 service(s), 4 real server(s)\na reload of the lvsd at {} would make 5 change(s):\n{changes}",
            next.display(),
            lvsd.socket().display()
        )
    );
    assert_eq!(lvsd.ipvsadm_ok(&["-S", "-n"]).unwrap(), before, "a dry run changed the state");

    // The reload itself, while new connections keep arriving: every one must succeed.
    std::fs::write(&cfg, &edited).unwrap();
    let stop = AtomicBool::new(false);
    let (ok, failed) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                match topo.client.http_get(vip(80), "/") {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        let r = lvsd_cli(&lvsd, &["--reload"]);
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        assert_eq!(r.status, 0, "{}", r.stderr);
        assert_eq!(r.stdout, format!("reloaded: 5 change(s)\n{changes}"));
    });
    assert_eq!(failed.load(Ordering::Relaxed), 0, "new connections failed during the reload");
    assert!(ok.load(Ordering::Relaxed) > 0);

    // Every held connection still reaches its own server.
    for (conn, who) in held.iter_mut() {
        assert_eq!(lvs_tests::client::keepalive_get(conn, "/").unwrap(), *who);
    }
    assert_eq!(topo.client.http_get(vip(8080), "/").unwrap().text(), "rs3");

    // A second reload of the same file changes nothing.
    let r = lvsd_cli(&lvsd, &["--reload"]);
    assert_eq!(r.stdout, "reloaded: 0 change(s)\n");

    // A broken file is refused with its position, and nothing changes.
    let state = lvsd.ipvsadm_ok(&["-S", "-n"]).unwrap();
    std::fs::write(&cfg, config(&server(1, 1), false, "  - {protocol: tcp, address: 203.0.113.10, port: 99999}\n")).unwrap();
    let r = lvsd_cli(&lvsd, &["--reload"]);
    assert_eq!(r.status, 1);
    assert!(r.stderr.starts_with("lvsd: reload refused, nothing changed: "), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("{}:", cfg.display())), "no file position: {}", r.stderr);
    assert_eq!(lvsd.ipvsadm_ok(&["-S", "-n"]).unwrap(), state);
    for (conn, who) in held.iter_mut() {
        assert_eq!(lvs_tests::client::keepalive_get(conn, "/").unwrap(), *who);
    }
}

/// The plan lists classifier, timeout and sysctl changes as well, in the dry run and the
/// reload alike, and the reload applies exactly them: `-L --timeout` shows the new values and
/// a second reload finds nothing to do.
#[test]
fn reload_plan_lists_classifier_timeout_and_sysctl_changes() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(2).build().unwrap();
    let tmp = TempDir::new("reload-settings").unwrap();
    let first = "timeouts: {tcpfin: 7}\nsysctls: {expire_quiescent_template: 1}\n\
                 classifier:\n  - {mark: 1, destination: 203.0.113.0/24, protocol: tcp, ports: 80}\n  - {mark: 2, destination: 198.51.100.0/24, ports: 5000-5099}\n";
    let cfg = tmp.write("lvs.yaml", config(&server(1, 1), false, "") + first).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    assert_eq!(lvsd.ipvsadm_ok(&["-L", "--timeout"]).unwrap(), "Timeout (tcp tcpfin udp): 900 7 300\n");
    // A --set of a state the file names is put back by the reload; of one it leaves out, kept.
    lvsd.ipvsadm_ok(&["--set", "0", "9", "0"]).unwrap();

    let second = "timeouts: {tcpfin: 7, udp: 60, syn_recv: 30}\nsysctls: {expire_nodest_conn: 1}\n\
                  classifier:\n  - {mark: 3, destination: 203.0.113.0/24, protocol: tcp, ports: 80}\n";
    let changes = "  classifier -R 1 -d 203.0.113.0/24 -p tcp --dport 80 --set-mark 3\n\
                   \x20 classifier -D 2\n\
                   \x20 --set 900 7 60\n\
                   \x20 timeout syn_recv 30\n\
                   \x20 sysctl net.ipv4.vs.expire_nodest_conn=1\n\
                   \x20 sysctl net.ipv4.vs.expire_quiescent_template=0\n";
    let next = tmp.write("next.yaml", config(&server(1, 1), false, "") + second).unwrap();
    let dry = lvsd_cli(&lvsd, &["--check-config", next.to_str().unwrap()]);
    assert_eq!(dry.status, 0, "{}", dry.stderr);
    assert_eq!(
        dry.stdout,
        format!(
            "{}: OK: 2 interface(s), 1 service(s), 1 real server(s)\na reload of the lvsd at {} would make 6 change(s):\n{changes}",
            next.display(),
            lvsd.socket().display()
        )
    );
    assert_eq!(lvsd.ipvsadm_ok(&["-L", "--timeout"]).unwrap(), "Timeout (tcp tcpfin udp): 900 9 300\n");

    std::fs::write(&cfg, config(&server(1, 1), false, "") + second).unwrap();
    let r = lvsd_cli(&lvsd, &["--reload"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert_eq!(r.stdout, format!("reloaded: 6 change(s)\n{changes}"));
    assert_eq!(lvsd.ipvsadm_ok(&["-L", "--timeout"]).unwrap(), "Timeout (tcp tcpfin udp): 900 7 60\n");
    assert_eq!(lvsd_cli(&lvsd, &["--reload"]).stdout, "reloaded: 0 change(s)\n");

    // Everything dropped from the file goes back to the defaults, one line each.
    std::fs::write(&cfg, config(&server(1, 1), false, "")).unwrap();
    let r = lvsd_cli(&lvsd, &["--reload"]);
    assert_eq!(
        r.stdout,
        "reloaded: 4 change(s)\n  classifier -D 1\n  --set 900 120 300\n  timeout syn_recv 60\n  sysctl net.ipv4.vs.expire_nodest_conn=0\n"
    );
}
