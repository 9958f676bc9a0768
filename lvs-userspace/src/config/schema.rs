//! The configuration's schema: from a positioned YAML tree to a validated [`Config`].
//!
//! Value rules follow ipvsadm and the kernel's IPVS, so that a file lvsd accepts describes
//! exactly what `ipvsadm -A`/`-a` could have set up, and vice versa.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
};

use lvs_common::{
    flow::DEFAULT_CONN_TABLE_SIZE,
    service::{MAX_DESTS, MAX_DESTS_PER_SVC, MAX_SERVICES},
    sysctl::Sysctls,
    tcp_state::{DEFAULT_TIMEOUTS, ESTABLISHED, FIN_WAIT, STATE_NAMES},
};

use super::{
    tree::{Entry, Kind, Node},
    ClassifierRule, Config, ConfigError, Location, ServiceConfig, SyncConfig, XdpMode,
};
use crate::control::{SyncDaemon, SyncRole};
use lvs_common::classify::MAX_CLASS_RULES;
use crate::model::{svc_flags, DestSpec, Forward, Protocol, ServiceKey, ServiceSpec};

/// ipvsadm's upper bound for `--set` and `-p` timeouts (31 days).
const MAX_TIMEOUT: u64 = 86_400 * 31;
/// Largest connection table lvsd will try to allocate.
const MAX_CONN_TABLE_SIZE: u64 = 1 << 27;
/// The kernel's interface name limit (IFNAMSIZ less the terminating NUL).
const MAX_IFNAME_LEN: usize = 15;
/// ipvsadm parses weights and thresholds as a C int.
const MAX_INT: u64 = i32::MAX as u64;

/// IPVS's schedulers, as `ipvsadm -s` knows them.
pub(crate) const SCHEDULERS: [&str; 14] = [
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf", "twos",
];
/// ipvsadm's and the kernel's default scheduler.
const DEFAULT_SCHEDULER: &str = "wlc";

const TOP_KEYS: &[&str] = &[
    "interfaces",
    "xdp_mode",
    "connection_table_size",
    "timeouts",
    "sysctls",
    "classifier",
    "services",
    "metrics_address",
    "sync",
];
/// `sync:` holds at most one daemon of each role, as the kernel runs at most one of each.
const SYNC_KEYS: &[&str] = &["master", "backup"];
/// A sync daemon's parameters: ipvsadm's `--start-daemon` options, by their long names.
const SYNC_DAEMON_KEYS: &[&str] = &["interface", "syncid", "mcast_group", "mcast_port", "mcast_ttl", "sync_maxlen"];
const SYNC_DAEMON_ALIASES: &[(&str, &str)] = &[
    ("mcast_interface", "interface"),
    ("mcast_ifn", "interface"),
    ("ifname", "interface"),
    ("sync_id", "syncid"),
    ("id", "syncid"),
    ("group", "mcast_group"),
    ("port", "mcast_port"),
    ("ttl", "mcast_ttl"),
    ("maxlen", "sync_maxlen"),
    ("max_len", "sync_maxlen"),
];
const RULE_KEYS: &[&str] = &["mark", "destination", "protocol", "ports"];
/// The IPVS sysctls the dataplane honours (`/proc/sys/net/ipv4/vs/<name>`), each 0 or 1.
const SYSCTL_KEYS: &[&str] = &["expire_nodest_conn", "expire_quiescent_template"];
const SERVICE_KEYS: &[&str] = &[
    "fwmark",
    "family",
    "protocol",
    "address",
    "port",
    "scheduler",
    "persistent",
    "netmask",
    "one_packet",
    "persistence_engine",
    "real_servers",
];
const DEST_KEYS: &[&str] = &[
    "address",
    "port",
    "forward",
    "weight",
    "u_threshold",
    "l_threshold",
];

// Names people reach for from other load balancers or ipvsadm's long options; edit distance
// alone would not find them.
const TOP_ALIASES: &[(&str, &str)] = &[
    ("interface", "interfaces"),
    ("ifaces", "interfaces"),
    ("devices", "interfaces"),
    ("xdp", "xdp_mode"),
    ("mode", "xdp_mode"),
    ("table_size", "connection_table_size"),
    ("conn_table_size", "connection_table_size"),
    ("virtual_services", "services"),
    ("set", "timeouts"),
    ("classifiers", "classifier"),
    ("marks", "classifier"),
    ("fwmarks", "classifier"),
    ("rules", "classifier"),
    ("metrics", "metrics_address"),
    ("prometheus", "metrics_address"),
    ("metrics_listen", "metrics_address"),
    ("sync_daemons", "sync"),
    ("daemons", "sync"),
    ("connection_sync", "sync"),
];
const RULE_ALIASES: &[(&str, &str)] = &[
    ("fwmark", "mark"),
    ("set_mark", "mark"),
    ("dst", "destination"),
    ("daddr", "destination"),
    ("prefix", "destination"),
    ("address", "destination"),
    ("network", "destination"),
    ("proto", "protocol"),
    ("port", "ports"),
    ("dport", "ports"),
    ("dports", "ports"),
    ("port_range", "ports"),
];
const SERVICE_ALIASES: &[(&str, &str)] = &[
    ("proto", "protocol"),
    ("tcp_service", "protocol"),
    ("udp_service", "protocol"),
    ("addr", "address"),
    ("ip", "address"),
    ("vip", "address"),
    ("sched", "scheduler"),
    ("persistence", "persistent"),
    ("persist", "persistent"),
    ("mark", "fwmark"),
    ("fwmark_service", "fwmark"),
    ("firewall_mark", "fwmark"),
    ("af", "family"),
    ("mask", "netmask"),
    ("servers", "real_servers"),
    ("real_server", "real_servers"),
    ("reals", "real_servers"),
    ("destinations", "real_servers"),
    ("dests", "real_servers"),
    ("backends", "real_servers"),
];
const DEST_ALIASES: &[(&str, &str)] = &[
    ("addr", "address"),
    ("ip", "address"),
    ("method", "forward"),
    ("forwarding", "forward"),
    ("packet_forwarding", "forward"),
    ("upper_threshold", "u_threshold"),
    ("lower_threshold", "l_threshold"),
];
const XDP_MODES: &[&str] = &["auto", "native", "generic"];
const XDP_ALIASES: &[(&str, &str)] = &[
    ("drv", "native"),
    ("driver", "native"),
    ("skb", "generic"),
    ("offload", "native"),
];
const FORWARD_NAMES: &[&str] = &[
    "masq",
    "nat",
    "route",
    "dr",
    "gatewaying",
    "tunnel",
    "tun",
    "ipip",
];
const FORWARD_ALIASES: &[(&str, &str)] = &[
    ("direct", "dr"),
    ("masquerade", "masq"),
    ("masquerading", "masq"),
    ("ip_in_ip", "ipip"),
];
const SCHEDULER_ALIASES: &[(&str, &str)] = &[
    ("round_robin", "rr"),
    ("roundrobin", "rr"),
    ("weighted_round_robin", "wrr"),
    ("leastconn", "lc"),
    ("least_conn", "lc"),
    ("source", "sh"),
    ("maglev", "mh"),
];

