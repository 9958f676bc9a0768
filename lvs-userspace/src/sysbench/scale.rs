//! Scale and control plane: 10 000 services x 10 real servers applied through `ipvsadm -R` and
//! through the YAML config, listed, reloaded with 1 % changed; then the memory of the
//! connection maps holding 2^20 connections.
//!
//! Everything runs against a real lvsd in a namespace of its own (one veth, generic XDP: no
//! traffic flows, only the control plane and the maps are measured).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use aya::maps::{HashMap, Map, MapData};
use lvs_common::{
    flow::{conn_flags, ConnEntry, ConnRef, FlowKey},
    map_names, tcp_state, AF_INET,
};
use serde_json::{json, Value};

use super::sys::{self, median, run, Netns, Proc};
use crate::daemon::{dataplane::PinLayout, tables};

pub const SERVICES: usize = 10_000;
pub const SERVERS_PER_SERVICE: usize = 10;
/// Connections tracked for the memory figure: the table's whole capacity.
pub const CONNECTIONS: u32 = 1 << 20;

#[derive(Clone, Debug)]
pub struct Options {
    pub bin_dir: PathBuf,
    pub work: PathBuf,
    /// Repetitions of each timing (median reported).
    pub rounds: u32,
}

/// One figure: value, unit, and target when the issue sets one.
#[derive(Clone, Debug)]
pub struct Row {
    pub name: String,
    pub what: String,
    pub unit: &'static str,
    pub runs: Vec<f64>,
    /// Upper bound the issue sets.
    pub target_max: Option<f64>,
    pub notes: Vec<String>,
}

impl Row {
    fn new(name: &str, what: &str, unit: &'static str, target_max: Option<f64>) -> Row {
        Row { name: name.into(), what: what.into(), unit, runs: Vec::new(), target_max, notes: Vec::new() }
    }
    pub fn value(&self) -> Option<f64> {
        median(&self.runs)
    }
    pub fn verdict(&self) -> &'static str {
        match (self.target_max, self.value()) {
            (Some(t), Some(v)) if v <= t => "met",
            (Some(_), Some(_)) => "MISSED",
            _ => "-",
        }
    }
}

pub struct Outcome {
    pub rows: Vec<Row>,
    pub maps: Vec<Value>,
    pub elapsed_s: f64,
}

/// `i`-th VIP: 198.18.0.0/16 numbered from 0.
fn vip(i: usize) -> String {
    format!("198.18.{}.{}", i / 256, i % 256)
}
/// `j`-th real server of service `i` (198.19.j.x; shared between services, as real fleets do).
fn rs(i: usize, j: usize) -> String {
    format!("198.19.{j}.{}", i % 250 + 1)
}

fn restore_file() -> String {
    let mut s = String::with_capacity(SERVICES * 500);
    for i in 0..SERVICES {
        let _ = writeln!(s, "-A -t {}:80 -s wlc", vip(i));
        for j in 0..SERVERS_PER_SERVICE {
            let _ = writeln!(s, "-a -t {}:80 -r {}:8080 -m -w 1", vip(i), rs(i, j));
        }
    }
    s
}

/// The YAML config; `bump` services (every 100th when 1 % is asked) get weight 2 instead of 1.
fn yaml(table_size: u32, changed: bool) -> String {
    let mut s =
        format!("interfaces: [va]\nxdp_mode: generic\nconnection_table_size: {table_size}\nservices:\n");
    for i in 0..SERVICES {
        let w = if changed && i % 100 == 0 { 2 } else { 1 };
        let _ =
            write!(s, "  - {{protocol: tcp, address: {}, port: 80, scheduler: wlc, real_servers: [", vip(i));
        for j in 0..SERVERS_PER_SERVICE {
            let sep = if j == 0 { "" } else { ", " };
            let _ = write!(s, "{sep}{{address: {}, port: 8080, forward: masq, weight: {w}}}", rs(i, j));
        }
        s.push_str("]}\n");
    }
    s
}

