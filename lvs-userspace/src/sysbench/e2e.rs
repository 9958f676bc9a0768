//! End to end through the director: real clients and servers in network namespaces, lvs against
//! plain kernel forwarding and against HAProxy, all three measured in the same run.
//!
//! ```text
//!  [client] eth0 ------- to-clients [director] to-servers ------- eth0 [server]
//!  198.51.100.2-4/24     198.51.100.1/24        192.0.2.1/24       192.0.2.11/24
//!  default via .1        VIP 203.0.113.10/32 on lo                 default via 192.0.2.1
//! ```
//!
//! One real server, so the three modes differ only in what the director does:
//! - `forward`: no lvs, no proxy. The client talks to the real server's own address
//!   (192.0.2.11) and the director routes, as any Linux router. This is the floor every
//!   director pays anyway: the same hops, the same veths, the same server.
//! - `lvs`: lvsd (native XDP on both director interfaces) with a NAT service on the VIP for each
//!   port, one real server each; the client talks to the VIP.
//! - `haproxy`: HAProxy in TCP mode on the director, listening on the VIP, one backend server;
//!   the client talks to the VIP. HAProxy does not proxy UDP: no small-packet figure.
//!
//! Each mode's client has an address of its own (forward .2, lvs .3, HAProxy .4; the client's
//! default route names it as the source): a short connection of one mode must never meet the
//! real server's TIME_WAIT of another's. The forward and lvs modes would otherwise share the
//! server-side 4-tuples (client address and port, server address and port), but not the client's
//! TCP timestamps, whose offset the kernel derives from the 4-tuple the client sees (server or
//! VIP): a SYN reusing a port whose previous connection of the other mode is still in the
//! server's TIME_WAIT (60 s) carries, about half the time, an older timestamp. The server then
//! rejects it (PAWS, `TcpExtPAWSTimewait`) and answers with an ACK, the client resets and
//! retransmits its SYN a second later: a 1-s stall that wrk does not report (no socket error,
//! its latency starts after connect) and, in the lvs mode, a second new connection in the
//! dataplane for the same request. Measured with one shared address: 9 458 PAWS rejects and SYN
//! retransmits in 37 454 connections of the lvs mode run just after the forward one, 9 156 in
//! the forward mode run just after lvs.
//!
//! The veth settings are the same in every mode (GRO on and TX checksum offload off on the
//! client's and server's interfaces, which lvs's native XDP redirects need), so no mode gets
//! TSO the others lack. Every round measures every mode, rounds interleaved; each figure is the
//! median over the rounds.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::sys::{self, median, run, veth, Netns, Proc};

/// The client's address in each mode (see the module's comment): forward, lvs, HAProxy.
const CLIENT_IPS: [&str; 3] = ["198.51.100.2", "198.51.100.3", "198.51.100.4"];
const DIRECTOR_CLIENT_IP: &str = "198.51.100.1";
const DIRECTOR_SERVER_IP: &str = "192.0.2.1";
const SERVER_IP: &str = "192.0.2.11";
const VIP: &str = "203.0.113.10";
const CLIENT_MAC: &str = "02:00:00:00:00:02";
const DIRECTOR_CLIENT_MAC: &str = "02:00:00:00:00:d2";
const DIRECTOR_SERVER_MAC: &str = "02:00:00:00:00:d1";
const SERVER_MAC: &str = "02:00:00:00:00:11";
const HTTP_PORT: u16 = 80;
const IPERF_PORT: u16 = 5201;
/// The discard port: nothing listens, the server's kernel drops the datagrams (its ICMP
/// errors are rate-limited), so the figure is what the director delivers.
const UDP_PORT: u16 = 9;
/// wrk connections, as in the issue's reference figures.
const WRK_CONNECTIONS: u32 = 32;

pub const PROGRAMS: &[&str] = &["iperf3", "wrk", "haproxy", "nginx", "trafgen", "ethtool", "nsenter", "ip"];