/// Builds the configuration from the document's root (`None`: no document at all).
pub(crate) fn build(root: Option<Node>, source: &str) -> Result<Config, ConfigError> {
    let cx = Cx { source };
    let root = match root {
        Some(n) if !matches!(n.kind, Kind::Null) => n,
        _ => {
            return Err(
                ConfigError::file(source, "the configuration is empty").with_hint(
                    "it needs at least the interfaces to attach to, e.g. 'interfaces: [eth0]'",
                ),
            );
        }
    };
    if !matches!(root.kind, Kind::Map(_)) {
        return Err(cx.err(
            root.loc,
            format!(
                "the configuration must be a mapping of keys such as 'interfaces:', found {}",
                root.describe()
            ),
        ));
    }
    let top = cx.fields(&root, "the configuration", TOP_KEYS, TOP_ALIASES)?;

    let interfaces = match top.get("interfaces") {
        Some(e) => cx.interfaces(e)?,
        None => {
            return Err(cx
                .err(root.loc, "the configuration has no 'interfaces'")
                .with_hint("list the interfaces to attach XDP to, e.g. 'interfaces: [eth0]'"));
        }
    };
    let xdp_mode = match top.get("xdp_mode") {
        Some(e) => match cx.choice(e, XDP_MODES, XDP_ALIASES)? {
            "native" => XdpMode::Native,
            "generic" => XdpMode::Generic,
            _ => XdpMode::Auto,
        },
        None => XdpMode::default(),
    };
    let connection_table_size = match top.get("connection_table_size") {
        Some(e) => cx.number(e, 1, MAX_CONN_TABLE_SIZE)? as u32,
        None => DEFAULT_CONN_TABLE_SIZE,
    };
    let (timeouts, timeouts_named) = match top.get("timeouts") {
        Some(e) => cx.timeouts(e)?,
        None => (DEFAULT_TIMEOUTS, [false; 12]),
    };
    let sysctls = match top.get("sysctls") {
        Some(e) => cx.sysctls(e)?,
        None => Sysctls::default(),
    };
    let classifier = match top.get("classifier") {
        Some(e) => cx.classifier(e)?,
        None => Vec::new(),
    };
    let services = match top.get("services") {
        Some(e) => cx.services(e)?,
        None => Vec::new(),
    };
    let metrics_address = match top.get("metrics_address") {
        Some(e) => cx.socket_address(e)?,
        None => super::DEFAULT_METRICS_ADDRESS.parse().expect("valid default"),
    };
    let sync = match top.get("sync") {
        Some(e) => cx.sync(e)?,
        None => Vec::new(),
    };
    Ok(Config {
        sync,
        sysctls,
        metrics_address,
        interfaces,
        xdp_mode,
        connection_table_size,
        timeouts,
        timeouts_named,
        services,
        classifier,
        source: source.to_string(),
    })
}

struct Cx<'a> {
    source: &'a str,
}

/// A mapping whose keys have been checked against the schema.
struct Fields<'n> {
    entries: &'n [Entry],
    loc: Location,
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<&'n Entry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

fn family(ip: &IpAddr) -> &'static str {
    if ip.is_ipv6() {
        "IPv6"
    } else {
        "IPv4"
    }
}

