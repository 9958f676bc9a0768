//! The text of `ipvsadm -L` and `-S`, byte for byte (including the trailing blanks that the
//! left-aligned last columns leave).

use std::{fmt::Write as _, net::IpAddr};

use super::{command::Format, names::Names};
use crate::{
    control::{ConnStatus, Info, Timeouts},
    model::{svc_flags, DestStatus, Forward, Protocol, ServiceKey, ServiceStatus},
};

/// `IP Virtual Server version 1.2.1 (size=4096)`.
pub fn header(info: &Info) -> String {
    let v = info.version_code;
    format!(
        "IP Virtual Server version {}.{}.{} (size={})\n",
        (v >> 16) & 0xff,
        (v >> 8) & 0xff,
        v & 0xff,
        info.conn_table_size as i32
    )
}

/// The column titles (`print_title`); nothing for `-S`.
pub fn title(f: &Format) -> String {
    let cols = |a: &str, b: &str, c: &str, d: &str, e: &str| {
        format!("{:<33} {a:>8} {b:>8} {c:>8} {d:>8} {e:>8}\n  -> RemoteAddress:Port\n", "Prot LocalAddress:Port")
    };
    if f.stats {
        cols("Conns", "InPkts", "OutPkts", "InBytes", "OutBytes")
    } else if f.rate {
        cols("CPS", "InPPS", "OutPPS", "InBPS", "OutBPS")
    } else if f.thresholds {
        format!(
            "{:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        )
    } else if f.persistent_conn {
        format!(
            "{:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn"
        )
    } else if f.tun_info {
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n".to_string()
    } else if !f.rule {
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n".to_string()
    } else {
        String::new()
    }
}

/// The protocol a service's ports are named with. Fwmark services carry TCP in the kernel
/// because that is what ipvsadm sends for them.
fn serv_proto(key: &ServiceKey) -> &'static str {
    match key {
        ServiceKey::Addr { protocol: Protocol::Udp, .. } => "udp",
        _ => "tcp",
    }
}

/// `addrport_to_anyname`: `addr:port`, IPv6 in brackets; names unless `-n`, each falling
/// back to the number on its own. Ports are named only for a known protocol (`proto`); the
/// text is cut to the 59 characters of ipvsadm's buffer.
fn addr_port(addr: IpAddr, port: u16, proto: Option<&str>, f: &Format, names: &dyn Names) -> String {
    let (host, port) = if f.numeric {
        (addr.to_string(), port.to_string())
    } else {
        (
            names.addr_name(addr).unwrap_or_else(|| addr.to_string()),
            proto.and_then(|p| names.port_name(port, p)).unwrap_or_else(|| port.to_string()),
        )
    };
    let s = match addr {
        IpAddr::V4(_) => format!("{host}:{port}"),
        IpAddr::V6(_) => format!("[{host}]:{port}"),
    };
    cut(s, 59)
}

