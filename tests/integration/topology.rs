//! The rig itself, with plain kernel forwarding (no lvsd): proves the harness before any
//! dataplane test relies on it.

use lvs_tests::*;
use std::time::Duration;

#[test]
fn kernel_forwarding_reaches_each_real_server() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(2).with_servers().build().unwrap();

    for i in 1..=2 {
        let r = topo.client.curl(&format!("http://{}/", rs_ip(i)), &[]).unwrap();
        assert_eq!((r.status, r.text()), (200, rs_name(i)), "curl to rs{i}");
        let r = topo.client.http_get(sa(rs_ip(i), RS_HTTP_PORT), "/").unwrap();
        assert_eq!((r.status, r.text()), (200, rs_name(i)), "Rust client to rs{i}");
        assert_eq!(r.header("x-server"), Some(rs_name(i).as_str()));
    }
    // Plain routing keeps the client's address: the real server sees 198.51.100.2.
    let peer = topo.client.http_get(sa(rs_ip(2), RS_HTTP_PORT), "/peer").unwrap().text();
    assert!(peer.starts_with(&format!("{CLIENT_IP}:")), "rs2 saw {peer}");

    let r = topo.client.curl(&format!("http://{DIRECTOR_CLIENT_IP}:{DIRECTOR_HTTP_PORT}/"), &[]).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "director"));

    let r = topo.client.curl(&format!("http://{}/nope", rs_ip(1)), &[]).unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(topo.rs_http_hits(), vec![3, 3]);
}

#[test]
fn udp_echo_through_kernel_forwarding() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(2).with_servers().build().unwrap();
    for i in 1..=2 {
        let reply = topo.client.udp_request(sa(rs_ip(i), RS_UDP_PORT), b"hello", Duration::from_secs(3)).unwrap();
        assert_eq!(String::from_utf8_lossy(&reply), format!("rs{i}:hello"));
    }
    assert_eq!(topo.rs_udp_hits(), vec![1, 1]);
    // Nothing listens on the VIP without lvsd: no reply, and the helper times out promptly.
    assert!(topo.client.udp_request(vip(RS_UDP_PORT), b"x", Duration::from_millis(300)).is_err());
}

#[test]
fn large_transfer_and_keepalive_with_three_servers() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(3).with_servers().build().unwrap();
    const N: u64 = 10 * 1024 * 1024 + 7;
    let r = topo.client.http_get(sa(rs_ip(3), RS_HTTP_PORT), &format!("/bytes/{N}")).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len() as u64, N);
    assert!(r.body == expected_bytes(N), "10 MB body differs from the pattern");

    // Two requests on one keep-alive connection; the server closes after `Connection: close`.
    use std::io::{Read, Write};
    let mut s = topo.client.tcp_connect(sa(rs_ip(3), RS_HTTP_PORT), Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /bytes/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert!(text.contains("rs3\n") && all.ends_with(&[0, 1, 2]), "{text}");
    assert_eq!(topo.rs_http_hits(), vec![0, 0, 3]);
}

#[test]
fn rig_settings_and_cleanup() {
    if !require_root() {
        return;
    }
    let names;
    {
        let topo = Topology::new(2).unwrap();
        names = [&topo.client, &topo.director, &topo.lan, topo.rs(1), topo.rs(2)]
            .iter()
            .map(|n| n.name().to_string())
            .collect::<Vec<_>>();
        let d = &topo.director;
        assert_eq!(d.sysctl_get("net.ipv4.ip_forward").unwrap(), "1");
        assert_eq!(d.sysctl_get("net.ipv4.conf.all.rp_filter").unwrap(), "0");
        assert_eq!(d.sysctl_get("net.ipv4.conf.to-servers.rp_filter").unwrap(), "0");
        assert_eq!(d.sysctl_get("net.ipv4.conf.to-clients.accept_local").unwrap(), "1");
        let feats = topo.lan.run("ethtool", ["-k", LAN_DIRECTOR_PORT]).unwrap().stdout_str();
        assert!(feats.contains("generic-receive-offload: on"), "{feats}");
        let feats = topo.rs(1).run("ethtool", ["-k", RS_IF]).unwrap().stdout_str();
        assert!(feats.contains("tx-checksumming: off"), "{feats}");
        assert!(d.run("ip", ["-4", "addr", "show", "lo"]).unwrap().stdout_str().contains("203.0.113.10/32"));

        // A guarded process: stopped by SIGTERM and reaped; stderr captured.
        let mut p = topo.director.spawn("sleeper", "sh", ["-c", "echo started >&2; exec sleep 60"]).unwrap();
        let pid = p.pid();
        p.wait_until("stderr line", Duration::from_secs(5), || p_stderr_has(pid)).unwrap();
        assert!(p.stderr().contains("started"));
        let st = p.stop().unwrap();
        assert!(!st.success(), "sleep killed by SIGTERM");
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    for n in names {
        assert!(!left.contains(&n), "namespace {n} left behind");
    }
}

fn p_stderr_has(pid: u32) -> bool {
    // The child is `sleep` once the shell has exec'd, after it printed its line.
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
}
