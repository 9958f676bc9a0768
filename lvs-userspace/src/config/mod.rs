//! lvsd's YAML configuration: interfaces, XDP mode, table sizes, timeouts, the firewall-mark
//! classifier and the virtual services with their real servers (`configs/reference.yaml`
//! documents every key).
//!
//! Parsing is strict: unknown keys, wrong types, impossible combinations and anything the
//! kernel's IPVS or ipvsadm would refuse are errors, reported as `FILE:LINE:COLUMN: message`
//! pointing at the offending key or value. A director that starts with a half-understood
//! configuration forwards traffic wrongly, so refusing is the safe side.

mod schema;
mod tree;

#[cfg(test)]
mod tests;

use std::{fmt, net::IpAddr, path::Path};

use lvs_common::{
    classify::{ClassRule, ClassRuleSet, MAX_CLASS_RULES, PROTO_ANY},
    AF_INET, AF_INET6,
};

use crate::model::{DestSpec, Protocol, ServiceSpec};

/// Default of `metrics_address`: loopback only, node_exporter's neighbourhood of ports.
pub const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:9117";

/// How the XDP program is attached to the interfaces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum XdpMode {
    /// Native (driver) mode, falling back to generic where the driver lacks XDP support.
    #[default]
    Auto,
    /// Native (driver) mode only; attaching fails on drivers without XDP support.
    Native,
    /// Generic (skb) mode: works on every interface, slower.
    Generic,
}

impl XdpMode {
    /// The name used in the configuration file.
    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Auto => "auto",
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        }
    }
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A position in the configuration file, 1-based (columns count characters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    /// Line, starting at 1.
    pub line: usize,
    /// Column, starting at 1.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Interfaces to attach the XDP program to, in file order, without duplicates.
    pub interfaces: Vec<String>,
    /// How to attach the XDP program.
    pub xdp_mode: XdpMode,
    /// Capacity of the connection table (entries).
    pub connection_table_size: u32,
    /// Per-state timeouts in seconds, indexed like `lvs_common::tcp_state::STATE_NAMES` (the 11
    /// TCP states, then UDP); kernel defaults where the file sets none.
    pub timeouts: [u32; 12],
    /// Which states of `timeouts` the file names. lvsd writes only those at start and on
    /// reload, so a value set with `ipvsadm --set` for a state the file leaves out survives.
    pub timeouts_named: [bool; 12],
    /// `expire_nodest_conn` and `expire_quiescent_template` (kernel defaults: both 0).
    pub sysctls: lvs_common::sysctl::Sysctls,
    /// Virtual services in file order.
    pub services: Vec<ServiceConfig>,
    /// Where lvsd serves Prometheus metrics (`GET /metrics`); loopback by default.
    pub metrics_address: std::net::SocketAddr,
    /// Firewall-mark classifier rules, in file order (the first match wins).
    pub classifier: Vec<ClassifierRule>,
    /// Connection sync daemons to run (`sync:`), master first; at most one per role.
    pub sync: Vec<SyncConfig>,
    /// The file name given to [`load`] or [`parse`], for later error messages.
    pub source: String,
}

/// A sync daemon the file asks for, as `ipvsadm --start-daemon` would start it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncConfig {
    /// Its parameters; group, port and TTL hold the kernel's defaults where the file gives
    /// none, `sync_maxlen` 0 means "from the MTU" as with ipvsadm.
    pub daemon: crate::control::SyncDaemon,
    /// Where its mapping starts.
    pub location: Location,
}

impl Config {
    /// An error at `location` in this configuration's file, for checks made after parsing
    /// (e.g. a scheduler the dataplane does not implement).
    pub fn error_at(&self, location: Location, message: impl Into<String>) -> ConfigError {
        ConfigError::at(&self.source, location, message)
    }
}

