//! Replays the kernel's recorded scheduling decisions (`tests/oracle/golden/sched-*.txt`, real
//! IPVS runs) through this crate's wrr, dh, sh and mh code and checks that every connection
//! reaches the same real server.
//!
//! A golden is a transcript: `$ ipvsadm ...` commands, then `tcp LABEL SRC:SPORT -> rsN`
//! (or `-> FAIL(7)`: refused) for each connection, where rsN is the real server whose address
//! ends in `1N`. A connection goes to the service the last command touched; dh goldens, which
//! spread connections over several VIPs, name the VIP's last octet in the label (`a-12`).
//! Only the commands these scenarios use are understood: `-A`, `-E`, `-a`, `-e`, `-d`.

extern crate std;

use std::format;
use std::net::{IpAddr, SocketAddr};
use std::string::{String, ToString};
use std::vec::Vec;

use crate::maglev::{mh_build, mh_pick, MH_TABLE_SIZE};
use crate::sched_hash::{addr_fold, dh_bucket, dh_build, dh_pick, sh_bucket, sh_build, sh_pick, HASH_TABLE_SIZE};
use crate::wrr::{wrr_dest_changed, wrr_init, wrr_schedule, WrrMark};

struct Dest {
    addr: SocketAddr,
    weight: i32,
    /// The latest non-zero weight (`ip_vs_dest.last_weight`): set on add, and on edits to a
    /// non-zero weight.
    last_weight: i32,
}

struct Service {
    proto: String,
    vip: SocketAddr,
    sched: String,
    /// `-b` flags, as written.
    flags: String,
    /// Kernel order: newest first.
    dests: Vec<Dest>,
    wrr: WrrMark,
    /// dh/sh: 256 buckets; mh: 4093 slots.
    table: Vec<u16>,
}

/// The kernel's host-order fold of an address.
fn fold(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(a) => addr_fold(&[u32::from_ne_bytes(a.octets()), 0, 0, 0], false),
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            addr_fold(&[w(0), w(4), w(8), w(12)], true)
        }
    }
}

/// `rsN` for a real server at 192.0.2.1N or 2001:db8:1::1N.
fn rs_name(addr: &SocketAddr) -> String {
    let ip = addr.ip().to_string();
    let last = ip.rsplit(['.', ':']).next().unwrap_or_default();
    format!("rs{}", &last[1..])
}

impl Service {
    fn has_flag(&self, f: &str) -> bool {
        self.flags.split(',').any(|x| x == f)
    }

    fn weights(&self) -> Vec<i32> {
        self.dests.iter().map(|d| d.weight).collect()
    }

    /// The scheduler bound (service created, or `-E` to another scheduler).
    fn bind(&mut self) {
        self.wrr = wrr_init(&self.weights());
        self.rebuild();
    }

    /// A server was added, deleted or (`edit`) edited: the kernel's per-scheduler hooks.
    fn dest_changed(&mut self, edit: bool) {
        match self.sched.as_str() {
            "wrr" => {
                let w = self.weights();
                wrr_dest_changed(&mut self.wrr, &w);
            }
            // dh has no upd_dest hook: an edit leaves its table alone.
            "dh" if edit => {}
            _ => self.rebuild(),
        }
    }

    fn rebuild(&mut self) {
        match self.sched.as_str() {
            "dh" => {
                let mut t = [0u16; HASH_TABLE_SIZE];
                dh_build(self.dests.len(), &mut t);
                self.table = t.to_vec();
            }
            "sh" => {
                let mut t = [0u16; HASH_TABLE_SIZE];
                sh_build(&self.weights(), &mut t);
                self.table = t.to_vec();
            }
            "mh" => {
                let mut t = [0u16; MH_TABLE_SIZE];
                let d: Vec<(u32, u16, i32)> =
                    self.dests.iter().map(|d| (fold(d.addr.ip()), d.addr.port(), d.last_weight)).collect();
                mh_build(&d, &mut t).unwrap();
                self.table = t.to_vec();
            }
            _ => {}
        }
    }