struct Lvsd {
    proc: Proc,
    socket: PathBuf,
    pin_dir: PathBuf,
    bin_dir: PathBuf,
}

impl Lvsd {
    /// Starts lvsd on `config`; returns it and the time until it answered a full listing.
    fn start(ns: &Netns, o: &Options, config: &Path, expect_lines: usize) -> anyhow::Result<(Lvsd, f64)> {
        let socket = o.work.join("scale.sock");
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/lvsb{}-scale", std::process::id()));
        let t = Instant::now();
        let proc = Proc::spawn(
            "lvsd",
            ns.cmd(&o.bin_dir.join("lvsd").to_string_lossy())
                .arg("--config")
                .arg(config)
                .arg("--pin-dir")
                .arg(&pin_dir)
                .arg("--socket")
                .arg(&socket),
            &o.work.join("scale-lvsd.log"),
        )?;
        let mut d = Lvsd { proc, socket, pin_dir, bin_dir: o.bin_dir.clone() };
        loop {
            d.proc.check_alive()?;
            if let Ok(out) = d.ipvsadm(&["-S", "-n"], None) {
                let n = out.lines().count();
                if n == expect_lines {
                    break;
                }
                bail!("lvsd started with {n} rules, expected {expect_lines}");
            }
            if t.elapsed() > Duration::from_secs(120) {
                bail!("lvsd did not answer within 120s: {}", d.proc.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok((d, t.elapsed().as_secs_f64()))
    }

    fn ipvsadm(&self, args: &[&str], stdin: Option<&Path>) -> anyhow::Result<String> {
        let mut c = Command::new(self.bin_dir.join("ipvsadm"));
        c.args(args).env("LVS_SOCKET", &self.socket);
        let out = match stdin {
            Some(p) => {
                let f = std::fs::File::open(p)?;
                let out = c.stdin(f).output()?;
                if !out.status.success() {
                    bail!("ipvsadm {args:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
                }
                out
            }
            None => run(&mut c)?,
        };
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn timed(&self, args: &[&str], stdin: Option<&Path>) -> anyhow::Result<(f64, String)> {
        let t = Instant::now();
        let out = self.ipvsadm(args, stdin)?;
        Ok((t.elapsed().as_secs_f64(), out))
    }
}

impl Drop for Lvsd {
    fn drop(&mut self) {
        self.proc.stop_with(libc::SIGTERM, Duration::from_secs(20));
        if self.pin_dir.exists() {
            let _ = std::fs::remove_dir_all(&self.pin_dir);
        }
    }
}

pub fn run_all(o: Options) -> anyhow::Result<Outcome> {
    let t0 = Instant::now();
    std::fs::create_dir_all(&o.work)?;
    let ns = Netns::new(&format!("lvsb{}x", std::process::id()))?;
    sys::run(
        Command::new("ip").args(["-n", &ns.name, "link", "add", "va", "type", "veth", "peer", "name", "vb"]),
    )?;
    ns.ip(&["link", "set", "va", "up"])?;
    ns.ip(&["link", "set", "vb", "up"])?;

    let rules = o.work.join("rules.txt");
    std::fs::write(&rules, restore_file())?;
    let minimal = o.work.join("minimal.yaml");
    std::fs::write(
        &minimal,
        format!("interfaces: [va]\nxdp_mode: generic\nconnection_table_size: {CONNECTIONS}\n"),
    )?;
    let config = o.work.join("scale.yaml");
    let (base, changed) = (yaml(CONNECTIONS, false), yaml(CONNECTIONS, true));
    let n_rules = SERVICES * (SERVERS_PER_SERVICE + 1);
    let list_lines = n_rules + 3;

    let mut start_empty = Row::new(
        "lvsd_start_empty",
        "lvsd start with no service (load, attach, first answer): part of the YAML figure",
        "s",
        None,
    );
    let mut restore = Row::new(
        "apply_ipvsadm_restore",
        "ipvsadm -R of 10 000 services x 10 real servers (110 000 lines) into an empty lvsd",
        "s",
        Some(5.0),
    );
    let mut list = Row::new("list_ipvsadm_L_n", "ipvsadm -L -n of those (110 003 lines)", "s", None);
    let mut save = Row::new("list_ipvsadm_S_n", "ipvsadm -S -n of those (110 000 lines)", "s", None);
    let mut yaml_start = Row::new(
        "apply_yaml_start",
        "lvsd start on a YAML config of 10 000 services x 10 real servers, until it lists them all",
        "s",
        Some(5.0),
    );
    let mut reload = Row::new(
        "reload_1_percent",
        "lvsd --reload after 1 % of the services changed (100 services, 1 000 real-server weights)",
        "s",
        Some(0.5),
    );

    for round in 1..=o.rounds {
        eprintln!("scale round {round}/{}", o.rounds);
        {
            let (d, t) = Lvsd::start(&ns, &o, &minimal, 0)?;
            start_empty.runs.push(t);
            let (t, _) = d.timed(&["-R"], Some(&rules))?;
            restore.runs.push(t);
            let (t, out) = d.timed(&["-L", "-n"], None)?;
            if out.lines().count() != list_lines {
                bail!("ipvsadm -L -n printed {} lines, expected {list_lines}", out.lines().count());
            }
            list.runs.push(t);
            let (t, out) = d.timed(&["-S", "-n"], None)?;
            if out.lines().count() != n_rules {
                bail!("ipvsadm -S -n printed {} lines, expected {n_rules}", out.lines().count());
            }
            save.runs.push(t);
            eprintln!(
                "  start {:.2}s, -R {:.2}s, -L -n {:.2}s, -S -n {:.2}s",
                start_empty.runs.last().unwrap(),
                restore.runs.last().unwrap(),
                list.runs.last().unwrap(),
                t
            );
        }
        std::fs::write(&config, &base)?;
        let (d, t) = Lvsd::start(&ns, &o, &config, n_rules)?;
        yaml_start.runs.push(t);
        // Two reloads per round: 1 % changed, then changed back.
        for (text, what) in [(&changed, "weights 2"), (&base, "weights back to 1")] {
            std::fs::write(&config, text)?;
            let t = Instant::now();
            let out =
                run(Command::new(o.bin_dir.join("lvsd")).arg("--reload").arg("--socket").arg(&d.socket))?;
            let el = t.elapsed().as_secs_f64();
            let n = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.trim_start().starts_with("-e "))
                .count();
            if n != SERVICES / 100 * SERVERS_PER_SERVICE {
                bail!(
                    "lvsd --reload ({what}) printed {n} real-server edits, expected {}",
                    SERVICES / 100 * SERVERS_PER_SERVICE
                );
            }
            reload.runs.push(el);
        }
        eprintln!("  yaml start {t:.2}s, reloads {:?}", &reload.runs[reload.runs.len() - 2..]);
        if round == o.rounds {
            let maps = connection_memory(&d)?;
            drop(d);
            let mut rows = vec![start_empty, restore, list, save, yaml_start, reload];
            rows.extend(maps.0);
            return Ok(Outcome { rows, maps: maps.1, elapsed_s: t0.elapsed().as_secs_f64() });
        }
    }
    bail!("no round ran")
}

/// Fills `CONNS` and `CONNS_OUT` with [`CONNECTIONS`] NAT connections (as the dataplane creates
/// them: one entry each way) and reads every map's memory from the kernel.
fn connection_memory(d: &Lvsd) -> anyhow::Result<(Vec<Row>, Vec<Value>)> {
    let maps_dir = PinLayout::new(&d.pin_dir).maps();
    let open = |name: &str| -> anyhow::Result<Map> {
        let p = maps_dir.join(name);
        Ok(Map::from_map_data(MapData::from_pin(&p).with_context(|| format!("opening {}", p.display()))?)?)
    };
    let mut conns: HashMap<MapData, FlowKey, ConnEntry> = HashMap::try_from(open(map_names::CONNS)?)?;
    let mut conns_out: HashMap<MapData, FlowKey, ConnRef> = HashMap::try_from(open(map_names::CONNS_OUT)?)?;
    let before = map_memory(d.proc.pid())?;
    let t = Instant::now();
    let now = tables::monotonic_ns();
    let vip = tables::addr_words("198.18.0.0".parse()?).0;
    let rs = tables::addr_words("198.19.0.1".parse()?).0;
    let mut filled = 0u32;
    for n in 0..CONNECTIONS {
        // Clients in 198.18.128.0/17 (benchmarking space), 256 source ports each.
        let client =
            [u32::from_be_bytes([198, 18, 128 | (n >> 16) as u8 & 0x7f, (n >> 8) as u8]).to_be(), 0, 0, 0];
        let in_key = FlowKey {
            src: client,
            dst: vip,
            sport: (1024 + (n & 0xff) as u16).to_be(),
            dport: 80u16.to_be(),
            proto: 6,
            family: AF_INET,
            _pad: [0; 2],
        };
        let e = ConnEntry {
            vaddr: vip,
            daddr: rs,
            vport: 80u16.to_be(),
            dport: 8080u16.to_be(),
            fwd: 0,
            state: tcp_state::ESTABLISHED,
            flags: conn_flags::NAT,
            svc_id: 0,
            dest_id: 0,
            // Far beyond the run: the reclaimer removes none of them while they are counted.
            expires_ns: now + 86_400 * 1_000_000_000,
            active: 0,
            ctl_mask: 0,
            ctl_mark: 0,
        };
        conns.insert(in_key, e, 0).with_context(|| format!("CONNS entry {n}"))?;
        conns_out
            .insert(tables::out_key(&in_key, &e), ConnRef { in_key }, 0)
            .with_context(|| format!("CONNS_OUT entry {n}"))?;
        filled += 1;
    }
    let fill_s = t.elapsed().as_secs_f64();
    let count = conns.keys().count();
    if count != CONNECTIONS as usize {
        bail!("CONNS holds {count} entries after inserting {filled}, expected {CONNECTIONS}");
    }
    let after = map_memory(d.proc.pid())?;
    let per_conn = [map_names::CONNS, map_names::CONNS_OUT];
    let total_conn: u64 = per_conn.iter().filter_map(|n| after.get(*n).map(|m| m.memlock)).sum();
    let total_all: u64 = after.values().map(|m| m.memlock).sum();
    let mut row = Row::new(
        "bytes_per_connection",
        "kernel-reported memory (fdinfo memlock) of CONNS + CONNS_OUT holding 2^20 NAT connections, per connection",
        "bytes",
        Some(128.0),
    );
    row.runs.push(total_conn as f64 / CONNECTIONS as f64);
    row.notes.push(format!("filled in {fill_s:.1}s from userspace, one entry in each map per connection"));
    for n in per_conn {
        if let (Some(b), Some(a)) = (before.get(n), after.get(n)) {
            row.notes.push(format!(
                "{n}: {} bytes for {} entries max ({} bytes empty), {:.1} bytes per connection",
                a.memlock,
                a.max_entries,
                b.memlock,
                a.memlock as f64 / CONNECTIONS as f64
            ));
        }
    }
    let mut all = Row::new(
        "bytes_all_maps_per_connection",
        "memory of every lvsd map (2^20-entry connection table, 10 000 services), per connection",
        "bytes",
        None,
    );
    all.runs.push(total_all as f64 / CONNECTIONS as f64);
    let maps: Vec<Value> = after
        .iter()
        .map(|(name, m)| json!({"name": name, "map_type": m.map_type, "max_entries": m.max_entries, "memlock_bytes": m.memlock, "memlock_bytes_empty_table": before.get(name).map(|b| b.memlock)}))
        .collect();
    Ok((vec![row, all], maps))
}

struct MapMem {
    map_type: u32,
    max_entries: u64,
    memlock: u64,
}

/// Every BPF map lvsd holds open, by name: the kernel's own accounting (`memlock` in
/// /proc/PID/fdinfo, the map's `map_mem_usage`), names from `bpftool map show`.
fn map_memory(pid: u32) -> anyhow::Result<BTreeMap<String, MapMem>> {
    let out = run(Command::new("bpftool").args(["-j", "map", "show"]))?;
    let all: Value = serde_json::from_slice(&out.stdout).context("bpftool -j map show")?;
    let names: std::collections::HashMap<u64, String> = all
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| Some((m["id"].as_u64()?, m["name"].as_str()?.to_string())))
        .collect();
    let mut maps = BTreeMap::new();
    let dir = format!("/proc/{pid}/fdinfo");
    for e in std::fs::read_dir(&dir).with_context(|| dir.clone())? {
        let Ok(text) = std::fs::read_to_string(e?.path()) else { continue };
        let field = |k: &str| -> Option<u64> {
            text.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse().ok())
        };
        let (Some(id), Some(memlock)) = (field("map_id:"), field("memlock:")) else { continue };
        // The kernel truncates map names to 15 bytes.
        let name = names.get(&id).cloned().unwrap_or_else(|| format!("map{id}"));
        maps.insert(
            name,
            MapMem {
                map_type: field("map_type:").unwrap_or(0) as u32,
                max_entries: field("max_entries:").unwrap_or(0),
                memlock,
            },
        );
    }
    if !maps.contains_key(map_names::CONNS) || !maps.contains_key(map_names::CONNS_OUT) {
        bail!("lvsd (pid {pid}) holds no map named CONNS / CONNS_OUT: {:?}", maps.keys().collect::<Vec<_>>());
    }
    Ok(maps)
}

pub fn table(o: &Outcome) -> String {
    let mut s = String::from("| figure | value | unit | runs | target | |\n|---|--:|---|---|--:|---|\n");
    for r in &o.rows {
        let runs: Vec<String> = r.runs.iter().map(|v| format!("{v:.2}")).collect();
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.name,
            r.value().map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into()),
            r.unit,
            runs.join(" "),
            r.target_max.map(|t| format!("<= {t}")).unwrap_or_else(|| "-".into()),
            r.verdict()
        ));
    }
    s
}

