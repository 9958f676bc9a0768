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

/// A TCP connection from local `port` in `ns` to `dst` (std cannot bind before connecting).
fn connect_from_port(ns: &Netns, port: u16, dst: std::net::SocketAddr) -> anyhow::Result<std::net::TcpStream> {
    use std::{net::SocketAddr, os::fd::FromRawFd};
    let SocketAddr::V4(dst) = dst else { anyhow::bail!("IPv4 only: {dst}") };
    let sin = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
        sin_zero: [0; 8],
    };
    let (local, remote) = (sin(std::net::Ipv4Addr::UNSPECIFIED, port), sin(*dst.ip(), dst.port()));
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let fd = ns.enter(move || -> std::io::Result<i32> {
        // SAFETY: plain syscalls on a socket this closure owns until it returns it.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::bind(fd, (&raw const local).cast(), len) != 0
                || libc::connect(fd, (&raw const remote).cast(), len) != 0
            {
                let e = std::io::Error::last_os_error();
                libc::close(fd);
                return Err(e);
            }
            Ok(fd)
        }
    })??;
    // SAFETY: `fd` is a connected TCP socket that nothing else owns.
    Ok(unsafe { std::net::TcpStream::from_raw_fd(fd) })
}

/// Two requests from the same client port, the second while the first connection's entry is in
/// TIME_WAIT: what `ipvsadm -L -n --stats --exact` counts as the service's connections, and
/// the `-L -n -c` listing just before the second request.
fn conns_after_port_reuse(persistent: bool, tag: &str) -> (u64, String) {
    let topo = Topology::builder().real_servers(2).with_servers().build().unwrap();
    let tmp = TempDir::new(tag).unwrap();
    let cfg = tmp.write("lvs.yaml", &config(persistent, 1, 1, "")).unwrap();
    let lvsd = Lvsd::start(&topo.director, &cfg).unwrap();
    // `Connection: close`, read to the end: the real server closes first, so the client holds
    // no TIME_WAIT and may bind the same port again at once; lvs sees both FINs and keeps the
    // entry in TIME_WAIT.
    let get = || {
        let s = connect_from_port(&topo.client, 40000, vip(80)).unwrap();
        lvs_tests::client::http_get_on(s, &vip(80).to_string(), "/").unwrap()
    };
    assert_eq!(get().text(), "rs2");
    let mut listing = String::new();
    let settled = wait_for("the first connection in TIME_WAIT", Duration::from_secs(5), || {
        listing = lvsd.ipvsadm_ok(&["-L", "-n", "-c"])?;
        Ok(listing.contains("TIME_WAIT   198.51.100.2:40000").then_some(()))
    });
    assert!(settled.is_ok(), "no TIME_WAIT entry for the client's port:\n{listing}");
    // The same 4-tuple again: the real server (which also holds it in TIME_WAIT) accepts the
    // SYN, whose timestamp is later; a persistent client stays on rs2 either way.
    let second = get().text();
    if persistent {
        assert_eq!(second, "rs2");
    }
    let stats = lvsd.ipvsadm_ok(&["-L", "-n", "--stats", "--exact"]).unwrap();
    let conns = stats
        .lines()
        .find(|l| l.starts_with("TCP  203.0.113.10:80"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no service row in:\n{stats}"));
    (conns, listing)
}

#[test]
fn syn_reusing_a_time_wait_entry_is_a_new_connection_unless_persistent() {
    if !require_root() {
        return;
    }
    // conn_reuse_mode 1: the TIME_WAIT entry is expired and the SYN scheduled as a new
    // connection (the service counts two).
    let (conns, listing) = conns_after_port_reuse(false, "persist-reuse0");
    assert_eq!(conns, 2, "without persistence the reused port is a new connection\n{listing}");
    // Under a persistence template the entry is controlled and IPVS does not reuse it: the SYN
    // goes on through the same entry, and the service counts one connection.
    let (conns, listing) = conns_after_port_reuse(true, "persist-reuse1");
    assert_eq!(conns, 1, "a persistent connection must not be rescheduled on reuse\n{listing}");
}