/// A virtual service and its real servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceConfig {
    /// The service as ipvsadm `-A` would create it.
    pub spec: ServiceSpec,
    /// Real servers in file order; ipvsadm `-a` for each, in this order.
    pub dests: Vec<DestSpec>,
    /// Where the service's mapping starts.
    pub location: Location,
    /// Where each real server's mapping starts, parallel to `dests`.
    pub dest_locations: Vec<Location>,
}

/// One firewall-mark classifier rule: packets to `addr/prefix_len` with that protocol and a
/// destination port in `ports` get `mark`. XDP runs before netfilter, so this stands in for
/// iptables' `-t mangle -j MARK --set-mark`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassifierRule {
    /// The mark, 1 or more (0 is "no mark").
    pub mark: u32,
    /// Destination network, host bits zero.
    pub addr: IpAddr,
    /// Prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
    pub prefix_len: u8,
    /// `None` matches TCP and UDP.
    pub protocol: Option<Protocol>,
    /// Destination ports, inclusive, host order.
    pub ports: (u16, u16),
    /// Where the rule's mapping starts.
    pub location: Location,
}

impl ClassifierRule {
    /// The network address (host bits cleared).
    pub fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix_len)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix_len)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
    }

    /// The rule in the dataplane's layout.
    pub fn map_rule(&self) -> ClassRule {
        let mut r = ClassRule {
            port_min: self.ports.0,
            port_max: self.ports.1,
            proto: self.protocol.map_or(PROTO_ANY, Protocol::number),
            mark: self.mark,
            ..Default::default()
        };
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix_len)).unwrap_or(0);
                r.family = AF_INET;
                r.addr[0] = (u32::from(a) & mask).to_be();
                r.mask[0] = mask.to_be();
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix_len)).unwrap_or(0);
                r.family = AF_INET6;
                let (addr, mask) = ((u128::from(a) & mask).to_be_bytes(), mask.to_be_bytes());
                for i in 0..4 {
                    let w = |b: &[u8; 16]| u32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
                    r.addr[i] = w(&addr);
                    r.mask[i] = w(&mask);
                }
            }
        }
        r
    }
}

/// The dataplane's rule set for `rules` (at most `MAX_CLASS_RULES`, which parsing enforces).
pub fn rule_set(rules: &[ClassifierRule]) -> ClassRuleSet {
    let mut set = ClassRuleSet::default();
    for (slot, r) in set.rules.iter_mut().zip(rules) {
        *slot = r.map_rule();
    }
    set.count = rules.len().min(MAX_CLASS_RULES) as u32;
    set
}

/// Why a configuration was refused.
///
/// Displays as `FILE:LINE:COLUMN: message`, or `FILE: message` for problems with the file as a
/// whole, followed by `\n  hint: ...` when there is advice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name the configuration was read from.
    pub file: String,
    /// The offending key, value or mapping; `None` when the file as a whole is the problem.
    pub location: Option<Location>,
    /// What is wrong, in operator language.
    pub message: String,
    /// How to fix it, when that is not obvious from the message.
    pub hint: Option<String>,
}

impl ConfigError {
    /// An error at a position in `file`.
    pub fn at(file: &str, location: Location, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_string(),
            location: Some(location),
            message: message.into(),
            hint: None,
        }
    }

    /// An error about the file as a whole.
    pub fn file(file: &str, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_string(),
            location: None,
            message: message.into(),
            hint: None,
        }
    }

    /// The same error with advice appended.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(loc) => write!(f, "{}:{}: {}", self.file, loc, self.message)?,
            None => write!(f, "{}: {}", self.file, self.message)?,
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let source = path.display().to_string();
    let bytes =
        std::fs::read(path).map_err(|e| ConfigError::file(&source, format!("cannot read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        ConfigError::file(
            &source,
            format!(
                "cannot read: not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    parse(&text, &source)
}

/// Validates configuration `text`; `source` names it in errors (usually the file name).
pub fn parse(text: &str, source: &str) -> Result<Config, ConfigError> {
    let root = tree::parse(text, source)?;
    schema::build(root, source)
}
