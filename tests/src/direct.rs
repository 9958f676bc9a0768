//! Rigs for the methods whose replies bypass the director (direct routing and the tunnels),
//! built on the standard [`Topology`]:
//!
//! ```text
//!  [client] eth0 ---- [director] ---- [lan br0] ---- rs1, rs2 (VIP on lo, no ARP for it)
//!           eth1 192.0.2.100 / 2001:db8:1::100 ----/  routes to the client via eth1
//! ```
//!
//! and `lvsd decap`, our decapsulation program, on the real servers (this host has no ipip,
//! ip6_tunnel, GRE or fou module, so nothing else could deliver tunnelled packets).

use anyhow::{Context, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::netns::{veth_pair, CmdOutput, Netns};
use crate::servers::expected_bytes;
use crate::topology::*;
use crate::util::lvs_bin;

/// The client's second link, on the servers' LAN: the direct return path.
pub const CLIENT_LAN_IF: &str = "eth1";
/// The client's address on [`CLIENT_LAN_IF`].
pub const CLIENT_LAN_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// The client's IPv6 address on [`CLIENT_LAN_IF`].
pub const CLIENT_LAN_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x100);
/// Port of the TCP echo servers the DR/TUN tests start on the real servers.
pub const RS_ECHO_PORT: u16 = 9000;

/// Which address families a DR/TUN rig carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
    Both,
}

impl Family {
    fn v4(self) -> bool {
        self != Family::V6
    }
    fn v6(self) -> bool {
        self != Family::V4
    }
}

/// Two real servers ready for DR/TUN in `family`, and a direct path back to the client that
/// does not cross the director: the client's `eth1` on the LAN bridge, and routes on every
/// real server to the client's network through it.
///
/// IPv4: the VIP on the real servers' lo with ARP kept quiet ([`Topology::configure_rs_for_dr`]),
/// and reverse-path filtering off on the client (replies arrive on `eth1`, the route to the VIP
/// leaves by `eth0`). IPv6: the rig's IPv6 addressing and the IPv6 VIP on the real servers' lo
/// (a Linux host answers neighbour solicitations only for addresses of the interface they
/// arrive on, so no sysctl is needed to keep it quiet).
pub fn dr_topology(family: Family) -> Result<Topology> {
    let topo = Topology::new(2)?;
    if family.v4() {
        topo.configure_rs_for_dr()?;
    }
    if family.v6() {
        topo.enable_ipv6()?;
        for i in 1..=topo.n() {
            topo.rs(i).ip(&["-6", "addr", "add", &format!("{VIP6}/128"), "dev", "lo", "nodad"])?;
        }
    }
    add_return_path(&topo, family).context("the client's direct return path")?;
    Ok(topo)
}

fn add_return_path(topo: &Topology, family: Family) -> Result<()> {
    let (c, l) = (&topo.client, &topo.lan);
    veth_pair(c, CLIENT_LAN_IF, l, "p-client")?;
    l.ip(&["link", "set", "p-client", "master", BRIDGE])?;
    l.link_up("p-client")?;
    if family.v4() {
        c.addr_add(CLIENT_LAN_IF, &format!("{CLIENT_LAN_IP}/24"))?;
    }
    if family.v6() {
        c.ip(&["-6", "addr", "add", &format!("{CLIENT_LAN_IP6}/64"), "dev", CLIENT_LAN_IF, "nodad"])?;
    }
    c.link_up(CLIENT_LAN_IF)?;
    // NAPI for the replies' path, full checksums on what the client sends on it.
    c.ethtool_k(CLIENT_LAN_IF, &[("gro", true), ("tx", false)])?;
    if family.v4() {
        c.sysctls(&[
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.eth0.rp_filter", "0"),
            ("net.ipv4.conf.eth1.rp_filter", "0"),
        ])?;
    }
    for i in 1..=topo.n() {
        let rs = topo.rs(i);
        if family.v4() {
            rs.ip(&["route", "add", "198.51.100.0/24", "via", &CLIENT_LAN_IP.to_string()])?;
        }
        if family.v6() {
            rs.ip(&["-6", "route", "add", "2001:db8:2::/64", "via", &CLIENT_LAN_IP6.to_string()])?;
        }
    }
    Ok(())
}