#[derive(Clone, Debug)]
pub struct Options {
    /// Seconds per measurement.
    pub seconds: u32,
    /// Rounds (every mode, every metric, once per round).
    pub rounds: u32,
    /// Where lvsd and ipvsadm are.
    pub bin_dir: PathBuf,
    /// Scratch files (configs, logs).
    pub work: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    Forward,
    Lvs,
    Haproxy,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Forward, Mode::Lvs, Mode::Haproxy];
    pub fn name(self) -> &'static str {
        match self {
            Mode::Forward => "forward",
            Mode::Lvs => "lvs",
            Mode::Haproxy => "haproxy",
        }
    }
    /// The client's source address in this mode.
    fn client_ip(self) -> &'static str {
        CLIENT_IPS[self as usize]
    }
    fn target(self) -> &'static str {
        if self == Mode::Forward {
            SERVER_IP
        } else {
            VIP
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    Throughput,
    ShortConn,
    KeepAlive,
    SmallPackets,
}

impl Metric {
    pub const ALL: [Metric; 4] =
        [Metric::Throughput, Metric::ShortConn, Metric::KeepAlive, Metric::SmallPackets];
    pub fn name(self) -> &'static str {
        match self {
            Metric::Throughput => "tcp_throughput",
            Metric::ShortConn => "short_connections",
            Metric::KeepAlive => "keepalive_requests",
            Metric::SmallPackets => "small_packets",
        }
    }
    pub fn unit(self) -> &'static str {
        match self {
            Metric::Throughput => "Gbit/s",
            Metric::ShortConn => "conn/s",
            Metric::KeepAlive => "req/s",
            Metric::SmallPackets => "pkt/s",
        }
    }
    pub fn what(self) -> &'static str {
        match self {
            Metric::Throughput => "iperf3, one TCP stream, client to server",
            Metric::ShortConn => "wrk -t1 -c32 with `Connection: close`: a new TCP connection per HTTP request",
            Metric::KeepAlive => "wrk -t1 -c32, keep-alive HTTP requests",
            Metric::SmallPackets => "trafgen, 64-byte UDP frames of one flow, as fast as one CPU sends; delivered to the server's interface",
        }
    }
    /// The issue's target: lvs at least as fast as plain forwarding (not for small packets).
    fn has_target(self) -> bool {
        self != Metric::SmallPackets
    }
}

/// Every sample of one (metric, mode).
#[derive(Clone, Debug, Default)]
pub struct Samples {
    pub values: Vec<f64>,
    pub notes: Vec<String>,
    pub error: Option<String>,
}

pub struct Outcome {
    pub options: Options,
    pub results: BTreeMap<(Metric, Mode), Samples>,
    pub facts: Vec<String>,
    pub elapsed_s: f64,
}

impl Outcome {
    pub fn median(&self, metric: Metric, mode: Mode) -> Option<f64> {
        let s = self.results.get(&(metric, mode))?;
        if s.error.is_some() {
            return None;
        }
        median(&s.values)
    }
    pub fn failed(&self) -> Vec<String> {
        self.results
            .iter()
            .filter_map(|((m, md), s)| s.error.as_ref().map(|e| format!("{} {}: {e}", m.name(), md.name())))
            .collect()
    }
}

/// The three namespaces and the real server's programs.
struct Rig {
    // Fields drop in order: processes before their namespaces.
    nginx: Proc,
    _iperf: Proc,
    client: Netns,
    director: Netns,
    server: Netns,
}

