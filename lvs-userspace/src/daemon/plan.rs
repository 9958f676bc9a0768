//! What a reload changes: the difference between the running services and a config file, as
//! a list of ipvsadm operations, computed before anything is touched.
//!
//! The same plan is what `lvsd --check-config` prints (a dry run) and what a reload applies,
//! so the operator sees exactly what will happen. Each change prints as the `ipvsadm` rule
//! that does it (`-A`, `-E`, `-D`, `-a`, `-e`, `-d`, in the numeric form of `ipvsadm -S -n`),
//! so a plan can also be read, or fed to `ipvsadm -R`, by people and tools who know ipvsadm.
//!
//! Which wins on reload: the file, for the services it declares (they are made to match it
//! exactly, real servers included, so a weight changed with `ipvsadm -e` goes back to the
//! file's), and for services it declared before and no longer does (they are deleted).
//! Services created with ipvsadm and never named by the file are left alone.
//!
//! The settings outside services print in the form of the tool that makes them on a kernel
//! director, or in ipvsadm's style where there is none: `--set TCP TCPFIN UDP` (the three
//! timeouts ipvsadm sets, as they will be), `timeout STATE SECS` (the other states, which only
//! the file sets), `sysctl net.ipv4.vs.NAME=VALUE`, `classifier -A|-R N|-D N ...` (the rule
//! list as iptables edits a chain: append, replace or delete rule N; the first match wins),
//! `--stop-daemon ROLE` and `--start-daemon ROLE ...` (a changed sync daemon is stopped and
//! started again, as the kernel cannot change a running one). The same rule as for services
//! decides between the file and ipvsadm: a sync daemon the file declares runs with the file's
//! parameters, one it declared before and no longer does is stopped, one it never named
//! (started with ipvsadm) is left alone.

use std::{collections::HashSet, fmt, net::IpAddr};

use lvs_common::{
    classify::{ClassRule, PROTO_ANY},
    sysctl::Sysctls,
    tcp_state::{DEFAULT_TIMEOUTS, ESTABLISHED, FIN_WAIT, STATE_NAMES, TIMEOUT_SLOTS, UDP},
};

use super::{sync, timeouts::Named};
use crate::{
    config::{ClassifierRule, Config},
    control::{SyncDaemon, SyncRole, Timeouts},
    model::{svc_flags, DestSpec, Forward, Protocol, ServiceKey, ServiceSpec},
};

/// One operation of a reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    AddService(ServiceSpec),
    /// Scheduler, persistence or flags differ (`-E`; the scheduler state is kept unless the
    /// scheduler itself changes).
    EditService(ServiceSpec),
    DelService(ServiceKey),
    AddDest(ServiceKey, DestSpec),
    EditDest(ServiceKey, DestSpec),
    DelDest(ServiceKey, IpAddr, u16),
    /// The three timeouts `--set` holds, as they will be after the reload.
    SetTimeouts(Timeouts),
    /// Another state's timeout (slot in `STATE_NAMES`, seconds).
    StateTimeout(u8, u32),
    /// An IPVS sysctl and its new value.
    Sysctl(&'static str, u32),
    /// Classifier rule at a 1-based position: appended, replaced (`-R`) or deleted (`-D`).
    ClassifierAppend(ClassifierRule),
    ClassifierReplace(usize, ClassifierRule),
    ClassifierDelete(usize),
    StopDaemon(SyncRole),
    /// Parameters as the file gives them (group, port and TTL filled in; maxlen 0: the MTU's).
    StartDaemon(SyncDaemon),
}

/// The running settings a reload compares the file with, beside the services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The timeouts in force, every slot (kernel defaults where never written).
    pub timeouts: [u32; TIMEOUT_SLOTS as usize],
    /// The states the file named at the last (re)load (a state it no longer names goes back
    /// to its default; see `timeouts`).
    pub timeouts_named: Named,
    pub sysctls: Sysctls,
    /// The live classifier rules, in order, in the dataplane's form.
    pub classifier: Vec<ClassRule>,
    /// The running sync daemons as they were asked for, master first.
    pub sync: Vec<SyncDaemon>,
    /// The sync daemon roles the file declared at the last (re)load.
    pub sync_owned: Vec<SyncRole>,
}