    /// The position of the server a new connection from `src` reaches, or `None` (refused).
    fn schedule(&mut self, src: SocketAddr) -> Option<usize> {
        if self.sched == "wrr" {
            let d: Vec<(i32, bool)> = self.dests.iter().map(|d| (d.weight, false)).collect();
            return wrr_schedule(&mut self.wrr, &d);
        }
        // The hash schedulers' "available": weight > 0 (nothing is overloaded here).
        let usable = |p: u16| self.dests.get(p as usize).is_some_and(|d| d.weight > 0);
        let pick = match self.sched.as_str() {
            "dh" => {
                let t: &[u16; HASH_TABLE_SIZE] = self.table.as_slice().try_into().unwrap();
                dh_pick(t, dh_bucket(fold(self.vip.ip())), usable)
            }
            "sh" => {
                let t: &[u16; HASH_TABLE_SIZE] = self.table.as_slice().try_into().unwrap();
                let b = sh_bucket(fold(src.ip()), src.port(), self.has_flag("sh-port"));
                sh_pick(t, b, self.has_flag("sh-fallback"), usable)
            }
            "mh" => {
                let t: &[u16; MH_TABLE_SIZE] = self.table.as_slice().try_into().unwrap();
                let port = if self.has_flag("mh-port") { src.port() } else { 0 };
                mh_pick(t, fold(src.ip()), port, self.has_flag("mh-fallback"), usable)
            }
            s => panic!("no connection expected on a {s} service"),
        };
        pick.map(|p| p as usize)
    }
}

/// The value following `opt` in `args`.
fn opt<'a>(args: &[&'a str], opt: &str) -> Option<&'a str> {
    args.iter().position(|a| *a == opt).and_then(|i| args.get(i + 1).copied())
}

/// `(proto, VIP)` of a command.
fn service_key(args: &[&str]) -> (String, SocketAddr) {
    for p in ["-t", "-u"] {
        if let Some(v) = opt(args, p) {
            return (p.to_string(), v.parse().unwrap());
        }
    }
    panic!("no service in {args:?}");
}

#[derive(Default)]
struct Replay {
    services: Vec<Service>,
    /// Index of the service the last command touched.
    current: usize,
    checked: usize,
    mismatches: Vec<String>,
}

impl Replay {
    fn find(&self, proto: &str, vip: SocketAddr) -> usize {
        self.services.iter().position(|s| s.proto == proto && s.vip == vip).unwrap()
    }

    fn command(&mut self, args: &[&str]) {
        let (proto, vip) = service_key(args);
        match args[0] {
            "-A" => {
                self.services.push(Service {
                    proto,
                    vip,
                    sched: opt(args, "-s").unwrap_or("wlc").to_string(),
                    flags: opt(args, "-b").unwrap_or("").to_string(),
                    dests: Vec::new(),
                    wrr: WrrMark::default(),
                    table: Vec::new(),
                });
                self.current = self.services.len() - 1;
                self.services[self.current].bind();
                return;
            }
            _ => self.current = self.find(&proto, vip),
        }
        let svc = &mut self.services[self.current];
        let rs: Option<SocketAddr> = opt(args, "-r").map(|r| r.parse().unwrap());
        let pos = rs.and_then(|rs| svc.dests.iter().position(|d| d.addr == rs));
        // ipvsadm's default weight for -a and -e is 1.
        let weight: i32 = opt(args, "-w").map_or(1, |w| w.parse().unwrap());
        match args[0] {
            "-E" => {
                let sched = opt(args, "-s").unwrap_or("wlc");
                if let Some(b) = opt(args, "-b") {
                    svc.flags = b.to_string();
                }
                // The same scheduler name does not re-init it.
                if sched != svc.sched {
                    svc.sched = sched.to_string();
                    svc.bind();
                }
            }
            "-a" => {
                svc.dests.insert(0, Dest { addr: rs.unwrap(), weight, last_weight: weight });
                svc.dest_changed(false);
            }
            "-e" => {
                let d = &mut svc.dests[pos.unwrap()];
                d.weight = weight;
                if weight != 0 {
                    d.last_weight = weight;
                }
                svc.dest_changed(true);
            }
            "-d" => {
                svc.dests.remove(pos.unwrap());
                svc.dest_changed(false);
            }
            c => panic!("unexpected command {c}"),
        }
    }