fn build(o: &Options) -> anyhow::Result<Rig> {
    let tag = format!("lvsb{}", std::process::id());
    let client = Netns::new(&format!("{tag}c"))?;
    let director = Netns::new(&format!("{tag}d"))?;
    let server = Netns::new(&format!("{tag}s"))?;
    veth(&client, "eth0", CLIENT_MAC, &director, "to-clients", DIRECTOR_CLIENT_MAC)?;
    veth(&director, "to-servers", DIRECTOR_SERVER_MAC, &server, "eth0", SERVER_MAC)?;
    for ip in CLIENT_IPS {
        client.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
    }
    client.ip(&["route", "add", "default", "via", DIRECTOR_CLIENT_IP, "src", CLIENT_IPS[0]])?;
    director.ip(&["addr", "add", &format!("{DIRECTOR_CLIENT_IP}/24"), "dev", "to-clients"])?;
    director.ip(&["addr", "add", &format!("{DIRECTOR_SERVER_IP}/24"), "dev", "to-servers"])?;
    director.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
    server.ip(&["addr", "add", &format!("{SERVER_IP}/24"), "dev", "eth0"])?;
    server.ip(&["route", "add", "default", "via", DIRECTOR_SERVER_IP])?;
    // NAPI on the peers of the director's interfaces (native XDP redirects into a veth are
    // delivered only then); full checksums on the traffic the client and server originate.
    for (ns, dev) in [(&client, "eth0"), (&server, "eth0")] {
        ns.ethtool_k(dev, &[("gro", "on"), ("tx", "off")])?;
    }
    director.sysctl("net.ipv4.ip_forward", "1")?;
    for dev in ["all", "default", "lo", "to-clients", "to-servers"] {
        director.sysctl(&format!("net.ipv4.conf.{dev}.rp_filter"), "0")?;
    }
    for dev in ["to-clients", "to-servers"] {
        director.sysctl(&format!("net.ipv4.conf.{dev}.accept_local"), "1")?;
    }
    // Tens of thousands of short connections per measurement: the whole port range, and
    // reuse of TIME_WAIT ports, on both sides that open connections (HAProxy on the director).
    for ns in [&client, &director] {
        ns.sysctl("net.ipv4.ip_local_port_range", "1024 65535")?;
        ns.sysctl("net.ipv4.tcp_tw_reuse", "1")?;
    }
    server.sysctl("net.core.somaxconn", "4096")?;
    server.sysctl("net.ipv4.tcp_max_syn_backlog", "4096")?;

    let nginx_dir = o.work.join("nginx");
    std::fs::create_dir_all(&nginx_dir)?;
    let conf = nginx_dir.join("nginx.conf");
    let d = nginx_dir.display();
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 8192; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 10000000;\n\
               client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
               server {{ listen {HTTP_PORT} backlog=4096; location / {{ return 200 \"rs1\\n\"; }} }}\n}}\n"
        ),
    )?;
    let mut nginx = Proc::spawn(
        "nginx",
        server.cmd("nginx").arg("-p").arg(&nginx_dir).arg("-c").arg(&conf),
        &o.work.join("nginx.log"),
    )?;
    let mut iperf = Proc::spawn(
        "iperf3 server",
        server.cmd("iperf3").args(["-s", "-p", &IPERF_PORT.to_string()]),
        &o.work.join("iperf3-server.log"),
    )?;
    wait_listen(&server, HTTP_PORT, &mut nginx)?;
    wait_listen(&server, IPERF_PORT, &mut iperf)?;
    Ok(Rig { nginx, _iperf: iperf, client, director, server })
}

/// Waits until something listens on TCP `port` in `ns`, failing early if `p` died.
fn wait_listen(ns: &Netns, port: u16, p: &mut Proc) -> anyhow::Result<()> {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        p.check_alive()?;
        let out = run(ns.cmd("ss").args(["-Hltn", &format!("sport = :{port}")]))?;
        if !out.stdout.is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{} is not listening on port {port} after 10s: {}", p.name, p.log_tail())
}

/// What runs on the director in a mode (dropped when the mode's measurements end).
enum Director {
    Forward,
    Lvs { proc: Proc, socket: PathBuf, pin_dir: PathBuf, bin_dir: PathBuf },
    // Held only to be stopped on drop.
    Haproxy(#[allow(dead_code)] Proc),
}

impl Director {
    fn start(mode: Mode, rig: &Rig, o: &Options) -> anyhow::Result<Director> {
        match mode {
            Mode::Forward => Ok(Director::Forward),
            Mode::Lvs => {
                let cfg = o.work.join("lvsd.yaml");
                let svc = |proto: &str, port: u16| {
                    format!(
                        "  - {{protocol: {proto}, address: {VIP}, port: {port}, scheduler: rr, \
                         real_servers: [{{address: {SERVER_IP}, port: {port}, forward: masq}}]}}\n"
                    )
                };
                std::fs::write(
                    &cfg,
                    format!(
                        "interfaces: [to-clients, to-servers]\nxdp_mode: native\nservices:\n{}{}{}",
                        svc("tcp", HTTP_PORT),
                        svc("tcp", IPERF_PORT),
                        svc("udp", UDP_PORT)
                    ),
                )?;
                let socket = o.work.join("lvsd.sock");
                let pin_dir = PathBuf::from(format!("/sys/fs/bpf/lvsb{}", std::process::id()));
                let mut proc = Proc::spawn(
                    "lvsd",
                    rig.director
                        .cmd(&o.bin_dir.join("lvsd").to_string_lossy())
                        .arg("--config")
                        .arg(&cfg)
                        .arg("--pin-dir")
                        .arg(&pin_dir)
                        .arg("--socket")
                        .arg(&socket),
                    &o.work.join("lvsd.log"),
                )?;
                let bin = o.bin_dir.clone();
                let t = Instant::now();
                while counters(&bin, &socket).is_err() {
                    proc.check_alive()?;
                    if t.elapsed() > Duration::from_secs(20) {
                        bail!("lvsd did not answer within 20s: {}", proc.log_tail());
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(Director::Lvs { proc, socket, pin_dir, bin_dir: o.bin_dir.clone() })
            }
            Mode::Haproxy => {
                let cfg = o.work.join("haproxy.cfg");
                let fe = |name: &str, port: u16| {
                    format!(
                        "frontend fe_{name}\n  bind {VIP}:{port}\n  default_backend be_{name}\n\
                         backend be_{name}\n  server rs1 {SERVER_IP}:{port}\n"
                    )
                };
                std::fs::write(
                    &cfg,
                    format!(
                        "global\n  maxconn 8000\n\
                         defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n{}{}",
                        fe("http", HTTP_PORT),
                        fe("iperf", IPERF_PORT)
                    ),
                )?;
                let mut p = Proc::spawn(
                    "haproxy",
                    rig.director.cmd("haproxy").arg("-db").arg("-f").arg(&cfg),
                    &o.work.join("haproxy.log"),
                )?;
                wait_listen(&rig.director, HTTP_PORT, &mut p)?;
                wait_listen(&rig.director, IPERF_PORT, &mut p)?;
                Ok(Director::Haproxy(p))
            }
        }
    }

    fn counters(&self) -> Option<BTreeMap<String, u64>> {
        match self {
            Director::Lvs { socket, bin_dir, .. } => counters(bin_dir, socket).ok(),
            _ => None,
        }
    }
}

impl Drop for Director {
    fn drop(&mut self) {
        if let Director::Lvs { proc, pin_dir, .. } = self {
            // SIGTERM: lvsd detaches its program and removes its pins.
            proc.stop_with(libc::SIGTERM, Duration::from_secs(10));
            if pin_dir.exists() {
                let _ = std::fs::remove_dir_all(&pin_dir);
            }
        }
    }
}

/// `lvsd --counters`: the dataplane's verdict counters, summed over CPUs.
fn counters(bin_dir: &Path, socket: &Path) -> anyhow::Result<BTreeMap<String, u64>> {
    let out = run(Command::new(bin_dir.join("lvsd")).arg("--counters").arg("--socket").arg(socket))?;
    let mut m = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((k, v)) = line.split_once(' ') {
            if let Ok(v) = v.trim().parse() {
                m.insert(k.to_string(), v);
            }
        }
    }
    Ok(m)
}

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, k: &str) -> u64 {
    after.get(k).copied().unwrap_or(0).saturating_sub(before.get(k).copied().unwrap_or(0))
}

/// One figure and what to record beside it; `requests` is the count that must have gone
/// through the dataplane as new connections (lvs mode).
struct Figure {
    value: f64,
    note: Option<String>,
    new_connections: u64,
}

fn iperf3(rig: &Rig, mode: Mode, secs: u32) -> anyhow::Result<Figure> {
    let out = run(rig.client.cmd("iperf3").args([
        "-c",
        mode.target(),
        "-p",
        &IPERF_PORT.to_string(),
        "-t",
        &secs.to_string(),
        "--connect-timeout",
        "3000",
        "-J",
    ]))?;
    let v: Value = serde_json::from_slice(&out.stdout).context("iperf3 -J output")?;
    let bps =
        v["end"]["sum_received"]["bits_per_second"].as_f64().context("no end.sum_received in iperf3 -J")?;
    let retr = v["end"]["sum_sent"]["retransmits"].as_u64().unwrap_or(0);
    Ok(Figure { value: bps / 1e9, note: Some(format!("{retr} retransmits")), new_connections: 0 })
}

/// TCP counters that show connections stalling instead of completing, which wrk does not report
/// (a connect that takes a SYN retransmit is no socket error, and its latency starts after the
/// connect): SYN retransmits and resets sent, PAWS rejects of SYNs that met a TIME_WAIT, listen
/// queue drops and TIME_WAIT overflows. Read in all three namespaces: the director is the real
/// server's client in the HAProxy mode.
const TCP_WATCH: &[&str] = &[
    "TcpExtTCPSynRetrans",
    "TcpOutRsts",
    "TcpExtPAWSTimewait",
    "TcpExtListenOverflows",
    "TcpExtListenDrops",
    "TcpExtTCPTimeWaitOverflow",
];

/// The namespace's absolute SNMP counters (`nstat -asz`: absolute values, zeros included, and no
/// history file update: that file is shared between namespaces).
fn tcp_counters(ns: &Netns) -> anyhow::Result<BTreeMap<String, u64>> {
    let out = run(ns.cmd("nstat").arg("-asz"))?;
    Ok(parse_nstat(&String::from_utf8_lossy(&out.stdout)))
}

/// `nstat` lines (`Name value rate`; the `#kernel` header has no number) as name -> value.
fn parse_nstat(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.parse().ok()?))
        })
        .collect()
}