fn addr_port(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

impl Cx<'_> {
    /// `address:port` (IPv6 as `[address]:port`), where lvsd serves /metrics.
    fn socket_address(&self, e: &Entry) -> Result<SocketAddr, ConfigError> {
        let text = self.text(e, "an address:port such as 127.0.0.1:9117")?;
        text.parse::<SocketAddr>().map_err(|_| {
            let err = self.err(e.value_loc(), format!("'{text}' is not an address:port"));
            if text.parse::<IpAddr>().is_ok() {
                err.with_hint(format!("add the port, e.g. '{text}:9117' (IPv6: '[{text}]:9117')"))
            } else {
                err.with_hint("write e.g. 127.0.0.1:9117, or [::1]:9117 for IPv6")
            }
        })
    }

    fn err(&self, loc: Location, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.source, loc, message)
    }

    /// `node` as a mapping holding only `keys`. `what` names it in messages ("a service").
    fn fields<'n>(
        &self,
        node: &'n Node,
        what: &str,
        keys: &[&str],
        aliases: &[(&str, &str)],
    ) -> Result<Fields<'n>, ConfigError> {
        let Kind::Map(entries) = &node.kind else {
            return Err(self.err(
                node.loc,
                format!("{what} must be a mapping, found {}", node.describe()),
            ));
        };
        for e in entries {
            if !keys.contains(&e.key.as_str()) {
                let hint = match (misplaced(what, &e.key), suggest(&e.key, keys, aliases)) {
                    (Some(h), _) => h.to_string(),
                    (None, Some(s)) => format!("did you mean '{s}'?"),
                    (None, None) => format!("{what} takes: {}", keys.join(", ")),
                };
                return Err(self
                    .err(e.key_loc, format!("unknown key '{}' in {what}", e.key))
                    .with_hint(hint));
            }
        }
        Ok(Fields {
            entries,
            loc: node.loc,
        })
    }

    fn require<'n>(
        &self,
        f: &Fields<'n>,
        what: &str,
        key: &str,
        example: &str,
    ) -> Result<&'n Entry, ConfigError> {
        f.get(key).ok_or_else(|| {
            self.err(f.loc, format!("{what} has no '{key}'"))
                .with_hint(format!("add e.g. '{example}'"))
        })
    }

    /// A non-negative integer in `min..=max`, written as a plain YAML number.
    fn number(&self, e: &Entry, min: u64, max: u64) -> Result<u64, ConfigError> {
        let key = &e.key;
        let loc = e.value_loc();
        match &e.value.kind {
            Kind::Scalar { text, plain: true } => {
                if !is_integer(text) {
                    return Err(
                        self.err(loc, format!("{key} must be a whole number, found '{text}'"))
                    );
                }
                match text.parse::<i128>() {
                    Ok(v) if v >= i128::from(min) && v <= i128::from(max) => Ok(v as u64),
                    _ => Err(self.err(
                        loc,
                        format!("{key} {text} is out of range ({min} to {max})"),
                    )),
                }
            }
            Kind::Scalar { text, plain: false } => Err(self
                .err(
                    loc,
                    format!("{key} must be a number, found quoted text \"{text}\""),
                )
                .with_hint("remove the quotes")),
            Kind::Null => Err(self.err(
                loc,
                format!("{key} has no value; give a number from {min} to {max}"),
            )),
            _ => Err(self.err(
                loc,
                format!("{key} must be a number, found {}", e.value.describe()),
            )),
        }
    }

    /// A scalar's text; `expected` names what was wanted ("an IP address").
    fn text<'n>(&self, e: &'n Entry, expected: &str) -> Result<&'n str, ConfigError> {
        match &e.value.kind {
            Kind::Scalar { text, .. } => Ok(text),
            Kind::Null => Err(self.err(
                e.value_loc(),
                format!("{} has no value; give {expected}", e.key),
            )),
            _ => Err(self.err(
                e.value_loc(),
                format!("{} must be {expected}, found {}", e.key, e.value.describe()),
            )),
        }
    }

    /// One of `options`, exactly as spelled there.
    fn choice<'o>(
        &self,
        e: &Entry,
        options: &[&'o str],
        aliases: &[(&str, &'o str)],
    ) -> Result<&'o str, ConfigError> {
        let list = options.join(", ");
        let given = self.text(e, &format!("one of {list}"))?;
        if let Some(o) = options.iter().find(|o| **o == given) {
            return Ok(o);
        }
        let hint = match suggest(given, options, aliases) {
            Some(s) => format!("did you mean '{s}'?"),
            None => format!("choose one of {list}"),
        };
        Err(self
            .err(e.value_loc(), format!("unknown {} '{given}'", e.key))
            .with_hint(hint))
    }

    fn address(&self, e: &Entry) -> Result<IpAddr, ConfigError> {
        if let Kind::Seq(_) = e.value.kind {
            // `address: [2001:db8::1]`, the bracketed form, reads as a one-element list.
            return Err(self
                .err(
                    e.value_loc(),
                    format!("{} must be an IP address, found a list", e.key),
                )
                .with_hint("write IPv6 addresses without brackets"));
        }
        let text = self.text(e, "an IPv4 or IPv6 address")?;
        text.parse::<IpAddr>().map_err(|_| {
            let err = self.err(
                e.value_loc(),
                format!("'{text}' is not an IPv4 or IPv6 address"),
            );
            if text.parse::<SocketAddr>().is_ok() {
                err.with_hint("give the port under 'port:', not in the address")
            } else if text.contains('/') {
                err.with_hint("give a single address, not a network")
            } else {
                err
            }
        })
    }

    /// A list, with an empty value read as an empty list (everything commented out).
    fn list<'n>(&self, e: &'n Entry, item: &str) -> Result<&'n [Node], ConfigError> {
        match &e.value.kind {
            Kind::Seq(items) => Ok(items),
            Kind::Null => Ok(&[]),
            _ => Err(self
                .err(
                    e.value_loc(),
                    format!("{} must be a list, found {}", e.key, e.value.describe()),
                )
                .with_hint(format!("start each {item} with '- '"))),
        }
    }

    /// `sync: {master: {...}, backup: {...}}`, each with ipvsadm's `--start-daemon` options.
    /// Group, port and TTL get the kernel's defaults here; `sync_maxlen` stays 0 ("from the
    /// MTU", resolved when the daemon starts) unless given.
    fn sync(&self, e: &Entry) -> Result<Vec<SyncConfig>, ConfigError> {
        if matches!(e.value.kind, Kind::Null) {
            return Ok(Vec::new());
        }
        let f = self.fields(&e.value, "sync", SYNC_KEYS, &[])?;
        let mut out = Vec::new();
        for entry in f.entries {
            let role = if entry.key == "master" { SyncRole::Master } else { SyncRole::Backup };
            let what = format!("the {} sync daemon", role.name());
            let d = self.fields(&entry.value, &what, SYNC_DAEMON_KEYS, SYNC_DAEMON_ALIASES)?;
            let if_e = self.require(&d, &what, "interface", "interface: eth1")?;
            let ifn = self.text(if_e, "an interface name")?;
            if let Some(p) = ifname_problem(ifn) {
                return Err(self.err(if_e.value_loc(), p));
            }
            let syncid = match d.get("syncid") {
                Some(e) => self.number(e, 0, 255)? as u8,
                None => 0,
            };
            let mcast_group = match d.get("mcast_group") {
                None => IpAddr::V4(crate::daemon::sync::DEFAULT_GROUP),
                Some(e) => {
                    let a = self.address(e)?;
                    if !a.is_multicast() {
                        return Err(self
                            .err(e.value_loc(), format!("mcast_group {a} is not a multicast address"))
                            .with_hint("IPv4 multicast is 224.0.0.0/4; the default is 224.0.0.81"));
                    }
                    if a.is_ipv6() {
                        return Err(self.err(
                            e.value_loc(),
                            format!("mcast_group {a}: IPv6 multicast groups for connection sync are not supported by lvsd yet"),
                        ));
                    }
                    a
                }
            };
            let mcast_port = match d.get("mcast_port") {
                Some(e) => self.number(e, 1, 65535)? as u16,
                None => crate::daemon::sync::DEFAULT_PORT,
            };
            let mcast_ttl = match d.get("mcast_ttl") {
                Some(e) => self.number(e, 1, 255)? as u8,
                None => 1,
            };
            // ipvsadm's limit: the largest UDP payload of an IPv4 datagram.
            let sync_maxlen = match d.get("sync_maxlen") {
                Some(e) => self.number(e, 1, 65535 - 20 - 8)? as u16,
                None => 0,
            };
            out.push(SyncConfig {
                daemon: SyncDaemon {
                    role,
                    mcast_ifn: ifn.to_string(),
                    syncid,
                    sync_maxlen,
                    mcast_group: Some(mcast_group),
                    mcast_port,
                    mcast_ttl,
                },
                location: d.loc,
            });
        }
        // Master first, whatever the file's order, as the kernel lists them.
        out.sort_by_key(|s| s.daemon.role != SyncRole::Master);
        Ok(out)
    }

    fn interfaces(&self, e: &Entry) -> Result<Vec<String>, ConfigError> {
        let items = match &e.value.kind {
            Kind::Seq(items) => items.as_slice(),
            Kind::Null => &[],
            Kind::Scalar { text, .. } => {
                return Err(self
                    .err(
                        e.value_loc(),
                        format!("interfaces must be a list, found '{text}'"),
                    )
                    .with_hint(format!("write 'interfaces: [{text}]'")));
            }
            Kind::Map(_) => {
                return Err(self.err(e.value_loc(), "interfaces must be a list, found a mapping"));
            }
        };
        if items.is_empty() {
            return Err(self
                .err(e.value_loc(), "interfaces is empty")
                .with_hint("list at least one interface to attach XDP to"));
        }
        let mut seen: Vec<(String, Location)> = Vec::new();
        for item in items {
            let name = match &item.kind {
                Kind::Scalar { text, .. } => text.as_str(),
                _ => {
                    return Err(self.err(
                        item.loc,
                        format!("an interface name must be text, found {}", item.describe()),
                    ));
                }
            };
            let problem = ifname_problem(name);
            if let Some(p) = problem {
                return Err(self.err(item.loc, p));
            }
            if let Some((_, first)) = seen.iter().find(|(n, _)| n == name) {
                return Err(self
                    .err(item.loc, format!("interface '{name}' is listed twice"))
                    .with_hint(format!("first listed at line {}", first.line)));
            }
            seen.push((name.to_string(), item.loc));
        }
        Ok(seen.into_iter().map(|(n, _)| n).collect())
    }

    /// The timeouts (kernel defaults where unnamed) and which states the file names.
    /// `sysctls: {expire_nodest_conn: 1}`: the kernel's names and values; unnamed ones keep
    /// the kernel's default (0).
    fn sysctls(&self, e: &Entry) -> Result<Sysctls, ConfigError> {
        let mut out = Sysctls::default();
        if matches!(e.value.kind, Kind::Null) {
            return Ok(out);
        }
        let f = self.fields(&e.value, "sysctls", SYSCTL_KEYS, &[])?;
        for entry in f.entries {
            let v = self.number(entry, 0, 1)? as u32;
            match entry.key.as_str() {
                "expire_nodest_conn" => out.expire_nodest_conn = v,
                _ => out.expire_quiescent_template = v,
            }
        }
        Ok(out)
    }

    fn timeouts(&self, e: &Entry) -> Result<([u32; 12], [bool; 12]), ConfigError> {
        let mut names: Vec<(String, usize)> = STATE_NAMES
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_ascii_lowercase(), i))
            .collect();
        // ipvsadm --set's names for the two TCP timeouts it can set.
        names.push(("tcp".to_string(), ESTABLISHED as usize));
        names.push(("tcpfin".to_string(), FIN_WAIT as usize));
        let keys: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();

        let mut timeouts = DEFAULT_TIMEOUTS;
        let entries = match &e.value.kind {
            Kind::Null => return Ok((timeouts, [false; 12])),
            Kind::Map(_) => {
                self.fields(&e.value, "timeouts", &keys, &[("tcp_fin", "tcpfin")])?
                    .entries
            }
            _ => {
                return Err(self
                    .err(
                        e.value_loc(),
                        format!("timeouts must be a mapping, found {}", e.value.describe()),
                    )
                    .with_hint("write e.g. 'timeouts: {tcp: 900, tcpfin: 120, udp: 300}'"));
            }
        };
        let mut set_by: [Option<&str>; 12] = [None; 12];
        for t in entries {
            let slot = names
                .iter()
                .find(|(n, _)| *n == t.key)
                .map(|(_, i)| *i)
                .unwrap_or(0);
            if let Some(first) = set_by[slot] {
                return Err(self
                    .err(
                        t.key_loc,
                        format!(
                            "timeouts '{first}' and '{}' both set the {} timeout",
                            t.key, STATE_NAMES[slot]
                        ),
                    )
                    .with_hint("give only one of them"));
            }
            set_by[slot] = Some(&t.key);
            timeouts[slot] = self.number(t, 1, MAX_TIMEOUT)? as u32;
        }
        Ok((timeouts, set_by.map(|n| n.is_some())))
    }

    /// The classifier's rules, in order. A rule that an earlier one covers entirely could never
    /// match (the first match wins) and is refused; partial overlaps are allowed.
    fn classifier(&self, e: &Entry) -> Result<Vec<ClassifierRule>, ConfigError> {
        let items = self.list(e, "classifier rule")?;
        let mut rules: Vec<ClassifierRule> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if i == MAX_CLASS_RULES {
                return Err(self.err(
                    item.loc,
                    format!("more than {MAX_CLASS_RULES} classifier rules, the most the dataplane holds"),
                ).with_hint("merge rules: a rule takes a prefix and a port range"));
            }
            let r = self.rule(item)?;
            let m = r.map_rule();
            if let Some(first) = rules.iter().find(|o| m.shadowed_by(&o.map_rule())) {
                let what = if first.map_rule() == m {
                    format!("repeats the rule at line {}", first.location.line)
                } else {
                    format!("is covered by the rule at line {} (mark {})", first.location.line, first.mark)
                };
                return Err(self
                    .err(r.location, format!("this classifier rule never matches: it {what}"))
                    .with_hint(format!(
                        "the first matching rule wins; move this rule above line {} or remove it",
                        first.location.line
                    )));
            }
            rules.push(r);
        }
        Ok(rules)
    }

    fn rule(&self, node: &Node) -> Result<ClassifierRule, ConfigError> {
        let f = self.fields(node, "a classifier rule", RULE_KEYS, RULE_ALIASES)?;
        let mark = self
            .number(self.require(&f, "a classifier rule", "mark", "mark: 1")?, 1, u64::from(u32::MAX))
            .map_err(|err| err.with_hint("a firewall mark is from 1 to 4294967295 (0 means no mark)"))?
            as u32;
        let (addr, prefix_len) =
            self.prefix(self.require(&f, "a classifier rule", "destination", "destination: 203.0.113.0/24")?)?;
        let protocol = match f.get("protocol") {
            None => None,
            Some(e) => match self.choice(e, &["tcp", "udp", "any"], &[("all", "any"), ("both", "any")])? {
                "tcp" => Some(Protocol::Tcp),
                "udp" => Some(Protocol::Udp),
                _ => None,
            },
        };
        let ports = match f.get("ports") {
            None => (0, u16::MAX),
            Some(e) => self.port_range(e)?,
        };
        Ok(ClassifierRule { mark, addr, prefix_len, protocol, ports, location: f.loc })
    }

    /// `ADDRESS` or `ADDRESS/LENGTH` with no host bits set.
    fn prefix(&self, e: &Entry) -> Result<(IpAddr, u8), ConfigError> {
        let loc = e.value_loc();
        let text = self.text(e, "an address or prefix such as 203.0.113.0/24")?;
        let (a, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let Ok(addr) = a.parse::<IpAddr>() else {
            return Err(self
                .err(loc, format!("'{text}' is not an IPv4 or IPv6 address or prefix"))
                .with_hint("write e.g. 203.0.113.0/24, 203.0.113.12 or 2001:db8::/32"));
        };
        let max: u8 = if addr.is_ipv6() { 128 } else { 32 };
        let len = match len {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max && !l.starts_with('+') => n,
                _ => {
                    return Err(self.err(
                        loc,
                        format!("prefix length '{l}' in '{text}' is not a number from 0 to {max}"),
                    ))
                }
            },
        };
        let host_bits = match addr {
            IpAddr::V4(a) => u32::from(a) & !u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0) != 0,
            IpAddr::V6(a) => u128::from(a) & !u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0) != 0,
        };
        if host_bits {
            let net = ClassifierRule {
                mark: 1,
                addr,
                prefix_len: len,
                protocol: None,
                ports: (0, 0),
                location: loc,
            }
            .network();
            return Err(self
                .err(loc, format!("'{text}' has host bits set beyond the /{len} prefix"))
                .with_hint(format!("did you mean {net}/{len}?")));
        }
        Ok((addr, len))
    }

    /// `PORT` or `FIRST-LAST` (inclusive).
    fn port_range(&self, e: &Entry) -> Result<(u16, u16), ConfigError> {
        let loc = e.value_loc();
        let hint = "write one port (443) or a range (8000-8099)";
        let text = self.text(e, "a port or a port range such as 8000-8099").map_err(|err| err.with_hint(hint))?;
        let one = |t: &str| -> Option<u16> {
            (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())).then(|| t.parse::<u16>().ok()).flatten()
        };
        let (lo, hi) = match text.split_once('-') {
            None => match one(text) {
                Some(p) => (p, p),
                None => return Err(self.err(loc, format!("'{text}' is not a port from 0 to 65535")).with_hint(hint)),
            },
            Some((a, b)) => {
                if a.trim().is_empty() || b.trim().is_empty() {
                    return Err(self
                        .err(loc, format!("port range '{text}' is missing an end"))
                        .with_hint(hint));
                }
                match (one(a.trim()), one(b.trim())) {
                    (Some(lo), Some(hi)) => (lo, hi),
                    _ => {
                        return Err(self
                            .err(loc, format!("port range '{text}' needs two ports from 0 to 65535"))
                            .with_hint(hint))
                    }
                }
            }
        };
        if lo > hi {
            return Err(self
                .err(loc, format!("port range '{text}' is empty: {lo} is above {hi}"))
                .with_hint(format!("write {hi}-{lo}")));
        }
        Ok((lo, hi))
    }

    fn services(&self, e: &Entry) -> Result<Vec<ServiceConfig>, ConfigError> {
        let items = self.list(e, "service")?;
        let mut services: Vec<ServiceConfig> = Vec::with_capacity(items.len());
        let mut by_key: HashMap<ServiceKey, Location> = HashMap::new();
        let mut total_dests = 0usize;
        for (i, item) in items.iter().enumerate() {
            if i == MAX_SERVICES as usize {
                return Err(self.err(
                    item.loc,
                    format!("more than {MAX_SERVICES} services, the most the dataplane holds"),
                ));
            }
            let svc = self.service(item)?;
            if let Some(first) = by_key.insert(svc.spec.key, svc.location) {
                return Err(self
                    .err(
                        svc.location,
                        format!("service {} is defined twice", svc.spec.key),
                    )
                    .with_hint(format!("first defined at line {}", first.line)));
            }
            total_dests += svc.dests.len();
            if total_dests > MAX_DESTS as usize {
                return Err(self.err(
                    svc.location,
                    format!(
                        "more than {MAX_DESTS} real servers in all, the most the dataplane holds"
                    ),
                ));
            }
            services.push(svc);
        }
        Ok(services)
    }

    /// `fwmark: MARK` (with `family: ipv4|ipv6`), as ipvsadm `-f MARK [-6]`.
    fn fwmark_key(&self, f: &Fields, e: &Entry) -> Result<ServiceKey, ConfigError> {
        for key in ["protocol", "address", "port"] {
            if let Some(k) = f.get(key) {
                return Err(self
                    .err(k.key_loc, format!("a firewall-mark service has no '{key}'"))
                    .with_hint("it takes the packets the classifier marks; remove 'fwmark' for an address service"));
            }
        }
        let mark = self.number(e, 1, u64::from(u32::MAX)).map_err(|err| {
            err.with_hint("a firewall mark is from 1 to 4294967295 (0 means no mark)")
        })? as u32;
        let ipv6 = match f.get("family") {
            Some(e) => self.choice(e, &["ipv4", "ipv6"], &[("inet", "ipv4"), ("inet6", "ipv6")])? == "ipv6",
            None => false,
        };
        Ok(ServiceKey::Fwmark { mark, ipv6 })
    }

    fn service(&self, node: &Node) -> Result<ServiceConfig, ConfigError> {
        let f = self.fields(node, "a service", SERVICE_KEYS, SERVICE_ALIASES)?;
        if let Some(e) = f.get("fwmark") {
            let key = self.fwmark_key(&f, e)?;
            return self.service_rest(&f, key, None);
        }
        if let Some(e) = f.get("family") {
            return Err(self
                .err(e.key_loc, "family is only for a firewall-mark service")
                .with_hint("an address service takes its family from 'address'"));
        }
        let protocol = match self.choice(
            self.require(&f, "a service", "protocol", "protocol: tcp")?,
            &["tcp", "udp"],
            &[],
        )? {
            "udp" => Protocol::Udp,
            _ => Protocol::Tcp,
        };
        let addr =
            self.address(self.require(&f, "a service", "address", "address: 203.0.113.10")?)?;
        let port_e = self.require(&f, "a service", "port", "port: 80")?;
        let port = self.number(port_e, 0, u64::from(u16::MAX))? as u16;
        let key = ServiceKey::Addr {
            protocol,
            addr,
            port,
        };
        self.service_rest(&f, key, Some(port_e))
    }

    /// A service's scheduler, persistence and real servers. `port_e` is the port entry of an
    /// address service.
    fn service_rest(
        &self,
        f: &Fields,
        key: ServiceKey,
        port_e: Option<&Entry>,
    ) -> Result<ServiceConfig, ConfigError> {
        let scheduler = match f.get("scheduler") {
            Some(e) => self.choice(e, &SCHEDULERS, SCHEDULER_ALIASES)?,
            None => DEFAULT_SCHEDULER,
        };
        let addr = match key {
            ServiceKey::Addr { addr, .. } => addr,
            ServiceKey::Fwmark { ipv6: true, .. } => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            ServiceKey::Fwmark { ipv6: false, .. } => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let mut spec = ServiceSpec::new(key, scheduler);

        if let Some(e) = f.get("persistent") {
            let numeric =
                matches!(&e.value.kind, Kind::Scalar { text, plain: true } if is_integer(text));
            spec.timeout = self.number(e, 1, MAX_TIMEOUT).map_err(|err| {
                if numeric {
                    err
                } else {
                    err.with_hint(
                        "give the persistence timeout in seconds (ipvsadm -p defaults to 300)",
                    )
                }
            })? as u32;
            spec.flags |= svc_flags::PERSISTENT;
        }
        if let Some(e) = f.get("netmask") {
            if spec.flags & svc_flags::PERSISTENT == 0 {
                return Err(self
                    .err(
                        e.key_loc,
                        "netmask is only meaningful for a persistent service",
                    )
                    .with_hint("add 'persistent: SECONDS' or remove netmask"));
            }
            spec.netmask = self.netmask(e, addr)?;
        }
        if let Some(e) = f.get("one_packet") {
            // ipvsadm -o: ipvsadm refuses it on TCP services ("One-Packet Scheduling is only
            // for UDP virtual services"), and so does the config.
            if self.choice(e, &["true", "false"], &[])? == "true" {
                // ipvsadm does not check it for firewall-mark services.
                if matches!(key, ServiceKey::Addr { protocol: Protocol::Tcp, .. }) {
                    return Err(self
                        .err(e.key_loc, "one_packet (ipvsadm -o) is only for UDP services")
                        .with_hint("remove one_packet, or make the service 'protocol: udp'"));
                }
                spec.flags |= svc_flags::ONEPACKET;
            }
        }
        if let Some(e) = f.get("persistence_engine") {
            // ipvsadm --pe. The kernel takes it on any service and uses it only when a
            // persistent UDP service schedules (a TCP one then drops every new connection):
            // the config refuses the combinations that cannot work.
            let pe = self.choice(e, &[crate::model::PE_SIP], &[])?;
            if spec.flags & svc_flags::PERSISTENT == 0 {
                return Err(self
                    .err(e.key_loc, "persistence_engine is only meaningful for a persistent service")
                    .with_hint("add 'persistent: SECONDS' or remove persistence_engine"));
            }
            match key {
                ServiceKey::Addr { protocol: Protocol::Udp, addr: IpAddr::V6(_), .. } => {
                    return Err(self
                        .err(e.key_loc, "persistence_engine on an IPv6 service is not supported by lvsd yet")
                        .with_hint("the Call-ID search runs for IPv4 services only"));
                }
                ServiceKey::Addr { protocol: Protocol::Udp, .. } => {}
                ServiceKey::Addr { .. } => {
                    return Err(self
                        .err(e.key_loc, "persistence_engine sip is only for UDP services (SIP over TCP is not looked into)")
                        .with_hint("remove persistence_engine, or make the service 'protocol: udp'"));
                }
                ServiceKey::Fwmark { .. } => {
                    return Err(self
                        .err(e.key_loc, "persistence_engine on a firewall-mark service is not supported by lvsd yet")
                        .with_hint("use an address service: 'protocol: udp', 'address' and 'port'"));
                }
            }
            spec.pe = Some(pe.to_string());
        }
        if let Some(port_e) = port_e.filter(|_| key.port() == 0 && spec.flags & svc_flags::PERSISTENT == 0) {
            return Err(self
                .err(
                    port_e.value_loc(),
                    "port 0 is only allowed for a persistent service",
                )
                .with_hint(
                    "add 'persistent: SECONDS' for an all-ports service, or give the port",
                ));
        }

        let mut dests: Vec<DestSpec> = Vec::new();
        let mut dest_locations: Vec<Location> = Vec::new();
        if let Some(e) = f.get("real_servers") {
            for (i, item) in self.list(e, "real server")?.iter().enumerate() {
                if i == MAX_DESTS_PER_SVC {
                    return Err(self.err(
                        item.loc,
                        format!(
                            "service {} has more than {MAX_DESTS_PER_SVC} real servers, the most the dataplane holds per service",
                            spec.key
                        ),
                    ));
                }
                let d = self.dest(item, &spec)?;
                if let Some(j) = dests
                    .iter()
                    .position(|o| o.addr == d.addr && o.port == d.port)
                {
                    return Err(self
                        .err(
                            item.loc,
                            format!(
                                "real server {} is listed twice in this service",
                                addr_port(d.addr, d.port)
                            ),
                        )
                        .with_hint(format!("first listed at line {}", dest_locations[j].line)));
                }
                dests.push(d);
                dest_locations.push(item.loc);
            }
        }
        Ok(ServiceConfig {
            spec,
            dests,
            location: f.loc,
            dest_locations,
        })
    }

    fn netmask(&self, e: &Entry, addr: IpAddr) -> Result<u32, ConfigError> {
        if addr.is_ipv6() {
            return self.number(e, 1, 128).map(|v| v as u32).map_err(|err| {
                err.with_hint("an IPv6 service's netmask is a prefix length from 1 to 128")
            });
        }
        let hint = "an IPv4 service's netmask is a dotted mask such as 255.255.255.0";
        let text = self
            .text(e, "a dotted mask such as 255.255.255.0")
            .map_err(|err| err.with_hint(hint))?;
        let Ok(mask) = text.parse::<Ipv4Addr>() else {
            return Err(self
                .err(
                    e.value_loc(),
                    format!("netmask '{text}' is not a dotted IPv4 mask"),
                )
                .with_hint(hint));
        };
        let m = u32::from(mask);
        if m == 0 || m.leading_ones() + m.trailing_zeros() != 32 {
            return Err(self
                .err(e.value_loc(), format!("netmask {text} is not a valid mask"))
                .with_hint("its one-bits must be contiguous from the left, at least one, e.g. 255.255.255.0"));
        }
        Ok(m)
    }

    fn dest(&self, node: &Node, svc: &ServiceSpec) -> Result<DestSpec, ConfigError> {
        let f = self.fields(node, "a real server", DEST_KEYS, DEST_ALIASES)?;
        let addr_e = self.require(&f, "a real server", "address", "address: 192.0.2.11")?;
        let addr = self.address(addr_e)?;
        if addr.is_ipv6() != svc.key.is_ipv6() {
            let svc_family = if svc.key.is_ipv6() { "IPv6" } else { "IPv4" };
            return Err(self.err(
                addr_e.value_loc(),
                format!(
                    "real server {addr} is {} but the service is {svc_family}",
                    family(&addr)
                ),
            ));
        }
        let forward = match f.get("forward") {
            Some(e) => match self.text(e, "a forwarding method")? {
                "masq" | "nat" => Forward::Masq,
                "route" | "dr" | "gatewaying" => Forward::Route,
                "tunnel" | "tun" | "ipip" => Forward::Tunnel,
                other => {
                    let err = self.err(e.value_loc(), format!("unknown forward '{other}'"));
                    return Err(match suggest(other, FORWARD_NAMES, FORWARD_ALIASES) {
                        Some(s) => err.with_hint(format!("did you mean '{s}'?")),
                        None => err.with_hint("choose masq (or nat), route (or dr, gatewaying) or tunnel (or tun, ipip)"),
                    });
                }
            },
            None => Forward::Route,
        };
        let svc_port = svc.key.port();
        let port = match f.get("port") {
            None => svc_port,
            Some(e) => {
                let p = self.number(e, 0, u64::from(u16::MAX))? as u16;
                // ipvsadm forces a DR/TUN server's port to the service's, except for
                // firewall-mark services, which have no port.
                let fwmark = matches!(svc.key, ServiceKey::Fwmark { .. });
                if p != svc_port && forward != Forward::Masq && !fwmark {
                    let method = if forward == Forward::Route {
                        "direct routing"
                    } else {
                        "tunnelling"
                    };
                    return Err(self
                        .err(
                            e.value_loc(),
                            format!("real server port {p} differs from the service port {svc_port}; {method} cannot change the port"),
                        )
                        .with_hint("remove 'port:' or use 'forward: masq'"));
                }
                if p == 0 && svc_port != 0 && !fwmark {
                    return Err(self
                        .err(
                            e.value_loc(),
                            "real server port 0 is only meaningful for a port-0 service",
                        )
                        .with_hint(format!(
                            "remove 'port:' to use the service's port {svc_port}"
                        )));
                }
                p
            }
        };
        let weight = match f.get("weight") {
            Some(e) => self.number(e, 0, MAX_INT)? as i32,
            None => 1,
        };
        let mut d = DestSpec::new(addr, port, forward, weight);
        if let Some(e) = f.get("u_threshold") {
            d.u_threshold = self.number(e, 0, MAX_INT)? as u32;
        }
        if let Some(e) = f.get("l_threshold") {
            d.l_threshold = self.number(e, 0, MAX_INT)? as u32;
            if d.l_threshold > d.u_threshold {
                let err = self.err(
                    e.value_loc(),
                    format!(
                        "l_threshold {} is above u_threshold {}",
                        d.l_threshold, d.u_threshold
                    ),
                );
                return Err(if f.get("u_threshold").is_none() {
                    err.with_hint("u_threshold defaults to 0 (no limit) and the kernel refuses a lower threshold above the upper one; set u_threshold too")
                } else {
                    err
                });
            }
        }
        Ok(d)
    }
}