    /// `tcp LABEL SRC:SPORT -> rsN`.
    fn connection(&mut self, line: &str) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (proto, label, src, want) = (f[0], f[1], f[2], f[4]);
        let (ip, port) = src.rsplit_once(':').unwrap();
        let src = SocketAddr::new(ip.parse().unwrap(), port.parse().unwrap());
        let flag = if proto == "udp" { "-u" } else { "-t" };
        let idx = match label.rsplit_once('-').and_then(|(_, o)| o.parse::<u8>().ok()) {
            Some(octet) => self
                .services
                .iter()
                .position(|s| s.proto == flag && matches!(s.vip.ip(), IpAddr::V4(a) if a.octets()[3] == octet))
                .unwrap(),
            None => self.current,
        };
        let svc = &mut self.services[idx];
        assert_eq!(svc.proto, flag, "{line}: the connection's protocol is not its service's");
        let got = svc.schedule(src).map_or("FAIL(7)".to_string(), |p| rs_name(&svc.dests[p].addr));
        let want = if want.starts_with("FAIL") { "FAIL(7)" } else { want };
        self.checked += 1;
        if got != want {
            self.mismatches.push(format!("{line}: we pick {got}"));
        }
    }
}

/// Replays one golden; returns the number of connections checked.
fn replay(golden: &str) -> usize {
    let mut r = Replay::default();
    for line in golden.lines() {
        if let Some(cmd) = line.strip_prefix("$ ipvsadm ") {
            let args: Vec<&str> = cmd.split_whitespace().collect();
            if matches!(args[0], "-A" | "-E" | "-a" | "-e" | "-d") {
                r.command(&args);
            }
        } else if line.starts_with("tcp ") || line.starts_with("udp ") {
            r.connection(line);
        }
    }
    assert!(
        r.mismatches.is_empty(),
        "{} of {} connections differ from the kernel:\n{}",
        r.mismatches.len(),
        r.checked,
        r.mismatches.join("\n")
    );
    r.checked
}

#[test]
fn wrr_matches_the_kernel() {
    assert_eq!(replay(include_str!("../../tests/oracle/golden/sched-wrr.txt")), 78);
}

#[test]
fn sh_matches_the_kernel() {
    assert_eq!(replay(include_str!("../../tests/oracle/golden/sched-sh.txt")), 108);
}

#[test]
fn dh_matches_the_kernel() {
    assert_eq!(replay(include_str!("../../tests/oracle/golden/sched-dh.txt")), 32);
}

#[test]
fn mh_matches_the_kernel() {
    assert_eq!(replay(include_str!("../../tests/oracle/golden/sched-mh.txt")), 116);
}

/// The replay does compare: one server wrong in an otherwise true transcript fails it (the
/// kernel sends a4 to rs2: passes at 1 (rs2 rs1), 2 (rs1), 1 (rs2 ...)).
#[test]
#[should_panic(expected = "1 of 4 connections differ")]
fn replay_notices_a_wrong_server() {
    replay(
        "$ ipvsadm -A -t 203.0.113.10:80 -s wrr
$ ipvsadm -a -t 203.0.113.10:80 -r 192.0.2.11:80 -m -w 2
$ ipvsadm -a -t 203.0.113.10:80 -r 192.0.2.12:80 -m -w 1
tcp a1 198.51.100.2:40001 -> rs2
tcp a2 198.51.100.2:40002 -> rs1
tcp a3 198.51.100.2:40003 -> rs1
tcp a4 198.51.100.2:40004 -> rs1
",
    );
}

#[test]
fn rs_names_follow_the_last_group() {
    assert_eq!(rs_name(&"192.0.2.13:80".parse().unwrap()), "rs3");
    assert_eq!(rs_name(&"[2001:db8:1::12]:80".parse().unwrap()), "rs2");
}