/// The [`TCP_WATCH`] counters that moved, as `client TcpExtTCPSynRetrans +N, ...`.
fn tcp_moved(rig: &Rig, before: &[BTreeMap<String, u64>]) -> anyhow::Result<String> {
    let mut moved = Vec::new();
    for ((name, ns), b) in [("client", &rig.client), ("director", &rig.director), ("server", &rig.server)]
        .into_iter()
        .zip(before)
    {
        let a = tcp_counters(ns)?;
        for k in TCP_WATCH {
            let d = delta(b, &a, k);
            if d > 0 {
                moved.push(format!("{name} {k} +{d}"));
            }
        }
    }
    if moved.is_empty() {
        return Ok("no SYN retransmit, reset, PAWS reject or listen drop".into());
    }
    Ok(moved.join(", "))
}

/// CPU time (user + system, µs) of this process's children that have been waited for: wrk's,
/// once it has exited.
fn children_cpu_us() -> u64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(ru.ru_utime) + us(ru.ru_stime)
}

/// CPU time (user + system, µs) of process `pid` and its children (nginx's master and worker).
fn tree_cpu_us(pid: u32) -> u64 {
    let ticks = |pid: &str| -> u64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
        // After the command name (which may hold spaces): state is field 3, utime 14, stime 15.
        let f: Vec<&str> =
            stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
        f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
    };
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let total: u64 = ticks(&pid.to_string()) + children.split_whitespace().map(ticks).sum::<u64>();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    total * 1_000_000 / hz
}

