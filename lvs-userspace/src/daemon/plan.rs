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

use std::{collections::HashSet, fmt, net::IpAddr};

use crate::{
    config::Config,
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

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::AddService(s) => write!(f, "-A {}{}", service(&s.key), service_options(s)),
            Change::EditService(s) => write!(f, "-E {}{}", service(&s.key), service_options(s)),
            Change::DelService(k) => write!(f, "-D {}", service(k)),
            Change::AddDest(k, d) => write!(f, "-a {}{}", service(k), dest_options(d)),
            Change::EditDest(k, d) => write!(f, "-e {}{}", service(k), dest_options(d)),
            Change::DelDest(k, a, p) => write!(f, "-d {} -r {}", service(k), addr_port(*a, *p)),
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
}
