//! Traffic statistics (`ipvsadm -L -n --stats/--rate --exact`, `-Z`) against real traffic
//! through the NAT director, with the numbers computed from what the test itself sent and
//! received and from the real servers' own TCP segment counters.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    time::Duration,
};

use lvs_tests::*;

fn config() -> String {
    let mut servers = String::new();
    for i in 1..=2 {
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

/// Conns, InPkts, OutPkts, InBytes, OutBytes.
type Row = [u64; 5];

fn add(a: Row, b: Row) -> Row {
    std::array::from_fn(|i| a[i] + b[i])
}

/// A real server's TCP segment counters (`/proc/net/snmp` of its namespace): InSegs, OutSegs.
fn tcp_segs(ns: &Netns) -> (u64, u64) {
    let snmp = ns.output("cat", ["/proc/net/snmp"]).unwrap().stdout_str();
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let names: Vec<&str> = tcp.next().unwrap().split_whitespace().collect();
    let values: Vec<&str> = tcp.next().unwrap().split_whitespace().collect();
    let get = |n: &str| values[names.iter().position(|x| *x == n).unwrap()].parse::<u64>().unwrap();
    (get("InSegs"), get("OutSegs"))
}

/// One HTTP exchange on a raw socket: returns the server's bytes (headers and body).
fn http_exchange(topo: &Topology, request: &[u8]) -> u64 {
    let mut s = topo.client.tcp_connect(vip(80), Duration::from_secs(3)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert!(got.starts_with(b"HTTP/1."), "{}", String::from_utf8_lossy(&got));
    got.len() as u64
}

/// The `--stats --exact` listing for the rows of the TCP service's rs1, rs2 and the UDP
/// service's rs1, rs2.
fn stats_listing(rows: &BTreeMap<(&str, usize), Row>) -> String {
    let num = |v: u64| {
        let d = v.to_string();
        let w = if d.len() <= 8 { 9 } else { d.len() + 1 };
        format!("{d:>w$}")
    };
    let line = |prefix: String, r: Row| prefix + &r.iter().map(|&v| num(v)).collect::<String>() + "\n";
    let mut out = String::from(
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n\
         \x20 -> RemoteAddress:Port\n",
    );
    for (proto, port) in [("TCP", 80u16), ("UDP", 53)] {
        let svc = add(rows[&(proto, 1)], rows[&(proto, 2)]);
        out += &line(format!("{:<33}", format!("{proto}  {VIP}:{port}")), svc);
        for i in 1..=2 {
            out += &line(format!("  -> {:<28}", format!("{}:{port}", rs_ip(i))), rows[&(proto, i)]);
        }
    }
    out
}

#[test]
fn stats_count_exact_packets_and_bytes_then_zero_and_survive_restart() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(2).with_servers().build().unwrap();
    // Without timestamps, SACK and window scaling a TCP header is 20 bytes, plus the 4-byte
    // MSS option on SYN and SYN-ACK only: every packet's size follows from its payload.
    let plain_tcp = [("net.ipv4.tcp_timestamps", "0"), ("net.ipv4.tcp_sack", "0"), ("net.ipv4.tcp_window_scaling", "0")];
    topo.client.sysctls(&plain_tcp).unwrap();
    for i in 1..=2 {
        topo.rs(i).sysctls(&plain_tcp).unwrap();
    }
    let tmp = TempDir::new("stats").unwrap();
    let cfg = tmp.write("lvs.yaml", config()).unwrap();
    let mut first = Lvsd::start(&topo.director, &cfg).unwrap();

    let before: Vec<(u64, u64)> = (1..=2).map(|i| tcp_segs(topo.rs(i))).collect();
    // 5 HTTP connections: rr sends 1, 3, 5 to rs2 and 2, 4 to rs1 (newest first).
    let request = format!("GET / HTTP/1.1\r\nHost: {VIP}\r\nConnection: close\r\n\r\n").into_bytes();
    let mut reply_bytes = [0u64; 3];
    let mut conns = [0u64; 3];
    for n in 0..5 {
        let rs = if n % 2 == 0 { 2 } else { 1 };
        reply_bytes[rs] += http_exchange(&topo, &request);
        conns[rs] += 1;
    }
    // UDP: each datagram from a new port is a new connection; the echo answers
    // `<rs name>:<payload>`. IP header 20 + UDP header 8 + payload.
    let mut udp: BTreeMap<usize, Row> = BTreeMap::from([(1, [0; 5]), (2, [0; 5])]);
    for len in [1usize, 10, 100, 1000, 1400, 7] {
        let payload = vec![b'x'; len];
        let reply = topo.client.udp_request(vip(53), &payload, Duration::from_secs(3)).unwrap();
        let rs: usize = String::from_utf8_lossy(&reply[2..3]).parse().unwrap();
        let r = udp.get_mut(&rs).unwrap();
        *r = add(*r, [1, 1, 1, 28 + len as u64, 28 + reply.len() as u64]);
    }
    assert_eq!(udp[&1][0] + udp[&2][0], 6);

    // The closing handshakes finish asynchronously: wait until what the real servers counted
    // and what the director shows agree.
    let mut want = String::new();
    let mut got = String::new();
    let settled = wait_for("stats to match the real servers' segment counts", Duration::from_secs(10), || {
        let mut rows = BTreeMap::new();
        for i in 1..=2 {
            let (in_segs, out_segs) = tcp_segs(topo.rs(i));
            let (inp, outp) = (in_segs - before[i - 1].0, out_segs - before[i - 1].1);
            // Every segment: 20 + 20 bytes; the SYN and SYN-ACK 4 more; plus the payloads.
            let inb = 40 * inp + 4 * conns[i] + request.len() as u64 * conns[i];
            let outb = 40 * outp + 4 * conns[i] + reply_bytes[i];
            rows.insert(("TCP", i), [conns[i], inp, outp, inb, outb]);
            rows.insert(("UDP", i), udp[&i]);
        }
        want = stats_listing(&rows);
        got = first.ipvsadm_ok(&["-L", "-n", "--stats", "--exact"])?;
        Ok((got == want).then_some(()))
    });
    assert!(settled.is_ok(), "--stats --exact\n got:\n{got}\nwant:\n{want}");
    let tcp_in_pkts: u64 = want.lines().nth(3).unwrap().split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(tcp_in_pkts >= 5 * 4, "{want}");

    // The estimator: within two or three ticks the services show a rate.
    let rate_of = |l: &Lvsd, svc: &str| -> u64 {
        let out = l.ipvsadm_ok(&["-L", "-n", "--rate", "--exact"]).unwrap();
        let line = out.lines().find(|x| x.starts_with(svc)).unwrap().to_string();
        line.split_whitespace().nth(5).unwrap().parse().unwrap()
    };
    let tcp_svc = format!("TCP  {VIP}:80");
    let udp_svc = format!("UDP  {VIP}:53");
    wait_for("a TCP InBPS rate", Duration::from_secs(7), || Ok((rate_of(&first, &tcp_svc) > 0).then_some(()))).unwrap();

    // -Z of one service: it and its real servers go to zero, rates included; the other keeps
    // its numbers.
    first.ipvsadm_ok(&["-Z", "-t", &format!("{VIP}:80")]).unwrap();
    let out = first.ipvsadm_ok(&["-L", "-n", "--stats", "--exact"]).unwrap();
    let zero_row = |name: &str| format!("{name}{}", "        0".repeat(5));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[3], zero_row(&format!("{tcp_svc:<33}")), "{out}");
    assert_eq!(lines[4], zero_row(&format!("  -> {:<28}", format!("{}:80", rs_ip(1)))), "{out}");
    assert_eq!(lines[5], zero_row(&format!("  -> {:<28}", format!("{}:80", rs_ip(2)))), "{out}");
    assert_eq!(&lines[6..], &want.lines().skip(6).collect::<Vec<_>>()[..], "UDP untouched:\n{out}");
    assert_eq!(rate_of(&first, &tcp_svc), 0);
    // A missing service: the kernel's error.
    let o = first.ipvsadm(&["-Z", "-t", "203.0.113.99:80"]).unwrap();
    assert_eq!((o.status.code(), o.stderr_str().as_str()), (Some(255), "No such service\n"));

    // -Z of everything.
    first.ipvsadm_ok(&["-Z"]).unwrap();
    let zeroed = first.ipvsadm_ok(&["-L", "-n", "--stats", "--exact"]).unwrap();
    assert!(zeroed.lines().skip(3).all(|l| l.ends_with("        0        0        0        0        0")), "{zeroed}");
    assert_eq!(rate_of(&first, &udp_svc), 0);

    // New traffic counts from zero: one UDP datagram of 50 bytes and its reply.
    let reply = topo.client.udp_request(vip(53), &[b'y'; 50], Duration::from_secs(3)).unwrap();
    let rs: usize = String::from_utf8_lossy(&reply[2..3]).parse().unwrap();
    let after = first.ipvsadm_ok(&["-L", "-n", "--stats", "--exact"]).unwrap();
    let want_udp = format!("{:<33}{:>9}{:>9}{:>9}{:>9}{:>9}", udp_svc, 1, 1, 1, 78, 78 + 4);
    assert!(after.contains(&format!("{want_udp}\n")), "{after}");
    let want_rs = format!("{:<33}{:>9}{:>9}{:>9}{:>9}{:>9}", format!("  -> {}:53", rs_ip(rs)), 1, 1, 1, 78, 82);
    assert!(after.contains(&format!("{want_rs}\n")), "{after}");

    // SIGKILL and a restart on the same pins: the counters are the dataplane's, unchanged.
    first.process().signal(libc::SIGKILL).unwrap();
    first.process().wait_timeout(Duration::from_secs(5)).unwrap().expect("lvsd died");
    let second =
        Lvsd::start_at(&topo.director, &cfg, first.pin_dir(), first.socket(), &[], TempDir::new("stats2").unwrap())
            .unwrap();
    assert_eq!(second.ipvsadm_ok(&["-L", "-n", "--stats", "--exact"]).unwrap(), after);
    // ... and keep counting.
    topo.client.udp_request(vip(53), &[b'z'; 10], Duration::from_secs(3)).unwrap();
    let later = second.ipvsadm_ok(&["-L", "-n", "--stats", "--exact"]).unwrap();
    let want_udp = format!("{:<33}{:>9}{:>9}{:>9}{:>9}{:>9}", udp_svc, 2, 2, 2, 78 + 38, 82 + 42);
    assert!(later.contains(&format!("{want_udp}\n")), "{later}");
    // The restarted lvsd took the pinned links over and still reports their real mode.
    let text = scrape(&topo);
    for iface in [DIRECTOR_CLIENT_IF, DIRECTOR_SERVER_IF] {
        assert!(text.contains(&format!("lvs_xdp_attached{{interface=\"{iface}\",mode=\"native\"}} 1\n")), "{text}");
    }

    // A real server deleted and added back (from IPVS's dest trash) keeps its counters; the
    // service's stay as they were.
    let rs_line = |l: &str| l.lines().find(|x| x.starts_with(&format!("  -> {}:53 ", rs_ip(rs)))).unwrap().to_string();
    let before = rs_line(&later);
    second.ipvsadm_ok(&["-d", "-u", &format!("{VIP}:53"), "-r", &format!("{}:53", rs_ip(rs))]).unwrap();
    second.ipvsadm_ok(&["-a", "-u", &format!("{VIP}:53"), "-r", &format!("{}:53", rs_ip(rs)), "-m"]).unwrap();
    let revived = second.ipvsadm_ok(&["-L", "-n", "--stats", "--exact"]).unwrap();
    assert_eq!(rs_line(&revived), before, "{revived}");
    assert!(revived.contains(&format!("{want_udp}\n")), "{revived}");
    drop(second);
    drop(first);
}

/// `GET /metrics` from inside the director's namespace.
fn scrape(topo: &Topology) -> String {
    let out = topo
        .director
        .output_timeout("curl", ["-sS", "--max-time", "5", "http://127.0.0.1:9117/metrics"], Duration::from_secs(10))
        .unwrap();
    assert!(out.success(), "curl /metrics: {}", out.stderr_str());
    out.stdout_str()
}

/// The value of the sample `name{labels}` in an exposition (labels exactly as lvsd writes them).
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' '))).map(|v| v.parse().unwrap())
}