fn wrk(rig: &Rig, mode: Mode, secs: u32, close: bool) -> anyhow::Result<Figure> {
    let tcp_before = [&rig.client, &rig.director, &rig.server]
        .map(tcp_counters)
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The CPU that the client and the real server spend per request, softirq work done in
    // their context included (the director's packets are mostly handled there: the veths
    // deliver on the sender's CPU). Unlike the rate, this hardly moves with what else runs on
    // the machine, so it compares modes better on a shared one. HAProxy's own CPU is not in it.
    let (wrk_cpu0, nginx_cpu0) = (children_cpu_us(), tree_cpu_us(rig.nginx.pid()));
    let mut c = rig.client.cmd("wrk");
    c.args(["-t1", &format!("-c{WRK_CONNECTIONS}"), &format!("-d{secs}s"), "--timeout", "2s"]);
    if close {
        c.args(["-H", "Connection: close"]);
    }
    c.arg(format!("http://{}:{HTTP_PORT}/", mode.target()));
    let out = run(&mut c)?;
    let wrk_cpu = children_cpu_us().saturating_sub(wrk_cpu0);
    let nginx_cpu = tree_cpu_us(rig.nginx.pid()).saturating_sub(nginx_cpu0);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let rate: f64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk output: {text}"))?;
    let requests: u64 = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no request count in wrk output: {text}"))?;
    if requests == 0 {
        bail!("wrk completed no request: {text}");
    }
    let mut notes = vec![format!("{requests} requests")];
    for l in text.lines() {
        let l = l.trim();
        if l.starts_with("Socket errors:") || l.starts_with("Non-2xx") {
            notes.push(l.to_string());
        }
    }
    notes.push(format!(
        "cpu per request: wrk {:.2} µs, nginx {:.2} µs",
        wrk_cpu as f64 / requests as f64,
        nginx_cpu as f64 / requests as f64
    ));
    notes.push(format!("tcp: {}", tcp_moved(rig, &tcp_before)?));
    Ok(Figure {
        value: rate,
        note: Some(notes.join("; ")),
        new_connections: if close { requests } else { 0 },
    })
}