pub fn json(o: &Outcome) -> Value {
    json!({
        "elapsed_s": o.elapsed_s,
        "figures": o.rows.iter().map(|r| json!({
            "name": r.name, "what": r.what, "unit": r.unit, "median": r.value(), "runs": r.runs,
            "target_max": r.target_max, "target": r.verdict(), "notes": r.notes,
        })).collect::<Vec<_>>(),
        "maps": o.maps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_rules_are_what_the_figures_claim() {
        let rules = restore_file();
        assert_eq!(rules.lines().filter(|l| l.starts_with("-A ")).count(), SERVICES);
        assert_eq!(rules.lines().filter(|l| l.starts_with("-a ")).count(), SERVICES * SERVERS_PER_SERVICE);
        // Every service distinct, every real server distinct within its service.
        let svcs: std::collections::HashSet<&str> = rules.lines().filter(|l| l.starts_with("-A ")).collect();
        assert_eq!(svcs.len(), SERVICES);
        let dests: std::collections::HashSet<&str> = rules.lines().filter(|l| l.starts_with("-a ")).collect();
        assert_eq!(dests.len(), SERVICES * SERVERS_PER_SERVICE);

        let (a, b) = (yaml(1024, false), yaml(1024, true));
        let cfg = crate::config::parse(&a, "scale.yaml").expect("the generated config parses");
        assert_eq!(cfg.services.len(), SERVICES);
        crate::config::parse(&b, "scale.yaml").expect("the changed config parses");
        let changed = a.lines().zip(b.lines()).filter(|(x, y)| x != y).count();
        assert_eq!(changed, SERVICES / 100, "1 % of the services change");
    }

    #[test]
    fn median_of_odd_and_even_samples() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