/// `ipvsadm -L -n --stats --exact` as (node_exporter-style labels of the object, its five
/// numbers); services have no remote labels.
fn ipvsadm_rows(listing: &str) -> Vec<(String, Row)> {
    let mut rows = Vec::new();
    let mut svc = String::new();
    for l in listing.lines().skip(3) {
        let w: Vec<&str> = l.split_whitespace().collect();
        let nums: Row = std::array::from_fn(|i| w[w.len() - 5 + i].parse().unwrap());
        if w[0] == "->" {
            let (a, p) = w[1].rsplit_once(':').unwrap();
            rows.push((format!("{svc},remote_address=\"{a}\",remote_port=\"{p}\""), nums));
        } else {
            let (a, p) = w[1].rsplit_once(':').unwrap();
            svc = format!("local_address=\"{a}\",local_port=\"{p}\",local_mark=\"\",proto=\"{}\"", w[0]);
            rows.push((svc.clone(), nums));
        }
    }
    rows
}

const COUNTER_NAMES: [&str; 5] =
    ["connections_total", "incoming_packets_total", "outgoing_packets_total", "incoming_bytes_total", "outgoing_bytes_total"];

#[test]
fn prometheus_scrapes_lvsd_and_agrees_with_ipvsadm() {
    if !require_root() {
        return;
    }
    let _load = timing_exclusive();
    if std::process::Command::new("promtool").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        assert!(std::env::var_os("CI").is_none(), "promtool missing (Debian package prometheus; cargo xtask setup)");
        eprintln!("skipping: promtool/prometheus not installed (cargo xtask setup installs them)");
        return;
    }
    let topo = Topology::builder().real_servers(2).with_servers().build().unwrap();
    let tmp = TempDir::new("metrics").unwrap();
    let cfg_text = config() + "metrics_address: 127.0.0.1:9117\n";
    let cfg = tmp.write("lvs.yaml", &cfg_text).unwrap();
    let mut lvsd = Lvsd::start(&topo.director, &cfg).unwrap();

    // Traffic through both services.
    for _ in 0..6 {
        topo.client.http_get(vip(80), "/").unwrap();
    }
    for i in 0..5 {
        topo.client.udp_request(vip(53), &vec![b'u'; 20 * (i + 1)], Duration::from_secs(3)).unwrap();
    }
    // Wait for the TCP closes to finish: two equal listings a second apart.
    let mut prev = String::new();
    let listing = wait_for("stats to settle", Duration::from_secs(10), || {
        std::thread::sleep(Duration::from_secs(1));
        let cur = lvsd.ipvsadm_ok(&["-L", "-n", "--stats", "--exact"])?;
        let done = cur == prev;
        prev = cur.clone();
        Ok(done.then_some(cur))
    })
    .unwrap();
    let rows = ipvsadm_rows(&listing);
    assert_eq!(rows.len(), 6, "{listing}");
    assert_eq!(rows[0].1[0], 6, "{listing}");

    // The exposition: promtool accepts it, and it says what ipvsadm says.
    let text = scrape(&topo);
    let file = tmp.write("metrics.txt", &text).unwrap();
    let check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert!(
        check.status.success() && check.stdout.is_empty() && check.stderr.is_empty(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    for (labels, nums) in &rows {
        let kind = if labels.contains("remote_address") { "backend" } else { "service" };
        for (name, want) in COUNTER_NAMES.iter().zip(nums) {
            let series = format!("lvs_ipvs_{kind}_{name}{{{labels}}}");
            assert_eq!(sample(&text, &series), Some(*want), "{series}\n{text}");
        }
    }
    let total_conns: u64 = rows.iter().filter(|(l, _)| !l.contains("remote_address")).map(|(_, n)| n[0]).sum();
    assert_eq!(sample(&text, "lvs_ipvs_connections_total"), Some(total_conns));
    assert_eq!(sample(&text, "lvs_connection_table_capacity"), Some(4096));
    assert_eq!(sample(&text, "lvs_dataplane_new_connections_total"), Some(total_conns));
    for iface in [DIRECTOR_CLIENT_IF, DIRECTOR_SERVER_IF] {
        assert!(
            text.contains(&format!("lvs_xdp_attached{{interface=\"{iface}\",mode=\"native\"}} 1\n")),
            "{iface}:\n{text}"
        );
    }

    // A real Prometheus, on the director's loopback, scraping every second.
    let prom_cfg = tmp
        .write(
            "prometheus.yml",
            "global: { scrape_interval: 1s, evaluation_interval: 1s }\n\
             scrape_configs:\n  - job_name: lvs\n    static_configs: [ { targets: ['127.0.0.1:9117'] } ]\n",
        )
        .unwrap();
    let data = TempDir::new("prometheus-data").unwrap();
    let _prom = topo
        .director
        .spawn(
            "prometheus",
            "prometheus",
            [
                format!("--config.file={}", prom_cfg.display()),
                format!("--storage.tsdb.path={}", data.join("tsdb").display()),
                "--web.listen-address=127.0.0.1:9090".to_string(),
            ],
        )
        .unwrap();
    // Every counter of every object, as Prometheus's HTTP API returns it.
    let query = |expr: &str| -> Vec<(String, u64)> {
        let out = topo
            .director
            .output_timeout("promtool", ["query", "instant", "http://127.0.0.1:9090", expr], Duration::from_secs(10))
            .unwrap();
        if !out.success() {
            return Vec::new();
        }
        out.stdout_str()
            .lines()
            .filter_map(|l| {
                let (series, rest) = l.split_once(" => ")?;
                let v = rest.split_whitespace().next()?.parse::<u64>().ok()?;
                Some((series.to_string(), v))
            })
            .collect()
    };
    let mut mismatch = String::new();
    let agreed = wait_for("Prometheus to hold lvsd's counters", Duration::from_secs(40), || {
        mismatch.clear();
        for kind in ["service", "backend"] {
            for (i, name) in COUNTER_NAMES.iter().enumerate() {
                let got = query(&format!("lvs_ipvs_{kind}_{name}"));
                for (labels, nums) in rows.iter().filter(|(l, _)| l.contains("remote_address") == (kind == "backend")) {
                    // promtool prints labels sorted, as `name="value"` joined by ", ".
                    // Prometheus drops empty labels (local_mark="" of address services).
                    let mut want_labels: Vec<String> =
                        labels.split(',').filter(|l| !l.ends_with("=\"\"")).map(String::from).collect();
                    want_labels.push("instance=\"127.0.0.1:9117\"".into());
                    want_labels.push("job=\"lvs\"".into());
                    let found = got.iter().find(|(s, _)| want_labels.iter().all(|w| s.contains(w.as_str())));
                    if found.map(|(_, v)| *v) != Some(nums[i]) {
                        mismatch += &format!("{kind} {name} {labels}: prometheus {found:?}, ipvsadm {}\n", nums[i]);
                        mismatch += &format!("  prometheus answered: {got:?}\n");
                    }
                }
            }
        }
        Ok(mismatch.is_empty().then_some(()))
    });
    assert!(agreed.is_ok(), "{mismatch}");
    // And the same once more against ipvsadm now: nothing moved meanwhile.
    assert_eq!(lvsd.ipvsadm_ok(&["-L", "-n", "--stats", "--exact"]).unwrap(), listing);

    // A refused reload shows in the health metrics.
    let before = sample(&scrape(&topo), "lvs_control_requests_total{result=\"ok\"}").unwrap();
    assert!(before >= 3, "ipvsadm requests counted: {before}");
    std::fs::write(&cfg, "interfaces: [\n").unwrap();
    lvsd.process().signal(libc::SIGHUP).unwrap();
    let text = wait_for("the failed reload in /metrics", Duration::from_secs(5), || {
        let t = scrape(&topo);
        Ok((sample(&t, "lvs_config_reloads_total{result=\"failure\"}") == Some(1)).then_some(t))
    })
    .unwrap();
    assert_eq!(sample(&text, "lvs_config_last_reload_success"), Some(0));
    assert_eq!(sample(&text, "lvs_config_reloads_total{result=\"success\"}"), Some(0));
    drop(_prom);
    drop(data);
    drop(lvsd);
}

#[test]
fn busy_metrics_address_is_refused_before_anything_is_attached() {
    if !require_root() {
        return;
    }
    let topo = Topology::builder().real_servers(2).build().unwrap();
    let tmp = TempDir::new("metrics-busy").unwrap();
    // Something already listens on the metrics port in the director's namespace.
    let _taken = topo.director.enter(|| std::net::TcpListener::bind("127.0.0.1:9117")).unwrap().unwrap();
    let cfg = tmp.write("lvs.yaml", config()).unwrap();
    let (out, pins_left) = Lvsd::refusing(&topo.director, &cfg, &tmp, "metrics-busy").unwrap();
    assert!(
        out.stderr_str().contains("cannot serve metrics on 127.0.0.1:9117 (metrics_address)"),
        "{}",
        out.stderr_str()
    );
    assert!(!pins_left, "pins left behind");
    assert!(!topo.director.xdp_attached(DIRECTOR_CLIENT_IF).unwrap(), "left attached");
}