fn trafgen(rig: &Rig, mode: Mode, secs: u32, work: &Path) -> anyhow::Result<Figure> {
    let cfg = work.join(format!("trafgen-{}.cfg", mode.name()));
    // 14 + 20 + 8 + 18 = 60 bytes, 64 on a wire with the FCS. UDP checksum 0 (none), which
    // IPv4 allows and NAT keeps.
    std::fs::write(
        &cfg,
        format!(
            "{{\n  eth(da={DIRECTOR_CLIENT_MAC}, sa={CLIENT_MAC}, type=0x0800),\n  \
             ipv4(saddr={}, daddr={}, ttl=64),\n  udp(sport=40000, dport={UDP_PORT}, csum=0),\n  \
             fill(0x00, 18),\n}}\n",
            mode.client_ip(),
            mode.target()
        ),
    )?;
    let mut p = Proc::spawn_group(
        "trafgen",
        rig.client.cmd("trafgen").args(["-o", "eth0", "-P", "1", "--no-sock-mem", "-i"]).arg(&cfg),
        &work.join("trafgen.log"),
    )?
    .stop_signal(libc::SIGINT);
    // Let it reach its steady rate (and lvs create the flow's entry) before counting.
    std::thread::sleep(Duration::from_millis(500));
    p.check_alive()?;
    let (rx0, tx0) = (rig.server.link_packets("eth0", "rx")?, rig.client.link_packets("eth0", "tx")?);
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(secs as u64));
    let (rx1, tx1) = (rig.server.link_packets("eth0", "rx")?, rig.client.link_packets("eth0", "tx")?);
    let el = t.elapsed().as_secs_f64();
    p.check_alive()?;
    p.stop_with(libc::SIGINT, Duration::from_secs(5));
    let (rx, tx) = ((rx1 - rx0) as f64 / el, (tx1 - tx0) as f64 / el);
    if rx1 == rx0 {
        bail!("no packet reached the server ({tx:.0} pkt/s sent): {}", p.log_tail());
    }
    Ok(Figure {
        value: rx,
        note: Some(format!("sent {tx:.0} pkt/s, {:.1}% delivered", 100.0 * rx / tx.max(1.0))),
        new_connections: 0,
    })
}

fn measure(rig: &Rig, mode: Mode, metric: Metric, o: &Options) -> anyhow::Result<Figure> {
    match metric {
        Metric::Throughput => iperf3(rig, mode, o.seconds),
        Metric::ShortConn => wrk(rig, mode, o.seconds, true),
        Metric::KeepAlive => wrk(rig, mode, o.seconds, false),
        Metric::SmallPackets => trafgen(rig, mode, o.seconds, &o.work),
    }
}

