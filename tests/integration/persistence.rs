//! Persistence templates and the two IPVS switches around them (`expire_quiescent_template`,
//! `expire_nodest_conn`), with real TCP traffic through a NAT director. The kernel-compared
//! behaviour of persistence (-p, -M, port-zero services, template expiry and postponement) is
//! the `persist` oracle scenario; these tests cover what it cannot: the switches.

use std::{
    io::{BufReader, ErrorKind},
    time::Duration,
};

use lvs_tests::*;

/// One TCP service on VIP:80 with rs1 and rs2 (kernel order rs2, rs1), optional persistence,
/// rs2's weight, and a `sysctls:` section.
fn config(persistent: bool, rs2_weight: u32, rs1_weight: u32, sysctls: &str) -> String {
    let p = if persistent { "    persistent: 60\n" } else { "" };
    format!(
        "interfaces: [{DIRECTOR_CLIENT_IF}, {DIRECTOR_SERVER_IF}]\n\
         connection_table_size: 4096\n\
         {sysctls}\
         services:\n\
         \x20 - protocol: tcp\n    address: {VIP}\n    port: 80\n    scheduler: rr\n{p}    real_servers:\n\
         \x20     - {{ address: {}, forward: masq, weight: {rs1_weight} }}\n\
         \x20     - {{ address: {}, forward: masq, weight: {rs2_weight} }}\n",
        rs_ip(1),
        rs_ip(2),
    )
}

fn who(topo: &Topology) -> String {
    topo.client.http_get(vip(80), "/").unwrap().text()
}

/// Rewrites the config, sends SIGHUP, and waits until the listing shows rs1's new weight
/// (lvsd writes the sysctls before the services, so they are in place by then).
fn reload(lvsd: &mut Lvsd, cfg: &std::path::Path, text: &str, rs1_weight: u32) {
    std::fs::write(cfg, text).unwrap();
    lvsd.process().signal(libc::SIGHUP).unwrap();
    let want = format!("  -> 192.0.2.11:80                Masq    {rs1_weight:<6} ");
    let mut last = String::new();
    let done = wait_for("reload", Duration::from_secs(5), || {
        last = lvsd.ipvsadm_ok(&["-L", "-n"])?;
        Ok(last.contains(&want).then_some(()))
    });
    assert!(done.is_ok(), "reload not applied:\n{last}");
}

#[test]
fn quiesced_server_keeps_template_clients_until_expire_quiescent_template() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(2).with_servers().build().unwrap();
    let tmp = TempDir::new("persist-quiesce").unwrap();
    let cfg = tmp.write("lvs.yaml", &config(true, 1, 1, "")).unwrap();
    let mut lvsd = Lvsd::start(&topo.director, &cfg).unwrap();

    // rr would alternate; the template keeps the client on its first server.
    for _ in 0..3 {
        assert_eq!(who(&topo), "rs2");
    }
    // Weight 0 with the default expire_quiescent_template=0: the client stays.
    reload(&mut lvsd, &cfg, &config(true, 0, 2, ""), 2);
    assert_eq!(who(&topo), "rs2");
    let pc = lvsd.ipvsadm_ok(&["-L", "-n", "--persistent-conn"]).unwrap();
    assert!(
        pc.contains("  -> 192.0.2.12:80                0         1           "),
        "rs2 should still hold the template:\n{pc}"
    );

    // expire_quiescent_template=1: the template is invalidated at its next use (moved to port
    // 65535, still listed until it expires) and the client is scheduled again.
    reload(&mut lvsd, &cfg, &config(true, 0, 3, "sysctls:\n  expire_quiescent_template: 1\n"), 3);
    assert_eq!(who(&topo), "rs1");
    assert_eq!(who(&topo), "rs1");
    let conns = lvsd.ipvsadm_ok(&["-L", "-n", "-c"]).unwrap();
    let template = |virt: &str, dest: &str| {
        conns.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() == 6 && f[0] == "TCP" && f[3] == "198.51.100.2:0" && f[4] == virt && f[5] == dest
        })
    };
    assert!(template("203.0.113.10:65535", "192.0.2.12:65535"), "no invalidated template:\n{conns}");
    assert!(template("203.0.113.10:80", "192.0.2.11:80"), "no new template to rs1:\n{conns}");
}


/// Holds a connection to rs2, deletes rs2, and returns what the next request on the connection
/// got, and the `-L -n -c` listing after it.
fn request_after_deleting_its_server(sysctls: &str, tag: &str) -> (std::io::Result<String>, String) {
    let topo = Topology::builder().real_servers(2).with_servers().build().unwrap();
    let tmp = TempDir::new(tag).unwrap();
    let cfg = tmp.write("lvs.yaml", &config(false, 1, 1, sysctls)).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    let mut conn = BufReader::new(topo.client.tcp_connect(vip(80), Duration::from_secs(5)).unwrap());
    conn.get_ref().set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert_eq!(lvs_tests::client::keepalive_get(&mut conn, "/").unwrap(), "rs2");
    lvsd.ipvsadm_ok(&["-d", "-t", "203.0.113.10:80", "-r", "192.0.2.12:80"]).unwrap();
    let got = lvs_tests::client::keepalive_get(&mut conn, "/");
    let conns = lvsd.ipvsadm_ok(&["-L", "-n", "-c"]).unwrap();
    (got, conns)
}

#[test]
fn deleted_server_connections_hang_by_default() {
    if !require_root() {
        return;
    }
    let (got, conns) = request_after_deleting_its_server("", "persist-nodest0");
    // expire_nodest_conn=0: the packets are dropped; the client hears nothing and the entry
    // stays until it times out.
    let e = got.expect_err("a request to a deleted server must not be answered");
    assert!(matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "unexpected {e:?}");
    assert!(conns.contains("ESTABLISHED 198.51.100.2:"), "entry gone:\n{conns}");
}

#[test]
fn expire_nodest_conn_ends_connections_of_a_deleted_server() {
    if !require_root() {
        return;
    }
    let (got, conns) = request_after_deleting_its_server("sysctls: {expire_nodest_conn: 1}\n", "persist-nodest1");
    // The entry is expired at the first packet, which then reaches the director's own stack
    // (the VIP is local there), which resets the connection: the client learns at once.
    let e = got.expect_err("the connection must end");
    assert!(
        matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof),
        "the client should see a reset, got {e:?}"
    );
    assert!(!conns.contains("192.0.2.12:80"), "the entry should be gone:\n{conns}");
}
