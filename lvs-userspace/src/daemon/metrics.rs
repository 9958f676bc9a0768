//! Prometheus metrics: `GET /metrics` in the text exposition format (version 0.0.4), served by
//! a small blocking HTTP/1.1 server on its own thread, read from the pinned maps at scrape
//! time.
//!
//! Per service and per real server the names are node_exporter's IPVS collector's with `lvs_`
//! for `node_` (`lvs_ipvs_backend_connections_active`, ...) and its labels `local_address`,
//! `local_port`, `local_mark`, `proto`, `remote_address`, `remote_port`, so its dashboards and
//! alerts port by renaming the prefix. No label ever carries a client address or port.

use std::{
    fmt::Write as _,
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use lvs_common::counters::Counter;
use tracing::{info, warn};

use super::Daemon;
use crate::model::{ServiceKey, Stats};

/// What the daemon records for the health metrics (kept in `Daemon`, read at scrape time).
#[derive(Clone, Debug, Default)]
pub struct Health {
    /// Control requests answered, successful and refused.
    pub requests_ok: u64,
    pub requests_failed: u64,
    /// Configuration reloads (SIGHUP, `lvsd --reload`).
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// Unix time of the last reload attempt, and whether it succeeded (1) or not (0).
    pub last_reload_time: f64,
    pub last_reload_ok: bool,
    /// Interfaces with the XDP program and its mode as the kernel reports it (`native`,
    /// `generic`; `kept` if a link taken over from an earlier lvsd could not be asked).
    pub attachments: Vec<(String, &'static str)>,
    /// Seconds the previous scrape took.
    pub last_scrape_seconds: f64,
}

/// Unix time now, in seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Serves `listener` until `stop` is set. One request per connection, one connection at a
/// time: scrapes are rare and the daemon's lock serialises them anyway.
pub fn spawn(listener: TcpListener, daemon: Arc<Mutex<Daemon>>, stop: Arc<AtomicBool>) -> std::io::Result<std::thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((conn, _)) => {
                    if let Err(e) = serve_one(conn, &daemon) {
                        warn!(error = %e, "metrics request failed");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    warn!(error = %e, "metrics accept failed");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    })
}

fn serve_one(conn: TcpStream, daemon: &Arc<Mutex<Daemon>>) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The headers are read and ignored (bounded, so a client cannot make us buffer forever).
    let mut header = String::new();
    for _ in 0..100 {
        header.clear();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => {
            let start = Instant::now();
            let mut d = daemon.lock().expect("daemon lock");
            let mut text = render(&d);
            let took = start.elapsed().as_secs_f64();
            family(&mut text, "lvs_scrape_duration_seconds", "gauge", "How long reading the maps for this scrape took.");
            let _ = writeln!(text, "lvs_scrape_duration_seconds {took}");
            d.health.last_scrape_seconds = took;
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", text)
        }
        ("GET", _) => ("404 Not Found", "text/plain; charset=utf-8", "lvsd serves /metrics only\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain; charset=utf-8", "only GET\n".to_string()),
    };
    let mut out = conn;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}

/// `# HELP` and `# TYPE` of one metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value as the exposition format wants it.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// node_exporter's service labels: fwmark services have an empty address and port and their
/// mark in `local_mark`; address services an empty `local_mark`.
fn service_labels(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Addr { protocol, addr, port } => format!(
            "local_address=\"{addr}\",local_port=\"{port}\",local_mark=\"\",proto=\"{}\"",
            protocol.ipvs_name()
        ),
        ServiceKey::Fwmark { mark, .. } => {
            format!("local_address=\"\",local_port=\"0\",local_mark=\"{mark}\",proto=\"FWM\"")
        }
    }
}

/// The five counters and five rates of [`Stats`] under `prefix` (`lvs_ipvs_service` or
/// `lvs_ipvs_backend`), one sample per labelled object.
fn stats_families(out: &mut String, prefix: &str, what: &str, rows: &[(String, Stats)]) {
    type Get = fn(&Stats) -> u64;
    let counters: [(&str, &str, Get); 5] = [
        ("connections_total", "Connections scheduled", |s| s.conns),
        ("incoming_packets_total", "Packets from clients", |s| s.inpkts),
        ("outgoing_packets_total", "Packets from real servers (NAT only)", |s| s.outpkts),
        ("incoming_bytes_total", "Bytes (whole IP packets) from clients", |s| s.inbytes),
        ("outgoing_bytes_total", "Bytes (whole IP packets) from real servers (NAT only)", |s| s.outbytes),
    ];
    for (name, help, get) in counters {
        let full = format!("{prefix}_{name}");
        family(out, &full, "counter", &format!("{help} to this {what} since it was created or last zeroed (ipvsadm --stats)."));
        for (labels, s) in rows {
            let _ = writeln!(out, "{full}{{{labels}}} {}", get(s));
        }
    }
    let rates: [(&str, &str, Get); 5] = [
        ("connection_rate", "Connections per second", |s| s.cps),
        ("incoming_packet_rate", "Packets per second from clients", |s| s.inpps),
        ("outgoing_packet_rate", "Packets per second from real servers", |s| s.outpps),
        ("incoming_byte_rate", "Bytes per second from clients", |s| s.inbps),
        ("outgoing_byte_rate", "Bytes per second from real servers", |s| s.outbps),
    ];
    for (name, help, get) in rates {
        let full = format!("{prefix}_{name}");
        family(out, &full, "gauge", &format!("{help} of this {what}, IPVS's 2-second estimator (ipvsadm --rate)."));
        for (labels, s) in rows {
            let _ = writeln!(out, "{full}{{{labels}}} {}", get(s));
        }
    }
}

