//! The standard director rig:
//!
//! ```text
//!  [client] eth0 ---- to-clients [director] to-servers ---- p-dir [lan: br0] p-rs1 ---- eth0 [rs1]
//!  198.51.100.2/24    198.51.100.1/24  192.0.2.1/24                      p-rs2 ---- eth0 [rs2]
//!  default via .1     VIP 203.0.113.10/32 on lo                         ...        192.0.2.1N/24
//!                     ip_forward=1, rp_filter=0, accept_local=1                    default via 192.0.2.1
//! ```
//!
//! veth rules applied (see /work/shared/platform.md): GRO on the peers of the director's
//! interfaces (client `eth0`, lan `p-dir`) and on the real servers' `eth0`, so native XDP
//! redirects into the director's veths are delivered; TX checksum offload off on the client's and
//! real servers' `eth0`, which originate traffic, so XDP-rewritten packets carry full checksums.

use anyhow::{Context, Result};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::netns::{veth_pair, Netns};
use crate::servers::{HttpServer, UdpEchoServer};

pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// Director's address on the client side (the client's gateway).
pub const DIRECTOR_CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// Director's address on the server side (the real servers' gateway).
pub const DIRECTOR_SERVER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The virtual IP, on the director's `lo`.
pub const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// Port of the director's own HTTP server (non-VIP traffic check) when servers are started.
pub const DIRECTOR_HTTP_PORT: u16 = 8080;
/// Ports of the real servers' HTTP and UDP echo servers when servers are started.
pub const RS_HTTP_PORT: u16 = 80;
pub const RS_UDP_PORT: u16 = 53;

/// IPv6 addressing of the same rig ([`Topology::enable_ipv6`]), all in 2001:db8::/32: the
/// client side 2001:db8:2::/64, the servers' side 2001:db8:1::/64, the VIP 2001:db8::10.
pub const CLIENT_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);
pub const DIRECTOR_CLIENT_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);
pub const DIRECTOR_SERVER_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);

/// IPv6 address of real server `i` (1-based): 2001:db8:1::1<i> (as the oracle rig numbers them).
pub fn rs_ip6(i: usize) -> Ipv6Addr {
    assert!((1..=9).contains(&i), "real server index {i} out of range for IPv6 (1-based)");
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10 + i as u16)
}
/// `[VIP6]:port`.
pub fn vip6(port: u16) -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(VIP6, port, 0, 0))
}

pub const CLIENT_IF: &str = "eth0";
pub const DIRECTOR_CLIENT_IF: &str = "to-clients";
pub const DIRECTOR_SERVER_IF: &str = "to-servers";
pub const RS_IF: &str = "eth0";
pub const BRIDGE: &str = "br0";
/// The lan-side peer of the director's `to-servers`.
pub const LAN_DIRECTOR_PORT: &str = "p-dir";