/// An lvsd config on the director's two interfaces with one rr service on `vip` per
/// (protocol, port) of `services`, each with the real servers `servers` (YAML flow mappings
/// such as `{ address: 192.0.2.11, forward: route }`, one per line).
pub fn rr_config(vip: IpAddr, services: &[(&str, u16)], servers: &[String]) -> String {
    let mut list = String::new();
    for s in servers {
        list.push_str(&format!("      - {s}\n"));
    }
    let mut cfg = format!("interfaces: [{DIRECTOR_CLIENT_IF}, {DIRECTOR_SERVER_IF}]\nconnection_table_size: 4096\nservices:\n");
    for (proto, port) in services {
        cfg.push_str(&format!(
            "  - protocol: {proto}\n    address: '{vip}'\n    port: {port}\n    scheduler: rr\n    real_servers:\n{list}"
        ));
    }
    cfg
}

/// Packets received during some traffic by the director's `to-servers` (where replies would
/// arrive if they crossed the director) and by the client's direct link.
pub struct ReturnPathRx {
    dir_rx0: u64,
    cli_rx0: Option<u64>,
}

impl ReturnPathRx {
    /// Starts counting; `lan_link`: the client has [`CLIENT_LAN_IF`] (a DR/TUN rig).
    pub fn start(topo: &Topology, lan_link: bool) -> ReturnPathRx {
        let dir_rx0 = topo.director.rx_packets(DIRECTOR_SERVER_IF).unwrap();
        let cli_rx0 = lan_link.then(|| topo.client.rx_packets(CLIENT_LAN_IF).unwrap());
        ReturnPathRx { dir_rx0, cli_rx0 }
    }

    /// (director's to-servers rx packets, client's eth1 rx packets or 0 without that link)
    /// since [`ReturnPathRx::start`].
    pub fn done(self, topo: &Topology) -> (u64, u64) {
        let dir_rx = topo.director.rx_packets(DIRECTOR_SERVER_IF).unwrap() - self.dir_rx0;
        let cli_rx = self.cli_rx0.map_or(0, |c0| topo.client.rx_packets(CLIENT_LAN_IF).unwrap() - c0);
        (dir_rx, cli_rx)
    }
}

/// Four new HTTP connections to `http` alternate between rs1 and rs2 (rr).
pub fn assert_rr_over_both(topo: &Topology, http: SocketAddr) {
    let mut seen: Vec<String> = (0..4).map(|_| topo.client.http_get(http, "/").unwrap().text()).collect();
    assert_ne!(seen[0], seen[1], "rr alternates between the real servers");
    assert_eq!(seen[0], seen[2]);
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["rs1", "rs2"]);
}

/// The traffic a DR/TUN/NAT service on `vip` (HTTP on 80, echo on [`RS_ECHO_PORT`], UDP echo
/// on [`RS_UDP_PORT`], both real servers) must carry: rr over both servers, 1 MiB echoed byte
/// for byte, a 2 MiB download byte for byte, UDP both ways. Returns (director's to-servers rx
/// packets, client's eth1 rx packets if `lan_link`, else 0) during it.
pub fn exercise_tcp_udp(topo: &Topology, vip: IpAddr, lan_link: bool) -> (u64, u64) {
    let rx = ReturnPathRx::start(topo, lan_link);
    assert_rr_over_both(topo, SocketAddr::new(vip, 80));
    crate::client::echo_exact(&topo.client, SocketAddr::new(vip, RS_ECHO_PORT), 1 << 20);
    const N: u64 = 2 * 1024 * 1024 + 7;
    let r = topo.client.http_get(SocketAddr::new(vip, 80), &format!("/bytes/{N}")).unwrap();
    assert!(r.body == expected_bytes(N), "download differs from the expected pattern");
    let udp = SocketAddr::new(vip, RS_UDP_PORT);
    let mut names: Vec<String> =
        (0..2).map(|i| crate::client::udp_exact(&topo.client, udp, &vec![b'a' + i as u8; 1200])).collect();
    names.sort();
    assert_eq!(names, ["rs1", "rs2"]);
    rx.done(topo)
}