impl Settings {
    /// A director that has just started with nothing set.
    pub fn fresh() -> Settings {
        Settings {
            timeouts: DEFAULT_TIMEOUTS,
            timeouts_named: [None; TIMEOUT_SLOTS as usize],
            sysctls: Sysctls::default(),
            classifier: Vec::new(),
            sync: Vec::new(),
            sync_owned: Vec::new(),
        }
    }
}

/// Whether a running daemon asked for as `running` already is what the file asks for:
/// defaults count as the values they stand for.
fn same_daemon(running: &SyncDaemon, file: &SyncDaemon) -> bool {
    let norm = |d: &SyncDaemon| {
        let mut d = d.clone();
        d.mcast_group.get_or_insert(IpAddr::V4(sync::DEFAULT_GROUP));
        if d.mcast_port == 0 {
            d.mcast_port = sync::DEFAULT_PORT;
        }
        if d.mcast_ttl == 0 {
            d.mcast_ttl = 1;
        }
        d
    };
    norm(running) == norm(file)
}

/// The changes outside services that make the running settings match `cfg`: classifier,
/// timeouts, sysctls, then sync daemons (stops before starts).
pub fn settings(cur: &Settings, cfg: &Config) -> Vec<Change> {
    let mut out = Vec::new();
    // Classifier: position by position, since the first match wins.
    let want: Vec<ClassRule> = cfg.classifier.iter().map(|r| r.map_rule()).collect();
    for (i, r) in cfg.classifier.iter().enumerate() {
        match cur.classifier.get(i) {
            None => out.push(Change::ClassifierAppend(r.clone())),
            Some(old) if *old != want[i] => out.push(Change::ClassifierReplace(i + 1, r.clone())),
            Some(_) => {}
        }
    }
    for i in (want.len()..cur.classifier.len()).rev() {
        out.push(Change::ClassifierDelete(i + 1));
    }
    // Timeouts, as `timeouts::apply_config` sets them.
    let named = super::timeouts::named(cfg);
    let target: Vec<u32> = (0..TIMEOUT_SLOTS as usize)
        .map(|i| match (named[i], cur.timeouts_named[i]) {
            (Some(v), _) => v,
            (None, Some(_)) => DEFAULT_TIMEOUTS[i],
            (None, None) => cur.timeouts[i],
        })
        .collect();
    let three = [ESTABLISHED, FIN_WAIT, UDP];
    if three.iter().any(|&s| target[s as usize] != cur.timeouts[s as usize]) {
        out.push(Change::SetTimeouts(Timeouts {
            tcp: target[ESTABLISHED as usize],
            tcp_fin: target[FIN_WAIT as usize],
            udp: target[UDP as usize],
        }));
    }
    for slot in 0..TIMEOUT_SLOTS as u8 {
        let i = slot as usize;
        if !three.contains(&slot) && target[i] != cur.timeouts[i] {
            out.push(Change::StateTimeout(slot, target[i]));
        }
    }
    // Sysctls: the file sets both (an unnamed one is the kernel's default, 0).
    let s = cfg.sysctls;
    for (name, old, new) in [
        ("expire_nodest_conn", cur.sysctls.expire_nodest_conn, s.expire_nodest_conn),
        ("expire_quiescent_template", cur.sysctls.expire_quiescent_template, s.expire_quiescent_template),
    ] {
        if old != new {
            out.push(Change::Sysctl(name, new));
        }
    }
    // Sync daemons.
    let mut starts = Vec::new();
    for role in [SyncRole::Master, SyncRole::Backup] {
        let running = cur.sync.iter().find(|d| d.role == role);
        let wanted = cfg.sync.iter().find(|s| s.daemon.role == role).map(|s| &s.daemon);
        match (running, wanted) {
            (None, Some(w)) => starts.push(Change::StartDaemon(w.clone())),
            (Some(r), Some(w)) if !same_daemon(r, w) => {
                out.push(Change::StopDaemon(role));
                starts.push(Change::StartDaemon(w.clone()));
            }
            (Some(_), None) if cur.sync_owned.contains(&role) => out.push(Change::StopDaemon(role)),
            _ => {}
        }
    }
    out.extend(starts);
    out
}
/// The changes that make the running state match `cfg`. `current` is every running service
/// with its real servers in `ipvsadm -a` order; `owned` the services the file declared at the
/// last (re)load. Order: services dropped from the file first (so their addresses are free),
/// then the file's services in file order, each with its real servers' deletions before
/// additions and edits in file order (kernel order is the reverse of additions, as with a
/// sequence of `ipvsadm -a`).
pub fn plan(current: &[(ServiceSpec, Vec<DestSpec>)], owned: &HashSet<ServiceKey>, cfg: &Config) -> Vec<Change> {
    let wanted: HashSet<ServiceKey> = cfg.services.iter().map(|s| s.spec.key).collect();
    let mut out = Vec::new();
    for (spec, _) in current {
        if owned.contains(&spec.key) && !wanted.contains(&spec.key) {
            out.push(Change::DelService(spec.key));
        }
    }
    // By key: a scan of `current` per configured service made a 10 000-service reload
    // quadratic.
    let by_key: std::collections::HashMap<ServiceKey, &(ServiceSpec, Vec<DestSpec>)> =
        current.iter().map(|c| (c.0.key, c)).collect();
    for sc in &cfg.services {
        let key = sc.spec.key;
        match by_key.get(&key).copied() {
            None => {
                out.push(Change::AddService(sc.spec.clone()));
                out.extend(sc.dests.iter().map(|d| Change::AddDest(key, d.clone())));
            }
            Some((spec, dests)) => {
                if *spec != sc.spec {
                    out.push(Change::EditService(sc.spec.clone()));
                }
                for old in dests {
                    if !sc.dests.iter().any(|d| d.addr == old.addr && d.port == old.port) {
                        out.push(Change::DelDest(key, old.addr, old.port));
                    }
                }
                for d in &sc.dests {
                    match dests.iter().find(|o| o.addr == d.addr && o.port == d.port) {
                        None => out.push(Change::AddDest(key, d.clone())),
                        Some(o) if o != d => out.push(Change::EditDest(key, d.clone())),
                        Some(_) => {}
                    }
                }
            }
        }
    }
    out
}