/// What is wrong with an interface name, if anything (the kernel's `dev_valid_name`).
fn ifname_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("an interface name is empty".to_string())
    } else if name.len() > MAX_IFNAME_LEN {
        Some(format!("interface name '{name}' is longer than {MAX_IFNAME_LEN} bytes"))
    } else if name == "." || name == ".." {
        Some(format!("'{name}' is not a valid interface name"))
    } else if name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        Some(format!("interface name '{name}' contains '/', ':' or whitespace"))
    } else {
        None
    }
}

/// Advice for a key that is valid one level down, the usual indentation slip.
fn misplaced(what: &str, key: &str) -> Option<&'static str> {
    match what {
        "the configuration" if SERVICE_KEYS.contains(&key) => {
            Some("this key belongs to a service, in the list under 'services:'")
        }
        "the configuration" if matches!(key, "tcp" | "tcpfin" | "udp") => {
            Some("timeouts go under 'timeouts:'")
        }
        "a service" if DEST_KEYS.contains(&key) => {
            Some("this key belongs to a real server, in the list under 'real_servers:'")
        }
        _ => None,
    }
}

/// Plain decimal digits with an optional sign (a negative number is then "out of range",
/// which says more than "not a number").
fn is_integer(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The candidate `given` was probably meant to be: a known alias, a case or '-'/'_' slip, or a
/// small edit away.
fn suggest<'c>(
    given: &str,
    candidates: &[&'c str],
    aliases: &[(&str, &'c str)],
) -> Option<&'c str> {
    let g = given.to_ascii_lowercase().replace('-', "_");
    if let Some((_, c)) = aliases.iter().find(|(a, _)| *a == g) {
        return Some(c);
    }
    candidates
        .iter()
        .map(|c| (edit_distance(&g, c), *c))
        .filter(|(d, c)| *d <= if c.len() <= 4 { 1 } else { 2 })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: Levenshtein plus adjacent transpositions, which are the
/// commonest typing slip ("wieght").
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}