/// Replies went straight from the real servers to the client: over `min_cli_rx` packets on
/// the client's direct link, and next to nothing (ARP or neighbour discovery) on the
/// director's server-side interface.
pub fn assert_replies_bypass_director(dir_rx: u64, cli_rx: u64, min_cli_rx: u64) {
    assert!(cli_rx > min_cli_rx, "the client received only {cli_rx} packets on its direct link");
    assert!(dir_rx < 50, "the director's to-servers received {dir_rx} packets: replies went through it");
}

/// Time for lvsd to read a route or neighbour event and advance the next-hop epoch.
pub const EVENT_SETTLE: std::time::Duration = std::time::Duration::from_millis(100);

/// The director's link-layer address for `addr` on its server-side interface.
fn neigh_mac(topo: &Topology, addr: IpAddr) -> String {
    let out = topo
        .director
        .ip(&[family_flag(addr), "neigh", "show", &addr.to_string(), "dev", DIRECTOR_SERVER_IF])
        .unwrap()
        .stdout_str();
    let mac = out.split_whitespace().skip_while(|w| *w != "lladdr").nth(1);
    mac.unwrap_or_else(|| panic!("no neighbour entry for {addr}: {out:?}")).to_string()
}

fn family_flag(addr: IpAddr) -> &'static str {
    if addr.is_ipv6() {
        "-6"
    } else {
        "-4"
    }
}

/// The dataplane caches the next hop towards each real server instead of asking the FIB for
/// every packet; a changed neighbour or route must still be followed by the very next
/// connection (lvsd advances the cache's epoch on the kernel's events), not only once the
/// cached entry ages out. Both real servers hold the VIP (DR), so a connection that reaches
/// rs2's MAC is answered by rs2 whichever real server the director chose. `answers` makes four
/// new connections (rr: rs1, rs2, rs1, rs2 for the scheduler) and returns the answering
/// servers' names sorted; `rs1`/`rs2` are the real servers' addresses of the family under test.
pub fn assert_next_hop_follows_changes(topo: &Topology, lvsd: &crate::Lvsd, rs1: IpAddr, rs2: IpAddr, answers: impl Fn() -> Vec<String>) {
    let both = ["rs1", "rs1", "rs2", "rs2"];
    let only_rs2 = ["rs2"; 4];
    // Warm: both next hops resolved and cached.
    assert_eq!(answers(), both);
    let (rs1_mac, rs2_mac) = (neigh_mac(topo, rs1), neigh_mac(topo, rs2));
    assert_ne!(rs1_mac, rs2_mac);
    let f = family_flag(rs1);
    let set_neigh = |mac: &str| {
        topo.director
            .ip(&[f, "neigh", "replace", &rs1.to_string(), "lladdr", mac, "dev", DIRECTOR_SERVER_IF, "nud", "permanent"])
            .unwrap();
        std::thread::sleep(EVENT_SETTLE);
    };

    // rs1's address now resolves to rs2's MAC: what the scheduler sends to rs1 reaches rs2.
    set_neigh(&rs2_mac);
    assert_eq!(answers(), only_rs2, "the cached next hop towards rs1 outlived its neighbour entry");
    set_neigh(&rs1_mac);
    assert_eq!(answers(), both, "rs1's restored neighbour entry was not followed");

    // A host route towards rs1 through rs2 as gateway, then removed again.
    let host = format!("{rs1}/{}", if rs1.is_ipv6() { 128 } else { 32 });
    topo.director.ip(&[f, "route", "add", &host, "via", &rs2.to_string(), "dev", DIRECTOR_SERVER_IF]).unwrap();
    std::thread::sleep(EVENT_SETTLE);
    assert_eq!(answers(), only_rs2, "the cached next hop towards rs1 outlived a route change");
    topo.director.ip(&[f, "route", "del", &host]).unwrap();
    std::thread::sleep(EVENT_SETTLE);
    assert_eq!(answers(), both, "the removed route was still followed");

    let c = lvsd.counters().unwrap();
    assert_eq!(c["drop_no_neigh"] + c["drop_no_route"], 0, "{c:?}");
}