/// The whole exposition, but for the scrape duration (added by the caller).
pub fn render(d: &Daemon) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let t = &d.tables;

    family(&mut out, "lvs_build_info", "gauge", "lvsd's version and map layout; always 1.");
    let _ = writeln!(
        out,
        "lvs_build_info{{version=\"{}\",map_abi=\"{}\",ipvs_version=\"1.2.1\"}} 1",
        env!("CARGO_PKG_VERSION"),
        lvs_common::MAP_ABI_VERSION
    );

    // Totals, named as node_exporter names the kernel's /proc/net/ip_vs_stats.
    let tot = d.vs.totals(t);
    for (name, help, v) in [
        ("lvs_ipvs_connections_total", "Connections scheduled by the director since start or the last ipvsadm -Z.", tot.conns),
        ("lvs_ipvs_incoming_packets_total", "Packets from clients to virtual services.", tot.inpkts),
        ("lvs_ipvs_outgoing_packets_total", "Packets from real servers back to clients (NAT).", tot.outpkts),
        ("lvs_ipvs_incoming_bytes_total", "Bytes (whole IP packets) from clients to virtual services.", tot.inbytes),
        ("lvs_ipvs_outgoing_bytes_total", "Bytes (whole IP packets) from real servers back to clients (NAT).", tot.outbytes),
    ] {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    }

    for (name, help, v) in [
        ("lvs_ipvs_connection_rate", "Connections per second through the director (2-second estimator).", tot.cps),
        ("lvs_ipvs_incoming_packet_rate", "Packets per second from clients.", tot.inpps),
        ("lvs_ipvs_outgoing_packet_rate", "Packets per second from real servers.", tot.outpps),
        ("lvs_ipvs_incoming_byte_rate", "Bytes per second from clients.", tot.inbps),
        ("lvs_ipvs_outgoing_byte_rate", "Bytes per second from real servers.", tot.outbps),
    ] {
        family(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {v}");
    }

    let services = d.vs.list(t);
    let svc_rows: Vec<(String, Stats)> = services.iter().map(|s| (service_labels(&s.spec.key), s.stats)).collect();
    let mut dest_rows = Vec::new();
    let mut dest_info = Vec::new();
    for s in &services {
        let sl = service_labels(&s.spec.key);
        for dst in &s.dests {
            let labels = format!("{sl},remote_address=\"{}\",remote_port=\"{}\"", dst.spec.addr, dst.spec.port);
            dest_rows.push((labels.clone(), dst.stats));
            dest_info.push((labels, dst));
        }
    }
    family(&mut out, "lvs_ipvs_services", "gauge", "Virtual services configured.");
    let _ = writeln!(out, "lvs_ipvs_services {}", services.len());
    family(&mut out, "lvs_ipvs_service_info", "gauge", "One per virtual service, with its scheduler; always 1.");
    for s in &services {
        let _ = writeln!(
            out,
            "lvs_ipvs_service_info{{{},scheduler=\"{}\"}} 1",
            service_labels(&s.spec.key),
            esc(&s.spec.scheduler)
        );
    }
    stats_families(&mut out, "lvs_ipvs_service", "service", &svc_rows);

    type DestGet = fn(&crate::model::DestStatus) -> i64;
    let gauges: [(&str, &str, DestGet); 4] = [
        ("lvs_ipvs_backend_connections_active", "Connections in an active TCP state (ActiveConn).", |d| d.active_conns as i64),
        ("lvs_ipvs_backend_connections_inactive", "Other connections, UDP included (InActConn).", |d| d.inact_conns as i64),
        ("lvs_ipvs_backend_connections_persistent", "Persistence templates pointing at the real server (PersistConn).", |d| d.persist_conns as i64),
        ("lvs_ipvs_backend_weight", "Weight of the real server; 0 takes no new connections.", |d| d.spec.weight as i64),
    ];
    for (name, help, get) in gauges {
        family(&mut out, name, "gauge", help);
        for (labels, dst) in &dest_info {
            let _ = writeln!(out, "{name}{{{labels}}} {}", get(dst));
        }
    }
    stats_families(&mut out, "lvs_ipvs_backend", "real server", &dest_rows);

    // Dataplane verdicts: every packet the XDP program sees ends in exactly one of these.
    if let Ok(counters) = t.counters() {
        family(&mut out, "lvs_dataplane_packets_total", "counter", "Packets seen by the XDP program, by XDP verdict and the reason for it (lvs-common counters), summed over CPUs.");
        for (c, v) in &counters {
            if let Some(verdict) = verdict_of(*c) {
                let _ = writeln!(out, "lvs_dataplane_packets_total{{verdict=\"{verdict}\",reason=\"{}\"}} {v}", c.name());
            }
        }
        family(&mut out, "lvs_dataplane_drops_total", "counter", "Packets dropped by the XDP program, by reason (a subset of lvs_dataplane_packets_total; drop_conn_table_full counts table-full events).");
        for (c, v) in &counters {
            if verdict_of(*c) == Some("drop") {
                let _ = writeln!(out, "lvs_dataplane_drops_total{{reason=\"{}\"}} {v}", c.name());
            }
        }
        for (c, name, help) in [
            (Counter::NewConn, "lvs_dataplane_new_connections_total", "Connections created in the connection table."),
            (Counter::ConnHit, "lvs_dataplane_connection_hits_total", "Packets that matched a tracked connection, either direction."),
            (Counter::PassFragment, "lvs_dataplane_fragments_total", "IPv4 later fragments whose first fragment was not forwarded here, handed to the kernel unbalanced."),
            (Counter::FragTracked, "lvs_dataplane_fragment_datagrams_total", "First fragments forwarded and entered in the fragment table (IPv4 and IPv6)."),
            (Counter::FragHit, "lvs_dataplane_fragment_hits_total", "Later fragments sent where their first fragment went (IPv4 and IPv6)."),
            (Counter::TxIcmpUnreachable, "lvs_dataplane_icmp_sent_total", "ICMP port unreachable messages sent to clients."),
        ] {
            let v = counters.iter().find(|(x, _)| *x == c).map(|(_, v)| *v).unwrap_or(0);
            family(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {v}");
        }
    }

    family(&mut out, "lvs_connection_table_entries", "gauge", "Connections in the dataplane's connection table (ActiveConn + InActConn of every real server, deleted ones included).");
    let _ = writeln!(out, "lvs_connection_table_entries {}", t.counter_memory.total_connections());
    family(&mut out, "lvs_connection_table_capacity", "gauge", "Capacity of the connection table (connection_table_size).");
    let _ = writeln!(out, "lvs_connection_table_capacity {}", d.info.conn_table_size);

    family(&mut out, "lvs_xdp_attached", "gauge", "1 for each interface the XDP program is attached to, with its mode as the kernel reports it (native, generic).");
    for (iface, mode) in &d.health.attachments {
        let _ = writeln!(out, "lvs_xdp_attached{{interface=\"{}\",mode=\"{mode}\"}} 1", esc(iface));
    }

    let h = &d.health;
    family(&mut out, "lvs_config_reloads_total", "counter", "Configuration reloads (SIGHUP, lvsd --reload), by result.");
    let _ = writeln!(out, "lvs_config_reloads_total{{result=\"success\"}} {}", h.reloads_ok);
    let _ = writeln!(out, "lvs_config_reloads_total{{result=\"failure\"}} {}", h.reloads_failed);
    family(&mut out, "lvs_config_last_reload_success", "gauge", "1 if the last configuration load (start or reload) succeeded.");
    let _ = writeln!(out, "lvs_config_last_reload_success {}", u8::from(h.last_reload_ok));
    family(&mut out, "lvs_config_last_reload_timestamp_seconds", "gauge", "Unix time of the last configuration load (start or reload).");
    let _ = writeln!(out, "lvs_config_last_reload_timestamp_seconds {}", h.last_reload_time);
    family(&mut out, "lvs_control_requests_total", "counter", "Requests on the control socket (ipvsadm), by result.");
    let _ = writeln!(out, "lvs_control_requests_total{{result=\"ok\"}} {}", h.requests_ok);
    let _ = writeln!(out, "lvs_control_requests_total{{result=\"error\"}} {}", h.requests_failed);
    family(&mut out, "lvs_last_scrape_duration_seconds", "gauge", "How long the previous scrape took.");
    let _ = writeln!(out, "lvs_last_scrape_duration_seconds {}", h.last_scrape_seconds);
    out
}

/// The XDP verdict a final counter stands for (the informational ones are not verdicts).
fn verdict_of(c: Counter) -> Option<&'static str> {
    if c.is_informational() {
        return None;
    }
    Some(match c.verdict() {
        lvs_common::counters::XDP_DROP => "drop",
        lvs_common::counters::XDP_REDIRECT => "redirect",
        _ => "pass",
    })
}

/// Binds the metrics address; a clear error names it.
pub fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    let l = TcpListener::bind(addr).map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr} (metrics_address): {e}"))?;
    info!(address = %addr, "serving Prometheus metrics on /metrics");
    Ok(l)
}
