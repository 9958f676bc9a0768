//! The virtual-server model shared by lvsd, the control protocol, the YAML config and ipvsadm.
//!
//! These are IPVS's own notions (ip_vs.h), in userspace form: a virtual service with a scheduler
//! and real servers ("destinations") in kernel order. lvsd mirrors them into the eBPF maps; the
//! map layouts live in `lvs-common`.

use std::{fmt, net::IpAddr};

use serde::{Deserialize, Serialize};

/// Transport protocol of a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// IP protocol number (IPPROTO_TCP = 6, IPPROTO_UDP = 17).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    /// The name ipvsadm prints (`TCP`, `UDP`).
    pub fn ipvs_name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

/// How a virtual service is selected: by address, port and protocol, or by firewall mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKey {
    /// `-t|-u addr:port`.
    Addr { protocol: Protocol, addr: IpAddr, port: u16 },
    /// `-f mark [-6]`: packets the config's classifier gives that mark (IPv4 only so far).
    Fwmark { mark: u32, ipv6: bool },
}

impl ServiceKey {
    pub fn is_ipv6(&self) -> bool {
        match self {
            ServiceKey::Addr { addr, .. } => addr.is_ipv6(),
            ServiceKey::Fwmark { ipv6, .. } => *ipv6,
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            ServiceKey::Addr { port, .. } => *port,
            ServiceKey::Fwmark { .. } => 0,
        }
    }
}

impl fmt::Display for ServiceKey {
    /// The form used in logs and config errors: `TCP 192.0.2.1:80`, `UDP [2001:db8::1]:53`,
    /// `FWM 7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKey::Addr { protocol, addr: IpAddr::V4(a), port } => {
                write!(f, "{} {a}:{port}", protocol.ipvs_name())
            }
            ServiceKey::Addr { protocol, addr: IpAddr::V6(a), port } => {
                write!(f, "{} [{a}]:{port}", protocol.ipvs_name())
            }
            ServiceKey::Fwmark { mark, ipv6: false } => write!(f, "FWM {mark}"),
            ServiceKey::Fwmark { mark, ipv6: true } => write!(f, "FWM {mark} IPv6"),
        }
    }
}

/// Service flags, as in the IPVS UAPI (`IP_VS_SVC_F_*`).
pub mod svc_flags {
    pub const PERSISTENT: u32 = 0x1;
    pub const HASHED: u32 = 0x2;
    pub const ONEPACKET: u32 = 0x4;
    pub const SCHED1: u32 = 0x8;
    pub const SCHED2: u32 = 0x10;
    pub const SCHED3: u32 = 0x20;
}

/// A virtual service as ipvsadm `-A`/`-E` describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub key: ServiceKey,
    /// Scheduler name as given to `-s` (`rr`, `wlc`, ...).
    pub scheduler: String,
    /// `svc_flags::*` bits (persistent, one-packet, scheduler flags).
    pub flags: u32,
    /// Persistence timeout in seconds (meaningful with `PERSISTENT`).
    pub timeout: u32,
    /// Persistence netmask: an IPv4 mask in host order (0xffffffff = /32), or an IPv6 prefix
    /// length (128 = none).
    pub netmask: u32,
    /// Persistence engine (`--pe`): only [`PE_SIP`] exists. It changes what a persistent UDP
    /// service's templates are keyed on (the SIP Call-ID); without persistence it is kept and
    /// listed but does nothing, as in the kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pe: Option<String>,
}

/// The one persistence engine IPVS has (`ip_vs_pe_sip`).
pub const PE_SIP: &str = "sip";

impl ServiceSpec {
    /// A plain service with the given scheduler and no persistence.
    pub fn new(key: ServiceKey, scheduler: &str) -> Self {
        let netmask = if key.is_ipv6() { 128 } else { 0xffff_ffff };
        ServiceSpec { key, scheduler: scheduler.to_string(), flags: 0, timeout: 0, netmask, pe: None }
    }
}

/// Packet-forwarding method of a real server (`IP_VS_CONN_F_*` numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forward {
    /// `-m`, NAT.
    Masq,
    /// Local node; ipvsadm cannot set it.
    Local,
    /// `-i`, IP-in-IP.
    Tunnel,
    /// `-g`, direct routing (ipvsadm's default).
    Route,
}

impl Forward {
    /// The kernel's numeric value (MASQ 0, LOCALNODE 1, TUNNEL 2, DROUTE 3).
    pub fn number(self) -> u8 {
        match self {
            Forward::Masq => 0,
            Forward::Local => 1,
            Forward::Tunnel => 2,
            Forward::Route => 3,
        }
    }

    pub fn from_number(n: u8) -> Option<Self> {
        Some(match n {
            0 => Forward::Masq,
            1 => Forward::Local,
            2 => Forward::Tunnel,
            3 => Forward::Route,
            _ => return None,
        })
    }

    /// The name `ipvsadm -L` prints in the Forward column.
    pub fn ipvs_name(self) -> &'static str {
        match self {
            Forward::Masq => "Masq",
            Forward::Local => "Local",
            Forward::Tunnel => "Tunnel",
            Forward::Route => "Route",
        }
    }
}

/// A real server as ipvsadm `-a`/`-e` describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestSpec {
    pub addr: IpAddr,
    pub port: u16,
    pub forward: Forward,
    /// ipvsadm accepts 0..=i32::MAX; the kernel keeps an int.
    pub weight: i32,
    pub u_threshold: u32,
    pub l_threshold: u32,
}

impl DestSpec {
    pub fn new(addr: IpAddr, port: u16, forward: Forward, weight: i32) -> Self {
        DestSpec { addr, port, forward, weight, u_threshold: 0, l_threshold: 0 }
    }
}

/// Traffic statistics of a service, a real server or the whole director, as ipvsadm
/// `--stats` and `--rate` show them: counters since the last zeroing, and the estimator's
/// rates (per second).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

impl Stats {
    /// Whether every counter and rate is 0.
    pub fn is_zero(&self) -> bool {
        *self == Stats::default()
    }
}

/// A real server with its live counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestStatus {
    pub spec: DestSpec,
    pub active_conns: u32,
    pub inact_conns: u32,
    pub persist_conns: u32,
    /// Left out of the answer when all zero (an idle server): at 100 000 real servers the
    /// counters were half of `-L`'s bytes.
    #[serde(default, skip_serializing_if = "Stats::is_zero")]
    pub stats: Stats,
}

/// A service with its real servers in kernel order (newest first, as `--nosort` shows them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub spec: ServiceSpec,
    pub dests: Vec<DestStatus>,
    #[serde(default, skip_serializing_if = "Stats::is_zero")]
    pub stats: Stats,
}