static DECAP_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// `lvsd decap` attached to a real server's `eth0` with its own pin directory; detached (and
/// checked) on drop.
pub struct Decap<'a> {
    ns: &'a Netns,
    pin_dir: String,
}

impl<'a> Decap<'a> {
    /// Attaches to `ns`'s `eth0`, decapsulating GUE on `gue_ports` too; returns the guard and
    /// what `lvsd decap` printed.
    pub fn attach(ns: &'a Netns, tag: &str, gue_ports: &[&str]) -> (Decap<'a>, String) {
        let n = DECAP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let pin_dir = format!("/sys/fs/bpf/lvs-{}-decap-{n}-{tag}", std::process::id());
        let d = Decap { ns, pin_dir };
        let mut extra = Vec::new();
        for p in gue_ports {
            extra.extend_from_slice(&["--gue-port", p]);
        }
        let out = d.run(&extra);
        assert!(out.success(), "lvsd decap: {}", out.stderr_str());
        (d, out.stdout_str())
    }

    /// Attaches to every real server of `topo` (GUE on `gue_ports`), checking that each names
    /// the addresses it decapsulates for: the real server's IPv4 address, and with `family`
    /// carrying IPv6 its IPv6 one (link-local ones are not).
    pub fn attach_all(topo: &'a Topology, tag: &str, family: Family, gue_ports: &[&str]) -> Vec<Decap<'a>> {
        (1..=topo.n())
            .map(|i| {
                let (d, out) = Decap::attach(topo.rs(i), &format!("{tag}{i}"), gue_ports);
                let v6 = if family.v6() { format!(", {}", rs_ip6(i)) } else { String::new() };
                let gue = if gue_ports.is_empty() {
                    String::new()
                } else {
                    format!("; GUE on UDP port {}", gue_ports.join(", "))
                };
                assert_eq!(out, format!("decapsulation attached to eth0 (ingress) for {}{v6}{gue}\n", rs_ip(i)));
                d
            })
            .collect()
    }

    /// The pin directory, gone once the guard is dropped.
    pub fn pin_dir(&self) -> &str {
        &self.pin_dir
    }

    fn run(&self, extra: &[&str]) -> CmdOutput {
        let mut args = vec!["decap", "--interface", RS_IF, "--pin-dir", &self.pin_dir];
        args.extend_from_slice(extra);
        self.ns.output(lvs_bin("lvsd").to_str().unwrap(), &args).unwrap()
    }

    /// The decapsulation counter `name` (`lvsd decap --counters`).
    pub fn counter(&self, name: &str) -> u64 {
        let out = self.run(&["--counters"]);
        assert!(out.success(), "lvsd decap --counters: {}", out.stderr_str());
        let text = out.stdout_str();
        let prefix = format!("{name} ");
        let v = text.lines().find_map(|l| l.strip_prefix(&prefix));
        v.unwrap_or_else(|| panic!("no counter {name} in {text:?}")).trim().parse().unwrap()
    }

    /// Packets decapsulated so far.
    pub fn decapsulated(&self) -> u64 {
        self.counter("decapsulated")
    }
}

impl Drop for Decap<'_> {
    fn drop(&mut self) {
        let out = self.run(&["--detach"]);
        let _ = std::fs::remove_dir_all(&self.pin_dir);
        if !std::thread::panicking() {
            assert!(out.success(), "lvsd decap --detach: {}", out.stderr_str());
        }
    }
}