pub fn run_all(o: Options) -> anyhow::Result<Outcome> {
    let t0 = Instant::now();
    sys::require(PROGRAMS)?;
    sys::become_subreaper()?;
    std::fs::create_dir_all(&o.work)?;
    let rig = build(&o).context("building the client / director / server namespaces")?;
    let mut results: BTreeMap<(Metric, Mode), Samples> = BTreeMap::new();
    for round in 1..=o.rounds {
        for mode in Mode::ALL {
            eprintln!("e2e round {round}/{}: {}", o.rounds, mode.name());
            // This mode's client address (see the module's comment): the default route's
            // source is what wrk, iperf3 and curl bind to.
            rig.client
                .ip(&["route", "replace", "default", "via", DIRECTOR_CLIENT_IP, "src", mode.client_ip()])?;
            let dir = Director::start(mode, &rig, &o)
                .with_context(|| format!("starting the {} director", mode.name()))?;
            // The real server answers through this director: a wrong path fails here, not in
            // the figures.
            let body = run(rig.client.cmd("curl").args([
                "-sS",
                "-m",
                "5",
                "-w",
                "%{local_ip}",
                &format!("http://{}:{HTTP_PORT}/", mode.target()),
            ]))
            .with_context(|| format!("a first request through the {} director", mode.name()))?;
            // The body, then the address the client sent from.
            if body.stdout != format!("rs1\n{}", mode.client_ip()).as_bytes() {
                bail!("{}: unexpected answer {:?}", mode.name(), String::from_utf8_lossy(&body.stdout));
            }
            for metric in Metric::ALL {
                let s = results.entry((metric, mode)).or_default();
                if mode == Mode::Haproxy && metric == Metric::SmallPackets {
                    if round == 1 {
                        s.notes.push("not measured: HAProxy does not proxy UDP".into());
                    }
                    continue;
                }
                if s.error.is_some() {
                    continue;
                }
                let before = dir.counters();
                match measure(&rig, mode, metric, &o) {
                    Ok(f) => {
                        eprintln!(
                            "  {}: {:.2} {} {}",
                            metric.name(),
                            f.value,
                            metric.unit(),
                            f.note.clone().unwrap_or_default()
                        );
                        if let (Some(b), Some(a)) = (&before, dir.counters()) {
                            let new = delta(b, &a, "new_conn");
                            let hit = delta(b, &a, "conn_hit");
                            // Every completed short connection was a new connection that the
                            // dataplane scheduled; fewer means traffic bypassed it.
                            if new < f.new_connections {
                                s.error = Some(format!(
                                    "the dataplane counted {new} new connections for {} completed ones",
                                    f.new_connections
                                ));
                                continue;
                            }
                            if hit == 0 {
                                s.error = Some("the dataplane saw no packet of an established flow".into());
                                continue;
                            }
                            // Every counter that moved: a path other than the one expected
                            // (e.g. handed to the kernel) shows here.
                            let moved: Vec<String> = a
                                .keys()
                                .filter_map(|k| Some((k, delta(b, &a, k))).filter(|(_, d)| *d > 0))
                                .map(|(k, d)| format!("{k} +{d}"))
                                .collect();
                            s.notes.push(format!("round {round}: dataplane {}", moved.join(", ")));
                        }
                        if let Some(n) = f.note {
                            s.notes.push(format!("round {round}: {n}"));
                        }
                        s.values.push(f.value);
                    }
                    Err(e) => {
                        eprintln!("  {}: FAILED: {e:#}", metric.name());
                        s.error = Some(format!("{e:#}"));
                    }
                }
            }
            drop(dir);
        }
    }
    let facts = vec![
        "one real server: nginx 1 worker, `return 200` of 4 bytes, keepalive_requests unlimited".into(),
        "forward: client to the real server's address through the director (kernel routing, no lvs, no proxy)".into(),
        "lvs: lvsd, native XDP on both director veths, NAT service on the VIP with the one real server".into(),
        "haproxy: HAProxy TCP mode on the director, listening on the VIP, one backend server".into(),
        format!("{} s per measurement, {} rounds, modes interleaved in each round; figure = median over rounds", o.seconds, o.rounds),
        "GRO on and TX checksum offload off on the client's and server's veths in every mode".into(),
        format!(
            "client address per mode (forward {}, lvs {}, haproxy {}): no SYN meets the real \
             server's TIME_WAIT of another mode's connection",
            CLIENT_IPS[0], CLIENT_IPS[1], CLIENT_IPS[2]
        ),
    ];
    Ok(Outcome { options: o, results, facts, elapsed_s: t0.elapsed().as_secs_f64() })
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn fmt_value(v: Option<f64>, m: Metric) -> String {
    match v {
        None => "-".into(),
        Some(v) if m == Metric::Throughput => format!("{v:.2}"),
        Some(v) => format!("{:.1}k", v / 1000.0),
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.2}x")).unwrap_or_else(|| "-".into())
}

/// The results as a Markdown table.
pub fn table(o: &Outcome) -> String {
    let mut s = String::from(
        "| metric | unit | forward | lvs | haproxy | lvs / forward | lvs / haproxy | haproxy / forward | target lvs >= forward |\n\
         |---|---|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for m in Metric::ALL {
        let f = o.median(m, Mode::Forward);
        let l = o.median(m, Mode::Lvs);
        let h = o.median(m, Mode::Haproxy);
        let lf = ratio(l, f);
        let target = match (m.has_target(), lf) {
            (false, _) => "-",
            (true, Some(r)) if r >= 1.0 => "met",
            (true, Some(_)) => "MISSED",
            (true, None) => "FAILED",
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            m.name(),
            m.unit(),
            fmt_value(f, m),
            fmt_value(l, m),
            fmt_value(h, m),
            fmt_ratio(lf),
            fmt_ratio(ratio(l, h)),
            fmt_ratio(ratio(h, f)),
            target
        ));
    }
    s
}