/// C's `buf[n] = '\0'` on a byte string.
fn cut(mut s: String, n: usize) -> String {
    if s.len() > n {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// `print_sched_flags`: names depend on the scheduler.
fn sched_flags(sched: &str, flags: u32) -> String {
    let names: [(u32, &str); 3] = match sched {
        "sh" => [(svc_flags::SCHED1, "sh-fallback"), (svc_flags::SCHED2, "sh-port"), (0, "")],
        "mh" => [(svc_flags::SCHED1, "mh-fallback"), (svc_flags::SCHED2, "mh-port"), (0, "")],
        _ => [(svc_flags::SCHED1, "flag-1"), (svc_flags::SCHED2, "flag-2"), (svc_flags::SCHED3, "flag-3")],
    };
    names.iter().filter(|(bit, _)| flags & bit != 0).map(|(_, n)| *n).collect::<Vec<_>>().join(",")
}

const SCHED_BITS: u32 = svc_flags::SCHED1 | svc_flags::SCHED2 | svc_flags::SCHED3;

/// The persistence mask as ipvsadm shows it, if it is not the default.
fn mask(key: &ServiceKey, netmask: u32) -> Option<String> {
    if key.is_ipv6() {
        (netmask != 128).then(|| (netmask as i32).to_string())
    } else {
        (netmask != 0xffff_ffff).then(|| std::net::Ipv4Addr::from(netmask).to_string())
    }
}

/// One service and its dests (`print_service_entry`); dests must already be in print order.
pub fn service_entry(s: &ServiceStatus, f: &Format, names: &dyn Names) -> String {
    let spec = &s.spec;
    let proto = serv_proto(&spec.key);
    let svc_name = match spec.key {
        // ipvsadm 1.31 as Debian ships it (the oracle's) prints the mark with `%d`: marks of
        // 2^31 and more come out negative, `FWM  -1` for 4294967295, in listings and `-S`.
        ServiceKey::Fwmark { mark, ipv6 } => match (f.rule, ipv6, mark as i32) {
            (true, false, mark) => format!("-f {mark}"),
            (true, true, mark) => format!("-f {mark} -6"),
            (false, false, mark) => format!("FWM  {mark}"),
            (false, true, mark) => format!("FWM  {mark} IPv6"),
        },
        ServiceKey::Addr { protocol, addr, port } => {
            let vname = addr_port(addr, port, Some(proto), f, names);
            if f.rule {
                let opt = match protocol {
                    Protocol::Tcp => "-t",
                    Protocol::Udp => "-u",
                };
                format!("{opt} {vname}")
            } else {
                let n = format!("{:<4} {vname}", protocol.ipvs_name());
                if addr.is_ipv6() {
                    n
                } else {
                    cut(n, 33)
                }
            }
        }
    };

    let mut out = String::new();
    let persistent = spec.flags & svc_flags::PERSISTENT != 0;
    if f.rule {
        write!(out, "-A {svc_name} -s {}", spec.scheduler).unwrap();
        if persistent {
            write!(out, " -p {}", spec.timeout).unwrap();
            if let Some(m) = mask(&spec.key, spec.netmask) {
                write!(out, " -M {m}").unwrap();
            }
        }
        if let Some(pe) = &spec.pe {
            write!(out, " --pe {pe}").unwrap();
        }
        if spec.flags & svc_flags::ONEPACKET != 0 {
            out.push_str(" -o");
        }
        if spec.flags & SCHED_BITS != 0 {
            write!(out, " -b {}", sched_flags(&spec.scheduler, spec.flags)).unwrap();
        }
    } else if f.stats {
        let st = &s.stats;
        write!(out, "{svc_name:<33}").unwrap();
        for v in [st.conns, st.inpkts, st.outpkts, st.inbytes, st.outbytes] {
            out.push_str(&largenum(v, f.exact));
        }
    } else if f.rate {
        let st = &s.stats;
        write!(out, "{svc_name:<33}").unwrap();
        for v in [st.cps, st.inpps, st.outpps, st.inbps, st.outbps] {
            out.push_str(&largenum(v, f.exact));
        }
    } else {
        write!(out, "{svc_name} {}", spec.scheduler).unwrap();
        if spec.flags & SCHED_BITS != 0 {
            write!(out, " ({})", sched_flags(&spec.scheduler, spec.flags)).unwrap();
        }
        if persistent {
            write!(out, " persistent {}", spec.timeout).unwrap();
            if let Some(m) = mask(&spec.key, spec.netmask) {
                write!(out, " mask {m}").unwrap();
            }
        }
        if let Some(pe) = &spec.pe {
            write!(out, " pe {pe}").unwrap();
        }
        if spec.flags & svc_flags::ONEPACKET != 0 {
            out.push_str(" ops");
        }
    }
    out.push('\n');

    for d in &s.dests {
        out.push_str(&dest_line(d, &svc_name, proto, f, names));
    }
    out
}

fn dest_line(d: &DestStatus, svc_name: &str, proto: &str, f: &Format, names: &dyn Names) -> String {
    let spec = &d.spec;
    let mut dname = addr_port(spec.addr, spec.port, Some(proto), f, names);
    if !f.rule && spec.addr.is_ipv4() {
        dname = cut(dname, 28);
    }
    if f.rule {
        let switch = match spec.forward {
            Forward::Masq => "-m",
            Forward::Tunnel => "-i",
            Forward::Route | Forward::Local => "-g",
        };
        // Every tunnel dest lvsd holds is IP-in-IP: the model has no other tunnel type.
        let tun = if spec.forward == Forward::Tunnel { " --tun-type ipip" } else { "" };
        return format!("-a {svc_name} -r {dname} {switch} -w {}{tun}\n", spec.weight);
    }
    if f.stats {
        let st = &d.stats;
        let mut line = format!("  -> {dname:<28}");
        for v in [st.conns, st.inpkts, st.outpkts, st.inbytes, st.outbytes] {
            line.push_str(&largenum(v, f.exact));
        }
        line + "\n"
    } else if f.rate {
        // The packet and connection rates are printed whole here, unlike on the service line.
        let st = &d.stats;
        format!(
            "  -> {dname:<28} {:8} {:8} {:8}{}{}\n",
            st.cps,
            st.inpps,
            st.outpps,
            largenum(st.inbps, f.exact),
            largenum(st.outbps, f.exact)
        )
    } else if f.thresholds {
        format!(
            "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}\n",
            spec.u_threshold, spec.l_threshold, d.active_conns, d.inact_conns
        )
    } else if f.persistent_conn {
        format!(
            "  -> {dname:<28} {:<9} {:<11} {:<10} {:<10}\n",
            spec.weight as u32, d.persist_conns, d.active_conns, d.inact_conns
        )
    } else if f.tun_info {
        let ti = if spec.forward == Forward::Tunnel { "ipip" } else { "n/a" };
        format!(
            "  -> {dname:<28} {:<7} {ti:<13} {:<6} {:<10} {:<10}\n",
            spec.forward.ipvs_name(),
            spec.weight,
            d.active_conns,
            d.inact_conns
        )
    } else {
        format!(
            "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}\n",
            spec.forward.ipvs_name(),
            spec.weight,
            d.active_conns,
            d.inact_conns
        )
    }
}

/// ipvsadm's `print_largenum`: a 9-character column, abbreviated with decimal K/M/G/T
/// (truncating) unless `--exact`, where wider numbers get one leading blank.
pub fn largenum(i: u64, exact: bool) -> String {
    if exact {
        let digits = i.to_string();
        let width = if digits.len() <= 8 { 9 } else { digits.len() + 1 };
        return format!("{digits:>width$}");
    }
    match i {
        0..100_000_000 => format!("{i:9}"),
        100_000_000..1_000_000_000 => format!("{:8}K", i / 1_000),
        1_000_000_000..100_000_000_000 => format!("{:8}M", i / 1_000_000),
        100_000_000_000..100_000_000_000_000 => format!("{:8}G", i / 1_000_000_000),
        _ => format!("{:8}T", i / 1_000_000_000_000),
    }
}

/// `-L --timeout` (`list_timeout`).
pub fn timeouts(t: &Timeouts) -> String {
    // Printed with %d from ints.
    format!("Timeout (tcp tcpfin udp): {} {} {}\n", t.tcp as i32, t.tcp_fin as i32, t.udp as i32)
}

/// The two title lines of `-L -c` (`list_conn`); `--persistent-conn` adds the engine columns.
pub fn conn_title(f: &Format) -> String {
    let mut out = String::from("IPVS connection entries\n");
    if f.persistent_conn {
        writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} {:<18} {:<16} pe_data",
            "state", "source", "virtual", "destination", "pe name"
        )
    } else {
        writeln!(out, "pro expire {:<11} {:<18} {:<18} destination", "state", "source", "virtual")
    }
    .unwrap();
    out
}