/// Address of real server `i` (1-based): 192.0.2.(10+i).
pub fn rs_ip(i: usize) -> Ipv4Addr {
    assert!((1..=200).contains(&i), "real server index {i} out of range (1-based)");
    Ipv4Addr::new(192, 0, 2, 10 + i as u8)
}
/// Name of real server `i` (1-based): `rs<i>`; also what its servers answer.
pub fn rs_name(i: usize) -> String {
    format!("rs{i}")
}
/// `VIP:port` as a socket address.
pub fn vip(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(VIP, port))
}
/// `ip:port` as a socket address.
pub fn sa(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

/// Builder for [`Topology`].
#[derive(Debug, Clone)]
pub struct TopologyBuilder {
    real_servers: usize,
    servers: bool,
}

impl TopologyBuilder {
    /// Number of real servers (>= 2; default 2).
    pub fn real_servers(mut self, n: usize) -> Self {
        self.real_servers = n;
        self
    }
    /// Also start the application servers ([`Topology::start_servers`]).
    pub fn with_servers(mut self) -> Self {
        self.servers = true;
        self
    }
    pub fn build(self) -> Result<Topology> {
        assert!(self.real_servers >= 2, "the rig needs at least 2 real servers");
        let mut t = Topology::build_network(self.real_servers)?;
        if self.servers {
            t.start_servers()?;
        }
        Ok(t)
    }
}

/// The client / director / lan / rs1..rsN rig. All namespaces (and the servers) are removed
/// on drop.
pub struct Topology {
    // Declared first: fields drop in order, so servers stop before their namespaces go.
    /// HTTP servers on rs1..rsN (index 0 = rs1), `0.0.0.0:80`, answering `rs<i>`.
    pub rs_http: Vec<HttpServer>,
    /// UDP echo servers on rs1..rsN (index 0 = rs1), `0.0.0.0:53`, answering `rs<i>:<payload>`.
    pub rs_udp: Vec<UdpEchoServer>,
    /// HTTP server in the director on 198.51.100.1:8080, answering `director`.
    pub director_http: Option<HttpServer>,
    pub client: Netns,
    pub director: Netns,
    pub lan: Netns,
    /// rs1..rsN (index 0 = rs1); prefer [`Topology::rs`].
    pub real_servers: Vec<Netns>,
}

impl Topology {
    pub fn builder() -> TopologyBuilder {
        TopologyBuilder { real_servers: 2, servers: false }
    }

    /// Network only (no application servers), `n` real servers.
    pub fn new(n: usize) -> Result<Topology> {
        Self::builder().real_servers(n).build()
    }

    /// Real server namespace `i` (1-based).
    pub fn rs(&self, i: usize) -> &Netns {
        &self.real_servers[i - 1]
    }
    /// Number of real servers.
    pub fn n(&self) -> usize {
        self.real_servers.len()
    }

    fn build_network(n: usize) -> Result<Topology> {
        // Each Netns is a guard: if a later step fails, everything created so far is removed.
        let client = Netns::new("client")?;
        let director = Netns::new("dir")?;
        let lan = Netns::new("lan")?;
        let mut real_servers = Vec::with_capacity(n);
        for i in 1..=n {
            real_servers.push(Netns::new(&rs_name(i))?);
        }
        let t = Topology { rs_http: Vec::new(), rs_udp: Vec::new(), director_http: None, client, director, lan, real_servers };
        t.wire().context("building the director topology")?;
        Ok(t)
    }

    fn wire(&self) -> Result<()> {
        let (c, d, l) = (&self.client, &self.director, &self.lan);

        veth_pair(c, CLIENT_IF, d, DIRECTOR_CLIENT_IF)?;
        veth_pair(d, DIRECTOR_SERVER_IF, l, LAN_DIRECTOR_PORT)?;
        l.ip(&["link", "add", BRIDGE, "type", "bridge"])?;
        l.ip(&["link", "set", LAN_DIRECTOR_PORT, "master", BRIDGE])?;
        for (i, rs) in self.real_servers.iter().enumerate() {
            let port = format!("p-{}", rs_name(i + 1));
            veth_pair(rs, RS_IF, l, &port)?;
            l.ip(&["link", "set", &port, "master", BRIDGE])?;
            l.link_up(&port)?;
        }
        l.link_up(LAN_DIRECTOR_PORT)?;
        l.link_up(BRIDGE)?;
        // NAPI on the peer of to-servers, or native XDP redirects into to-servers vanish.
        l.gro_on(LAN_DIRECTOR_PORT)?;

        // Client.
        c.addr_add(CLIENT_IF, &format!("{CLIENT_IP}/24"))?;
        c.link_up(CLIENT_IF)?;
        c.default_route(&DIRECTOR_CLIENT_IP.to_string())?;
        // NAPI for redirects into to-clients; full checksums on client-originated packets.
        c.ethtool_k(CLIENT_IF, &[("gro", true), ("tx", false)])?;

        // Director.
        d.addr_add(DIRECTOR_CLIENT_IF, &format!("{DIRECTOR_CLIENT_IP}/24"))?;
        d.addr_add(DIRECTOR_SERVER_IF, &format!("{DIRECTOR_SERVER_IP}/24"))?;
        d.addr_add("lo", &format!("{VIP}/32"))?;
        d.link_up(DIRECTOR_CLIENT_IF)?;
        d.link_up(DIRECTOR_SERVER_IF)?;
        // The dataplane hands packets it cannot redirect yet (no neighbour entry) to the kernel,
        // already rewritten: forwarding on and reverse-path filtering off, or they are dropped.
        let mut kv: Vec<(String, String)> = vec![("net.ipv4.ip_forward".into(), "1".into())];
        for dev in ["all", "default", "lo", DIRECTOR_CLIENT_IF, DIRECTOR_SERVER_IF] {
            kv.push((format!("net.ipv4.conf.{dev}.rp_filter"), "0".into()));
        }
        for dev in [DIRECTOR_CLIENT_IF, DIRECTOR_SERVER_IF] {
            kv.push((format!("net.ipv4.conf.{dev}.accept_local"), "1".into()));
        }
        let kv_ref: Vec<(&str, &str)> = kv.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        d.sysctls(&kv_ref)?;

        // Real servers.
        for (i, rs) in self.real_servers.iter().enumerate() {
            rs.addr_add(RS_IF, &format!("{}/24", rs_ip(i + 1)))?;
            rs.link_up(RS_IF)?;
            rs.default_route(&DIRECTOR_SERVER_IP.to_string())?;
            rs.ethtool_k(RS_IF, &[("gro", true), ("tx", false)])?;
        }
        Ok(())
    }

    /// Starts the application servers: on every real server HTTP on `0.0.0.0:80` and UDP echo
    /// on `0.0.0.0:53` (named `rs<i>`), and HTTP on the director's 198.51.100.1:8080 (named
    /// `director`). Idempotent.
    pub fn start_servers(&mut self) -> Result<()> {
        if self.director_http.is_some() {
            return Ok(());
        }
        for (i, rs) in self.real_servers.iter().enumerate() {
            let name = rs_name(i + 1);
            self.rs_http.push(HttpServer::start(rs, sa(Ipv4Addr::UNSPECIFIED, RS_HTTP_PORT), &name)?);
            self.rs_udp.push(UdpEchoServer::start(rs, sa(Ipv4Addr::UNSPECIFIED, RS_UDP_PORT), &name)?);
        }
        self.director_http =
            Some(HttpServer::start(&self.director, sa(DIRECTOR_CLIENT_IP, DIRECTOR_HTTP_PORT), "director")?);
        Ok(())
    }

    /// HTTP requests served so far per real server (index 0 = rs1).
    pub fn rs_http_hits(&self) -> Vec<u64> {
        self.rs_http.iter().map(|s| s.hits()).collect()
    }
    /// UDP datagrams answered so far per real server (index 0 = rs1).
    pub fn rs_udp_hits(&self) -> Vec<u64> {
        self.rs_udp.iter().map(|s| s.hits()).collect()
    }

    /// Adds the IPv6 addressing (see [`CLIENT_IP6`]) to the rig: addresses without duplicate
    /// address detection (`nodad`, else they stay tentative for a second or more), default
    /// routes, IPv6 forwarding on the director, and the IPv6 VIP on its `lo`.
    pub fn enable_ipv6(&self) -> Result<()> {
        let all: Vec<&Netns> =
            [&self.client, &self.director].into_iter().chain(self.real_servers.iter()).collect();
        for ns in &all {
            ns.sysctls(&[("net.ipv6.conf.all.disable_ipv6", "0"), ("net.ipv6.conf.default.disable_ipv6", "0")])?;
        }
        let (c, d) = (&self.client, &self.director);
        c.ip(&["-6", "addr", "add", &format!("{CLIENT_IP6}/64"), "dev", CLIENT_IF, "nodad"])?;
        c.ip(&["-6", "route", "add", "default", "via", &DIRECTOR_CLIENT_IP6.to_string()])?;
        d.ip(&["-6", "addr", "add", &format!("{DIRECTOR_CLIENT_IP6}/64"), "dev", DIRECTOR_CLIENT_IF, "nodad"])?;
        d.ip(&["-6", "addr", "add", &format!("{DIRECTOR_SERVER_IP6}/64"), "dev", DIRECTOR_SERVER_IF, "nodad"])?;
        d.ip(&["-6", "addr", "add", &format!("{VIP6}/128"), "dev", "lo", "nodad"])?;
        d.sysctls(&[("net.ipv6.conf.all.forwarding", "1")])?;
        for (i, rs) in self.real_servers.iter().enumerate() {
            rs.ip(&["-6", "addr", "add", &format!("{}/64", rs_ip6(i + 1)), "dev", RS_IF, "nodad"])?;
            rs.ip(&["-6", "route", "add", "default", "via", &DIRECTOR_SERVER_IP6.to_string()])?;
        }
        Ok(())
    }

    /// Prepares every real server for direct routing / tunnelling: VIP/32 on `lo`,
    /// arp_ignore=1 and arp_announce=2 (so real servers never answer ARP for the VIP), and
    /// rp_filter off (replies leave from the VIP).
    pub fn configure_rs_for_dr(&self) -> Result<()> {
        for rs in &self.real_servers {
            rs.addr_add("lo", &format!("{VIP}/32"))?;
            rs.sysctls(&[
                ("net.ipv4.conf.all.arp_ignore", "1"),
                ("net.ipv4.conf.all.arp_announce", "2"),
                ("net.ipv4.conf.eth0.arp_ignore", "1"),
                ("net.ipv4.conf.eth0.arp_announce", "2"),
                ("net.ipv4.conf.all.rp_filter", "0"),
                ("net.ipv4.conf.eth0.rp_filter", "0"),
            ])?;
        }
        Ok(())
    }
}