pub fn json(o: &Outcome) -> Value {
    let metrics: Vec<Value> = Metric::ALL
        .iter()
        .map(|&m| {
            let modes: serde_json::Map<String, Value> = Mode::ALL
                .iter()
                .map(|&md| {
                    let s = o.results.get(&(m, md)).cloned().unwrap_or_default();
                    (
                        md.name().to_string(),
                        json!({ "median": o.median(m, md), "runs": s.values, "error": s.error, "notes": s.notes }),
                    )
                })
                .collect();
            let (f, l, h) = (o.median(m, Mode::Forward), o.median(m, Mode::Lvs), o.median(m, Mode::Haproxy));
            json!({
                "name": m.name(),
                "what": m.what(),
                "unit": m.unit(),
                "modes": modes,
                "lvs_over_forward": ratio(l, f),
                "lvs_over_haproxy": ratio(l, h),
                "haproxy_over_forward": ratio(h, f),
                "target": if m.has_target() { Some("lvs >= forward") } else { None },
                "target_met": if m.has_target() { ratio(l, f).map(|r| r >= 1.0) } else { None },
            })
        })
        .collect();
    json!({
        "setup": o.facts,
        "seconds": o.options.seconds,
        "rounds": o.options.rounds,
        "elapsed_s": o.elapsed_s,
        "metrics": metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nstat_counters_and_their_deltas() {
        let before = parse_nstat(
            "#kernel\nTcpActiveOpens                  100                0.0\n\
             TcpExtTCPSynRetrans             7                  0.0\n\
             TcpExtPAWSTimewait              0                  0.0\n",
        );
        assert_eq!(before.len(), 3, "the #kernel header is no counter: {before:?}");
        assert_eq!(before["TcpExtTCPSynRetrans"], 7);
        let after = parse_nstat(
            "#kernel\nTcpActiveOpens 37554 0.0\nTcpExtTCPSynRetrans 9456 0.0\nTcpExtPAWSTimewait 9458 0.0\n",
        );
        assert_eq!(delta(&before, &after, "TcpExtTCPSynRetrans"), 9449);
        assert_eq!(delta(&before, &after, "TcpExtPAWSTimewait"), 9458);
        // A counter missing on either side counts as 0, never as a failure.
        assert_eq!(delta(&before, &after, "TcpExtListenDrops"), 0);
    }

    #[test]
    fn every_mode_has_a_client_address_of_its_own() {
        let addrs: std::collections::BTreeSet<&str> = Mode::ALL.iter().map(|m| m.client_ip()).collect();
        assert_eq!(addrs.len(), Mode::ALL.len(), "two modes would share the server's 4-tuples");
        assert!(addrs.iter().all(|a| a.starts_with("198.51.100.") && *a != DIRECTOR_CLIENT_IP));
    }
}