/// `ip_vs_proto_name`: the protocol column of `/proc/net/ip_vs_conn`, which ipvsadm copies.
fn conn_proto_name(p: u8) -> String {
    match p {
        0 => "IP".into(),
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        58 => "ICMPv6".into(),
        132 => "SCTP".into(),
        n => format!("IP_{n}"),
    }
}

/// One connection entry (`print_conn`). Ports are named for TCP, UDP and SCTP only, as
/// ipvsadm maps the protocol column back to a number for `getservbyport`; the PE columns
/// appear only with `--persistent-conn` and only for entries that have PE data.
pub fn conn_entry(c: &ConnStatus, f: &Format, names: &dyn Names) -> String {
    let serv = match c.protocol {
        6 => Some("tcp"),
        17 => Some("udp"),
        132 => Some("sctp"),
        _ => None,
    };
    let cname = addr_port(c.client, c.client_port, serv, f, names);
    let vname = addr_port(c.vaddr, c.vport, serv, f, names);
    let dname = addr_port(c.daddr, c.dport, serv, f, names);
    let expire = format!("{:02}:{:02}", c.expires / 60, c.expires % 60);
    let proto = conn_proto_name(c.protocol);
    match (&c.pe, f.persistent_conn) {
        // The widths of the destination and engine-name columns are swapped against the
        // title's (16 and 18 instead of 18 and 16): ipvsadm's printf, kept as it prints.
        (Some((name, data)), true) => format!(
            "{proto:<3} {expire:<6} {:<11} {cname:<18} {vname:<18} {dname:<16} {name:<18} {data}\n",
            c.state
        ),
        _ => format!("{proto:<3} {expire:<6} {:<11} {cname:<18} {vname:<18} {dname}\n", c.state),
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::{
        ipvsadm::{names::fake::FakeNames, sort::sort_all},
        model::{DestSpec, ServiceSpec, Stats},
    };

    fn key(proto: Protocol, addr: &str, port: u16) -> ServiceKey {
        ServiceKey::Addr { protocol: proto, addr: addr.parse().unwrap(), port }
    }

    fn dest(addr: &str, port: u16, fwd: Forward, w: i32, act: u32, inact: u32) -> DestStatus {
        DestStatus { spec: DestSpec::new(addr.parse().unwrap(), port, fwd, w), active_conns: act, inact_conns: inact, persist_conns: 0, stats: Default::default() }
    }

    /// The rich state of 05-listings/d-listings.txt, in an arbitrary (kernel-like) order.
    pub fn golden_state() -> Vec<ServiceStatus> {
        use Forward::*;
        use Protocol::*;
        let svc = |key, sched: &str, flags, timeout, netmask: Option<u32>, dests| {
            let mut spec = ServiceSpec::new(key, sched);
            spec.flags = flags;
            spec.timeout = timeout;
            if let Some(m) = netmask {
                spec.netmask = m;
            }
            ServiceStatus { spec, dests, stats: Default::default() }
        };
        let p = svc_flags::PERSISTENT;
        let mut thr = dest("192.0.2.12", 80, Masq, 4, 1, 8);
        thr.spec.u_threshold = 200;
        thr.spec.l_threshold = 100;
        let mut thr2 = dest("192.0.2.12", 443, Masq, 1, 0, 3);
        thr2.spec.u_threshold = 10;
        thr2.spec.l_threshold = 5;
        thr2.persist_conns = 1;
        let mut p443 = dest("192.0.2.11", 443, Masq, 1, 0, 1);
        p443.persist_conns = 1;
        vec![
            svc(key(Tcp, "203.0.113.12", 80), "sh", svc_flags::SCHED1 | svc_flags::SCHED2, 0, None, vec![
                dest("192.0.2.13", 80, Masq, 3, 0, 2),
                dest("192.0.2.12", 80, Tunnel, 2, 1, 0),
                dest("192.0.2.11", 80, Route, 1, 0, 0),
            ]),
            {
                let mut s = svc(key(Udp, "203.0.113.13", 5060), "rr", p, 30, None, vec![dest("192.0.2.11", 5060, Masq, 1, 0, 0)]);
                s.spec.pe = Some("sip".to_string());
                s
            },
            svc(ServiceKey::Fwmark { mark: 8, ipv6: true }, "wlc", 0, 0, None, vec![dest("2001:db8:1::11", 0, Route, 1, 0, 0)]),
            svc(key(Tcp, "203.0.113.10", 80), "wrr", 0, 0, None, vec![
                dest("192.0.2.13", 80, Masq, 0, 0, 0),
                thr,
                dest("192.0.2.11", 80, Masq, 5, 1, 9),
            ]),
            svc(key(Udp, "203.0.113.10", 53), "rr", 0, 0, None, vec![
                dest("192.0.2.12", 53, Masq, 2, 0, 2),
                dest("192.0.2.11", 53, Masq, 3, 0, 2),
            ]),
            svc(ServiceKey::Fwmark { mark: 7, ipv6: false }, "lc", 0, 0, None, vec![
                dest("198.18.0.5", 0, Tunnel, 2, 0, 0),
                dest("192.0.2.11", 0, Route, 1, 0, 0),
            ]),
            svc(key(Tcp, "2001:db8::10", 80), "rr", 0, 0, Some(128), vec![
                dest("2001:db8:1::12", 80, Masq, 2, 0, 2),
                dest("2001:db8:1::11", 80, Masq, 1, 0, 2),
            ]),
            svc(key(Tcp, "203.0.113.11", 443), "wlc", p, 300, Some(0xffff_ff00), vec![thr2, p443]),
            svc(key(Udp, "203.0.113.13", 53), "mh", svc_flags::SCHED1 | svc_flags::SCHED2 | svc_flags::ONEPACKET, 0, None, vec![
                dest("192.0.2.13", 53, Masq, 1, 0, 0),
            ]),
            svc(key(Tcp, "203.0.113.13", 0), "rr", p, 120, None, vec![dest("192.0.2.13", 0, Masq, 1, 0, 0)]),
            svc(key(Tcp, "203.0.113.10", 8080), "dh", 0, 0, None, vec![dest("192.0.2.12", 8080, Masq, 65535, 0, 1)]),
        ]
    }

    /// The block after `$ <command>` up to its `[exit N]` line, from a golden transcript.
    pub fn golden_block(file: &str, command: &str) -> String {
        let marker = format!("$ {command}\n");
        let start = file.find(&marker).unwrap_or_else(|| panic!("no {command:?}")) + marker.len();
        let end = start + file[start..].find("[exit ").unwrap();
        file[start..end].to_string()
    }

    const LISTINGS: &str = include_str!("testdata/d-listings.txt");

    fn render(f: &Format, with_header: bool) -> String {
        let mut state = golden_state();
        sort_all(&mut state);
        let mut out = String::new();
        if with_header {
            out.push_str(&header(&Info { version_code: 0x010201, conn_table_size: 4096 }));
        }
        out.push_str(&title(f));
        for s in &state {
            out.push_str(&service_entry(s, f, &FakeNames));
        }
        out
    }

    #[test]
    fn list_numeric_matches_golden() {
        let f = Format { numeric: true, ..Default::default() };
        let want = golden_block(LISTINGS, "ipvsadm -L -n");
        assert_eq!(render(&f, true), want);
        assert_eq!(want, golden_block(LISTINGS, "ipvsadm -Ln"));
    }

    #[test]
    fn list_names_matches_golden() {
        let want = golden_block(LISTINGS, "ipvsadm -L");
        assert_eq!(render(&Format::default(), true), want);
    }

    #[test]
    fn thresholds_and_persistent_conn_match_golden() {
        let f = Format { numeric: true, thresholds: true, ..Default::default() };
        assert_eq!(render(&f, true), golden_block(LISTINGS, "ipvsadm -L -n --thresholds"));
        let f = Format { numeric: true, persistent_conn: true, ..Default::default() };
        assert_eq!(render(&f, true), golden_block(LISTINGS, "ipvsadm -L -n --persistent-conn"));
    }

    #[test]
    fn save_matches_golden() {
        let f = Format { numeric: true, rule: true, ..Default::default() };
        assert_eq!(render(&f, false), golden_block(LISTINGS, "ipvsadm -S -n"));
        let f = Format { rule: true, ..Default::default() };
        assert_eq!(render(&f, false), golden_block(LISTINGS, "ipvsadm -S"));
    }

    /// The golden state with the counters (or rates) of a recorded `--exact` listing, which
    /// lists the objects in the sorted order, one line each.
    fn with_numbers(exact_block: &str, rates: bool) -> Vec<ServiceStatus> {
        let mut state = golden_state();
        sort_all(&mut state);
        let mut rows = exact_block.lines().skip(3).map(|l| {
            let n: Vec<u64> = l.split_whitespace().rev().take(5).map(|w| w.parse().unwrap()).collect();
            let (a, b, c, d, e) = (n[4], n[3], n[2], n[1], n[0]);
            if rates {
                Stats { cps: a, inpps: b, outpps: c, inbps: d, outbps: e, ..Default::default() }
            } else {
                Stats { conns: a, inpkts: b, outpkts: c, inbytes: d, outbytes: e, ..Default::default() }
            }
        });
        for s in &mut state {
            s.stats = rows.next().unwrap();
            for d in &mut s.dests {
                d.stats = rows.next().unwrap();
            }
        }
        assert!(rows.next().is_none());
        state
    }

    fn render_state(state: &[ServiceStatus], f: &Format) -> String {
        let mut out = header(&Info { version_code: 0x010201, conn_table_size: 4096 }) + &title(f);
        for s in state {
            out.push_str(&service_entry(s, f, &FakeNames));
        }
        out
    }

    #[test]
    fn stats_match_golden() {
        // After the transfers ended: a 115 MB download abbreviates to `115513K`.
        let after = &LISTINGS[LISTINGS.find("### after it finished").unwrap()..];
        let exact = golden_block(after, "ipvsadm -L -n --stats --exact");
        let state = with_numbers(&exact, false);
        let f = Format { numeric: true, stats: true, ..Default::default() };
        assert_eq!(render_state(&state, &f), golden_block(after, "ipvsadm -L -n --stats"));
        let f = Format { exact: true, ..f };
        assert_eq!(render_state(&state, &f), exact);
    }

    #[test]
    fn rates_match_golden() {
        let after = &LISTINGS[LISTINGS.find("### after it finished").unwrap()..];
        let exact = golden_block(after, "ipvsadm -L -n --rate --exact");
        let state = with_numbers(&exact, true);
        let f = Format { numeric: true, rate: true, ..Default::default() };
        assert_eq!(render_state(&state, &f), golden_block(after, "ipvsadm -L -n --rate"));
        let f = Format { exact: true, ..f };
        assert_eq!(render_state(&state, &f), exact);
    }

    #[test]
    fn largenum_columns() {
        let cases: [(u64, &str, &str); 7] = [
            (0, "        0", "        0"),
            (99_999_999, " 99999999", " 99999999"),
            (100_000_000, "  100000K", " 100000000"),
            (999_999_999, "  999999K", " 999999999"),
            (1_000_000_000, "    1000M", " 1000000000"),
            (123_456_789_012, "     123G", " 123456789012"),
            (123_456_789_012_345, "     123T", " 123456789012345"),
        ];
        for (n, short, exact) in cases {
            assert_eq!((largenum(n, false).as_str(), largenum(n, true).as_str()), (short, exact), "{n}");
        }
    }

    #[test]
    fn tun_info_columns() {
        let f = Format { numeric: true, tun_info: true, ..Default::default() };
        let mut s = golden_state().remove(0);
        sort_all(std::slice::from_mut(&mut s));
        assert_eq!(
            service_entry(&s, &f, &FakeNames),
            "TCP  203.0.113.12:80 sh (sh-fallback,sh-port)\n\
             \x20 -> 192.0.2.11:80                Route   n/a           1      0          0         \n\
             \x20 -> 192.0.2.12:80                Tunnel  ipip          2      1          0         \n\
             \x20 -> 192.0.2.13:80                Masq    n/a           3      0          2         \n"
        );
    }

    #[test]
    fn long_ipv4_names_are_cut() {
        struct Long;
        impl Names for Long {
            fn host_v4(&self, _: &str) -> Option<std::net::Ipv4Addr> {
                None
            }
            fn service_port(&self, _: &str, _: &str) -> Option<u16> {
                None
            }
            fn addr_name(&self, _: IpAddr) -> Option<String> {
                Some("a-very-long-host-name.example.org".into())
            }
            fn port_name(&self, _: u16, _: &str) -> Option<String> {
                None
            }
        }
        let s = ServiceStatus {
            spec: ServiceSpec::new(key(Protocol::Tcp, "10.0.0.1", 80), "rr"),
            dests: vec![dest("10.0.0.2", 80, Forward::Masq, 1, 0, 0)],
            stats: Default::default(),
        };
        let out = service_entry(&s, &Format::default(), &Long);
        assert_eq!(
            out,
            "TCP  a-very-long-host-name.exampl rr\n  -> a-very-long-host-name.exampl Masq    1      0          0         \n"
        );
    }
}

/// One `-L --daemon` line (`print_daemon`): the optional fields appear when they are non-zero
/// or set, which for a daemon lvsd runs is always (it fills in the defaults as the kernel does).
pub fn daemon(d: &crate::control::SyncDaemon) -> String {
    let mut s = format!("{} sync daemon (mcast={}, syncid={}", d.role.name(), d.mcast_ifn, d.syncid);
    if d.sync_maxlen != 0 {
        s.push_str(&format!(", maxlen={}", d.sync_maxlen));
    }
    if let Some(g) = d.mcast_group {
        s.push_str(&format!(", group={g}"));
    }
    if d.mcast_port != 0 {
        s.push_str(&format!(", port={}", d.mcast_port));
    }
    if d.mcast_ttl != 0 {
        s.push_str(&format!(", ttl={}", d.mcast_ttl));
    }
    s.push_str(")\n");
    s
}

#[cfg(test)]
mod daemon_tests {
    use crate::control::{SyncDaemon, SyncRole};

    #[test]
    fn daemon_line_as_ipvsadm_prints_it() {
        let d = SyncDaemon {
            role: SyncRole::Master,
            mcast_ifn: "to-clients".into(),
            syncid: 7,
            sync_maxlen: 1472,
            mcast_group: Some("224.0.0.81".parse().unwrap()),
            mcast_port: 8848,
            mcast_ttl: 1,
        };
        assert_eq!(
            super::daemon(&d),
            "master sync daemon (mcast=to-clients, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
        );
        let d = SyncDaemon { role: SyncRole::Backup, sync_maxlen: 0, mcast_group: None, mcast_port: 0, mcast_ttl: 0, ..d };
        assert_eq!(super::daemon(&d), "backup sync daemon (mcast=to-clients, syncid=7)\n");
    }
}