/// `addr:port`, with brackets for IPv6.
fn addr_port(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// The service as ipvsadm names it on a command line.
fn service(key: &ServiceKey) -> String {
    match *key {
        ServiceKey::Addr { protocol, addr, port } => {
            let opt = match protocol {
                Protocol::Tcp => "-t",
                Protocol::Udp => "-u",
            };
            format!("{opt} {}", addr_port(addr, port))
        }
        ServiceKey::Fwmark { mark, ipv6: false } => format!("-f {mark}"),
        ServiceKey::Fwmark { mark, ipv6: true } => format!("-f {mark} -6"),
    }
}

fn service_options(s: &ServiceSpec) -> String {
    let mut o = format!(" -s {}", s.scheduler);
    if s.flags & svc_flags::PERSISTENT != 0 {
        o.push_str(&format!(" -p {}", s.timeout));
        let default_mask = if s.key.is_ipv6() { 128 } else { u32::MAX };
        if s.netmask != default_mask {
            if s.key.is_ipv6() {
                o.push_str(&format!(" -M {}", s.netmask));
            } else {
                o.push_str(&format!(" -M {}", std::net::Ipv4Addr::from(s.netmask)));
            }
        }
    }
    if let Some(pe) = &s.pe {
        o.push_str(&format!(" --pe {pe}"));
    }
    if s.flags & svc_flags::ONEPACKET != 0 {
        o.push_str(" -o");
    }
    o
}

fn dest_options(d: &DestSpec) -> String {
    let fwd = match d.forward {
        Forward::Masq => "-m",
        Forward::Tunnel => "-i",
        Forward::Route | Forward::Local => "-g",
    };
    let mut o = format!(" -r {} {fwd} -w {}", addr_port(d.addr, d.port), d.weight);
    if d.u_threshold != 0 || d.l_threshold != 0 {
        o.push_str(&format!(" -x {} -y {}", d.u_threshold, d.l_threshold));
    }
    o
}

/// A classifier rule in iptables' match syntax.
fn classifier_rule(r: &ClassifierRule) -> String {
    let mut o = format!("-d {}/{}", r.network(), r.prefix_len);
    let m = r.map_rule();
    if m.proto != PROTO_ANY {
        o.push_str(if r.protocol == Some(Protocol::Tcp) { " -p tcp" } else { " -p udp" });
    }
    match r.ports {
        (0, u16::MAX) => {}
        (a, b) if a == b => o.push_str(&format!(" --dport {a}")),
        (a, b) => o.push_str(&format!(" --dport {a}:{b}")),
    }
    o.push_str(&format!(" --set-mark {}", r.mark));
    o
}

fn daemon_options(d: &SyncDaemon) -> String {
    let mut o = format!("--start-daemon {} --mcast-interface {} --syncid {}", d.role.name(), d.mcast_ifn, d.syncid);
    match d.mcast_group {
        Some(g) if g != IpAddr::V4(sync::DEFAULT_GROUP) => o.push_str(&format!(" --mcast-group {g}")),
        _ => {}
    }
    if d.mcast_port != 0 && d.mcast_port != sync::DEFAULT_PORT {
        o.push_str(&format!(" --mcast-port {}", d.mcast_port));
    }
    if d.mcast_ttl > 1 {
        o.push_str(&format!(" --mcast-ttl {}", d.mcast_ttl));
    }
    if d.sync_maxlen != 0 {
        o.push_str(&format!(" --sync-maxlen {}", d.sync_maxlen));
    }
    o
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::AddService(s) => write!(f, "-A {}{}", service(&s.key), service_options(s)),
            Change::EditService(s) => write!(f, "-E {}{}", service(&s.key), service_options(s)),
            Change::DelService(k) => write!(f, "-D {}", service(k)),
            Change::AddDest(k, d) => write!(f, "-a {}{}", service(k), dest_options(d)),
            Change::EditDest(k, d) => write!(f, "-e {}{}", service(k), dest_options(d)),
            Change::DelDest(k, a, p) => write!(f, "-d {} -r {}", service(k), addr_port(*a, *p)),
            Change::SetTimeouts(t) => write!(f, "--set {} {} {}", t.tcp, t.tcp_fin, t.udp),
            Change::StateTimeout(slot, v) => {
                write!(f, "timeout {} {v}", STATE_NAMES[*slot as usize].to_ascii_lowercase())
            }
            Change::Sysctl(name, v) => write!(f, "sysctl net.ipv4.vs.{name}={v}"),
            Change::ClassifierAppend(r) => write!(f, "classifier -A {}", classifier_rule(r)),
            Change::ClassifierReplace(n, r) => write!(f, "classifier -R {n} {}", classifier_rule(r)),
            Change::ClassifierDelete(n) => write!(f, "classifier -D {n}"),
            Change::StopDaemon(role) => write!(f, "--stop-daemon {}", role.name()),
            Change::StartDaemon(d) => f.write_str(&daemon_options(d)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn cfg(services: &str) -> Config {
        parse(&format!("interfaces: [eth0]\nservices:\n{services}"), "t.yaml").unwrap()
    }

    fn state(c: &Config) -> Vec<(ServiceSpec, Vec<DestSpec>)> {
        c.services.iter().map(|s| (s.spec.clone(), s.dests.clone())).collect()
    }

    const TWO: &str = "  - protocol: tcp\n    address: 203.0.113.10\n    port: 80\n    scheduler: rr\n    real_servers:\n      - {address: 192.0.2.11, forward: masq}\n      - {address: 192.0.2.12, forward: masq}\n\
                       \x20 - {protocol: udp, address: 203.0.113.10, port: 53, persistent: 60, netmask: 255.255.255.0}\n";

    fn lines(p: &[Change]) -> Vec<String> {
        p.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn from_nothing_everything_is_added_in_file_order() {
        let c = cfg(TWO);
        assert_eq!(
            lines(&plan(&[], &HashSet::new(), &c)),
            [
                "-A -t 203.0.113.10:80 -s rr",
                "-a -t 203.0.113.10:80 -r 192.0.2.11:80 -m -w 1",
                "-a -t 203.0.113.10:80 -r 192.0.2.12:80 -m -w 1",
                "-A -u 203.0.113.10:53 -s wlc -p 60 -M 255.255.255.0",
            ]
        );
    }

    #[test]
    fn ipv6_and_fwmark_services_print_as_ipvsadm_takes_them() {
        let k = ServiceKey::Addr { protocol: Protocol::Udp, addr: "2001:db8::1".parse().unwrap(), port: 53 };
        let d = DestSpec::new("2001:db8:1::2".parse().unwrap(), 5353, Forward::Tunnel, 2);
        assert_eq!(Change::AddDest(k, d).to_string(), "-a -u [2001:db8::1]:53 -r [2001:db8:1::2]:5353 -i -w 2");
        let mut s = ServiceSpec::new(ServiceKey::Fwmark { mark: 7, ipv6: true }, "sh");
        s.flags |= svc_flags::PERSISTENT;
        s.timeout = 360;
        s.netmask = 64;
        assert_eq!(Change::AddService(s).to_string(), "-A -f 7 -6 -s sh -p 360 -M 64");
    }

    #[test]
    fn the_sip_engine_is_planned_and_edited_like_ipvsadm_takes_it() {
        let sip = "  - {protocol: udp, address: 203.0.113.10, port: 5060, scheduler: rr, persistent: 30, persistence_engine: sip}\n";
        let plain = "  - {protocol: udp, address: 203.0.113.10, port: 5060, scheduler: rr, persistent: 30}\n";
        assert_eq!(lines(&plan(&[], &HashSet::new(), &cfg(sip))), ["-A -u 203.0.113.10:5060 -s rr -p 30 --pe sip"]);
        let before = cfg(plain);
        let owned: HashSet<ServiceKey> = before.services.iter().map(|s| s.spec.key).collect();
        assert_eq!(lines(&plan(&state(&before), &owned, &cfg(sip))), ["-E -u 203.0.113.10:5060 -s rr -p 30 --pe sip"]);
        assert_eq!(lines(&plan(&state(&cfg(sip)), &owned, &before)), ["-E -u 203.0.113.10:5060 -s rr -p 30"]);
    }

    #[test]
    fn services_are_matched_by_key_whatever_their_order() {
        // The running state lists services in slot order, the file in its own: a reordered
        // file that changes one weight is one edit, in file order.
        let mut text = String::new();
        for i in 0..300 {
            let w = if i == 123 { 3 } else { 1 };
            text.push_str(&format!(
                "  - {{protocol: tcp, address: 198.18.{}.{}, port: 80, real_servers: [{{address: 192.0.2.11, forward: masq, weight: {w}}}]}}\n",
                i / 256,
                i % 256
            ));
        }
        let before = cfg(&text.replace("weight: 3", "weight: 1"));
        let mut current = state(&before);
        current.reverse();
        let owned = before.services.iter().map(|s| s.spec.key).collect();
        assert_eq!(
            lines(&plan(&current, &owned, &cfg(&text))),
            ["-e -t 198.18.0.123:80 -r 192.0.2.11:80 -m -w 3"]
        );
    }

    #[test]
    fn an_unchanged_file_changes_nothing() {
        let c = cfg(TWO);
        let owned = c.services.iter().map(|s| s.spec.key).collect();
        assert_eq!(plan(&state(&c), &owned, &c), []);
    }

    #[test]
    fn only_the_differences_are_applied() {
        let before = cfg(TWO);
        let owned: HashSet<ServiceKey> = before.services.iter().map(|s| s.spec.key).collect();
        let mut running = state(&before);
        // A service made with ipvsadm, never in the file: left alone.
        let extra = cfg("  - {protocol: tcp, address: 203.0.113.99, port: 8080}\n");
        running.extend(state(&extra));
        let after = cfg(
            "  - protocol: tcp\n    address: 203.0.113.10\n    port: 80\n    scheduler: wlc\n    real_servers:\n      - {address: 192.0.2.12, forward: masq, weight: 5, u_threshold: 10}\n      - {address: 192.0.2.13, port: 8080, forward: masq}\n",
        );
        assert_eq!(
            lines(&plan(&running, &owned, &after)),
            [
                "-D -u 203.0.113.10:53",
                "-E -t 203.0.113.10:80 -s wlc",
                "-d -t 203.0.113.10:80 -r 192.0.2.11:80",
                "-e -t 203.0.113.10:80 -r 192.0.2.12:80 -m -w 5 -x 10 -y 0",
                "-a -t 203.0.113.10:80 -r 192.0.2.13:8080 -m -w 1",
            ]
        );
    }

    fn settings_lines(cur: &Settings, yaml: &str) -> Vec<String> {
        lines(&settings(cur, &parse(&format!("interfaces: [eth0]\n{yaml}"), "t.yaml").unwrap()))
    }

    const SETTINGS: &str = "timeouts: {tcpfin: 7, syn_recv: 30}\nsysctls: {expire_nodest_conn: 1}\n\
                            classifier:\n  - {mark: 1, destination: 203.0.113.0/24, protocol: tcp, ports: 80}\n  - {mark: 2, destination: 2001:db8::/32, ports: 5000-5099}\n\
                            sync:\n  master: {interface: eth1, syncid: 5}\n  backup: {interface: eth1, syncid: 5, mcast_port: 9000, sync_maxlen: 1400}\n";

    #[test]
    fn settings_from_nothing() {
        assert_eq!(
            settings_lines(&Settings::fresh(), SETTINGS),
            [
                "classifier -A -d 203.0.113.0/24 -p tcp --dport 80 --set-mark 1",
                "classifier -A -d 2001:db8::/32 --dport 5000:5099 --set-mark 2",
                "--set 900 7 300",
                "timeout syn_recv 30",
                "sysctl net.ipv4.vs.expire_nodest_conn=1",
                "--start-daemon master --mcast-interface eth1 --syncid 5",
                "--start-daemon backup --mcast-interface eth1 --syncid 5 --mcast-port 9000 --sync-maxlen 1400",
            ]
        );
    }

    /// The running settings after `yaml` was applied by lvsd.
    fn applied(yaml: &str, ipvsadm_daemons: bool) -> Settings {
        let c = parse(&format!("interfaces: [eth0]\n{yaml}"), "t.yaml").unwrap();
        let named = crate::daemon::timeouts::named(&c);
        let mut timeouts = DEFAULT_TIMEOUTS;
        for (i, v) in named.iter().enumerate() {
            if let Some(v) = v {
                timeouts[i] = *v;
            }
        }
        Settings {
            timeouts,
            timeouts_named: named,
            sysctls: c.sysctls,
            classifier: c.classifier.iter().map(|r| r.map_rule()).collect(),
            sync: c.sync.iter().map(|s| s.daemon.clone()).collect(),
            sync_owned: if ipvsadm_daemons { Vec::new() } else { c.sync.iter().map(|s| s.daemon.role).collect() },
        }
    }

    #[test]
    fn settings_unchanged_change_nothing() {
        assert_eq!(settings_lines(&applied(SETTINGS, false), SETTINGS), Vec::<String>::new());
    }

    #[test]
    fn settings_differences() {
        let after = "timeouts: {syn_recv: 40, udp: 60}\n\
                     classifier:\n  - {mark: 3, destination: 203.0.113.0/24, protocol: tcp, ports: 80}\n\
                     sync:\n  backup: {interface: eth1, syncid: 6}\n";
        assert_eq!(
            settings_lines(&applied(SETTINGS, false), after),
            [
                "classifier -R 1 -d 203.0.113.0/24 -p tcp --dport 80 --set-mark 3",
                "classifier -D 2",
                // tcpfin is no longer named: back to its default.
                "--set 900 120 60",
                "timeout syn_recv 40",
                "sysctl net.ipv4.vs.expire_nodest_conn=0",
                "--stop-daemon master",
                "--stop-daemon backup",
                "--start-daemon backup --mcast-interface eth1 --syncid 6",
            ]
        );
        // Daemons started with ipvsadm and never named by the file are left alone; explicit
        // defaults are the same daemon.
        let explicit = "sync:\n  backup: {interface: eth1, syncid: 5, mcast_group: 224.0.0.81, mcast_port: 9000, mcast_ttl: 1, sync_maxlen: 1400}\n";
        let daemon_lines: Vec<String> =
            settings_lines(&applied(SETTINGS, true), explicit).into_iter().filter(|l| l.contains("-daemon")).collect();
        assert_eq!(daemon_lines, Vec::<String>::new());
        let mut cur = applied(SETTINGS, true);
        cur.timeouts = DEFAULT_TIMEOUTS;
        cur.timeouts_named = [None; 12];
        assert_eq!(
            settings_lines(&cur, "sync: {}\n"),
            ["classifier -D 2", "classifier -D 1", "sysctl net.ipv4.vs.expire_nodest_conn=0"]
        );
    }
}
