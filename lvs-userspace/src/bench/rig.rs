//! The director the benchmarks run against: addresses, the namespace around it, and a freshly
//! loaded (unpinned) dataplane configured through lvsd's own control-plane code.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::Context;
use aya::{
    maps::{HashMap, MapData},
    programs::{ProgramFd, Xdp},
    Ebpf,
};
use lvs_common::{
    counters::{Counter, COUNTER_COUNT},
    flow::{conn_flags, ConnEntry, ConnRef, FlowKey},
    map_names,
    service::DestCounters,
    tcp_state, AF_INET, AF_INET6, XDP_PROGRAM,
};

use super::harness::Vary;
use crate::{
    daemon::{
        dataplane::{Dataplane, Programs},
        state::VirtualServers,
        tables::{self, addr_words, Tables},
    },
    model::{DestSpec, Forward, Protocol, ServiceKey, ServiceSpec},
    testkit::netns,
};

/// The virtual service every case uses: TCP 203.0.113.10:80.
pub const VIP: [u8; 4] = [203, 0, 113, 10];
pub const VPORT: u16 = 80;
/// An address the director has no service for.
pub const NOT_A_VIP: [u8; 4] = [203, 0, 113, 20];
/// Client 0. Client `n` (see [`client`]) differs in the third octet and the source port, as
/// the harness varies them; all clients sit behind the router 198.51.100.2.
pub const CLIENT0: [u8; 4] = [198, 18, 0, 2];
pub const CLIENT0_PORT: u16 = 40000;
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// What the client side's router sends to (the harness never looks at it).
pub const DIRECTOR_IN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// Most real servers a case can have (the dataplane's per-service limit).
pub const MAX_REAL_SERVERS: usize = 256;

/// Frame offsets (Ethernet + 20-byte IPv4 header) the harness varies.
const IP_SRC_OCTET3: u32 = 14 + 12 + 2;
const IP_DST_OCTET3: u32 = 14 + 16 + 2;
const L4_SPORT: u32 = 14 + 20;
const L4_DPORT: u32 = 14 + 20 + 2;

/// The IPv6 cases' service address, TCP [2001:db8::10]:80.
pub const VIP6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
/// IPv6 client 0, 2001:db8:2::2; client `n` differs in the 7th octet (2001:db8:2:XX00::2) and
/// the source port. All clients sit behind the router 2001:db8:1f::2.
pub const CLIENT6_0: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// Frame offsets (Ethernet + IPv6 header) the harness varies in the IPv6 cases.
const IP6_SRC_OCTET7: u32 = 14 + 8 + 6;
const IP6_DST_OCTET7: u32 = 14 + 24 + 6;
const L4_SPORT6: u32 = 14 + 40;
const L4_DPORT6: u32 = 14 + 40 + 2;

/// Varies the client of an IPv6 client -> VIP frame.
pub fn vary_client6_src(mask: u32) -> Vary {
    Vary { mask, port_off: L4_SPORT6, addr_off: IP6_SRC_OCTET7 }
}

/// Varies the client of an IPv6 real server -> client reply.
pub fn vary_client6_dst(mask: u32) -> Vary {
    Vary { mask, port_off: L4_DPORT6, addr_off: IP6_DST_OCTET7 }
}

/// IPv6 client `n`, as the harness makes it from iteration `n`.
pub fn client6(n: u32) -> ([u8; 16], u16) {
    let mut a = CLIENT6_0;
    a[6] ^= lvs_common::bench::vary_octet(n);
    (a, CLIENT0_PORT ^ lvs_common::bench::vary_port(n))
}

/// IPv6 real server `k` (0-based): 2001:db8:1::1:0, 2001:db8:1::1:1, ... on the `rs` side.
pub fn real_server6(k: usize) -> [u8; 16] {
    let mut a = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0];
    a[14] = (k >> 8) as u8;
    a[15] = k as u8;
    a
}

/// Varies the client of a client -> VIP frame.
pub fn vary_client_src(mask: u32) -> Vary {
    Vary { mask, port_off: L4_SPORT, addr_off: IP_SRC_OCTET3 }
}

/// Varies the client of a real server -> client reply.
pub fn vary_client_dst(mask: u32) -> Vary {
    Vary { mask, port_off: L4_DPORT, addr_off: IP_DST_OCTET3 }
}

/// Client `n`'s address and port, exactly as the harness makes them from iteration `n`.
pub fn client(n: u32) -> ([u8; 4], u16) {
    let mut a = CLIENT0;
    a[2] ^= lvs_common::bench::vary_octet(n);
    (a, CLIENT0_PORT ^ lvs_common::bench::vary_port(n))
}

/// Real server `k` (0-based): 198.19.1.1, 198.19.1.2, ... on the director's `rs` side.
pub fn real_server(k: usize) -> [u8; 4] {
    [198, 19, 1 + (k / 250) as u8, 1 + (k % 250) as u8]
}

pub fn real_server_mac(k: usize) -> [u8; 6] {
    let a = real_server(k);
    [0x02, 0x01, a[0], a[1], a[2], a[3]]
}

/// Adds what the benchmarks need to the private director namespace: the real servers'
/// subnet with a static neighbour for each, and a route to the clients via their router.
/// Static neighbours keep `bpf_fib_lookup` on its success path (a redirect), never NO_NEIGH.
pub fn extend_namespace() -> anyhow::Result<()> {
    let mut cmds = vec![
        "addr add 198.19.0.1/16 dev rs".to_string(),
        "route add 198.18.0.0/16 via 198.51.100.2 dev cl".to_string(),
    ];
    for k in 0..MAX_REAL_SERVERS {
        let a = Ipv4Addr::from(real_server(k));
        let m = real_server_mac(k).map(|b| format!("{b:02x}")).join(":");
        cmds.push(format!("neigh replace {a} lladdr {m} dev rs nud permanent"));
    }
    // The IPv6 side: real servers on 2001:db8:1::/64, clients behind 2001:db8:1f::2.
    cmds.push("addr add 2001:db8:1::1/64 dev rs nodad".into());
    cmds.push("addr add 2001:db8:1f::1/64 dev cl nodad".into());
    cmds.push("neigh replace 2001:db8:1f::2 lladdr 02:00:00:00:00:02 dev cl nud permanent".into());
    cmds.push("route add 2001:db8:2::/48 via 2001:db8:1f::2 dev cl".into());
    for k in 0..8 {
        let a = Ipv6Addr::from(real_server6(k));
        let m = real_server_mac(k).map(|b| format!("{b:02x}")).join(":");
        cmds.push(format!("neigh replace {a} lladdr {m} dev rs nud permanent"));
    }
    netns::ip_batch(&cmds)?;
    std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1").context("enabling IPv6 forwarding")
}

/// A loaded dataplane with its maps, nothing pinned.
pub struct Rig {
    ebpf: Ebpf,
    pub tables: Tables,
    pub conns_out: HashMap<MapData, FlowKey, ConnRef>,
    pub vs: VirtualServers,
    pub table_size: u32,
}

impl Rig {
    pub fn load(table_size: u32, programs: Programs) -> anyhow::Result<Rig> {
        let mut ebpf = Dataplane::load_unpinned(table_size, programs)?;
        let mut tables = Tables::from_ebpf(&mut ebpf)?;
        let conns_out =
            HashMap::try_from(ebpf.take_map(map_names::CONNS_OUT).context("CONNS_OUT")?)?;
        tables.write_timeouts(&tcp_state::DEFAULT_TIMEOUTS)?;
        let vs = VirtualServers::recover(&tables)?;
        vs.rebuild_filter(&mut tables)?;
        Ok(Rig { ebpf, tables, conns_out, vs, table_size })
    }

    pub fn program(&self) -> anyhow::Result<&Xdp> {
        Ok(self.ebpf.program(XDP_PROGRAM).context("lvs_xdp missing")?.try_into()?)
    }

    pub fn program_fd(&self) -> anyhow::Result<&ProgramFd> {
        Ok(self.program()?.fd()?)
    }

    /// The TCP service on the VIP with real servers `0..servers`, masquerading, weight 1, added
    /// in order as ipvsadm would.
    pub fn service(&mut self, servers: usize) -> anyhow::Result<ServiceKey> {
        self.service_with(servers, "rr", |_| 1, None)
    }

    /// The same with another forwarding method (`-g`, `-i`).
    pub fn service_fwd(&mut self, servers: usize, fwd: Forward) -> anyhow::Result<ServiceKey> {
        self.service_full(servers, "rr", |_| 1, None, fwd)
    }

    /// [`service`](Rig::service) with another scheduler, real server `k` of weight `weight(k)`,
    /// and persistent (300 s) with IPv4 netmask `persistent_mask` (host order) when given.
    pub fn service_with(
        &mut self,
        servers: usize,
        sched: &str,
        weight: fn(usize) -> i32,
        persistent_mask: Option<u32>,
    ) -> anyhow::Result<ServiceKey> {
        self.service_full(servers, sched, weight, persistent_mask, Forward::Masq)
    }

    fn service_full(
        &mut self,
        servers: usize,
        sched: &str,
        weight: fn(usize) -> i32,
        persistent_mask: Option<u32>,
        fwd: Forward,
    ) -> anyhow::Result<ServiceKey> {
        let key =
            ServiceKey::Addr { protocol: Protocol::Tcp, addr: IpAddr::from(VIP), port: VPORT };
        self.service_at_fwd(key, servers, sched, weight, persistent_mask, fwd)
    }

    /// `count` classifier rules, none matching `NOT_A_VIP` (rule `i` is for 198.18.`i`.0/24,
    /// TCP); with `vip_mark`, the last one matches the VIP on TCP port `VPORT` instead, giving
    /// that mark, so a marked packet walks every rule before it.
    pub fn classifier(&mut self, count: usize, vip_mark: Option<u32>) -> anyhow::Result<()> {
        let rules: Vec<crate::config::ClassifierRule> = (0..count)
            .map(|i| {
                let last = i + 1 == count;
                let (addr, prefix_len, mark, ports) = match vip_mark {
                    Some(m) if last => (IpAddr::from(VIP), 32, m, (VPORT, VPORT)),
                    _ => (IpAddr::from([198, 18, i as u8, 0]), 24, 1 + i as u32, (0, u16::MAX)),
                };
                crate::config::ClassifierRule {
                    mark,
                    addr,
                    prefix_len,
                    protocol: Some(Protocol::Tcp),
                    ports,
                    location: Default::default(),
                }
            })
            .collect();
        self.tables.write_classifier(&crate::config::rule_set(&rules))
    }

    /// [`Rig::service_with`] for any service key (a firewall-mark service, say).
    pub fn service_at(
        &mut self,
        key: ServiceKey,
        servers: usize,
        sched: &str,
        weight: fn(usize) -> i32,
        persistent_mask: Option<u32>,
    ) -> anyhow::Result<ServiceKey> {
        self.service_at_fwd(key, servers, sched, weight, persistent_mask, Forward::Masq)
    }

    fn service_at_fwd(
        &mut self,
        key: ServiceKey,
        servers: usize,
        sched: &str,
        weight: fn(usize) -> i32,
        persistent_mask: Option<u32>,
        fwd: Forward,
    ) -> anyhow::Result<ServiceKey> {
        let mut spec = ServiceSpec::new(key, sched);
        if let Some(mask) = persistent_mask {
            spec.flags |= crate::model::svc_flags::PERSISTENT;
            spec.timeout = 300;
            spec.netmask = mask;
        }
        self.vs.add_service(&mut self.tables, spec).map_err(op)?;
        for k in 0..servers {
            let d = DestSpec::new(IpAddr::from(real_server(k)), VPORT, fwd, weight(k));
            self.vs.add_dest(&mut self.tables, &key, d).map_err(op)?;
        }
        Ok(key)
    }

    /// The IPv4 service, rr over `servers` tunnel real servers that take GUE (port 6080):
    /// every packet goes through the `lvs_xdp_tun` program.
    pub fn service_gue(&mut self, servers: usize) -> anyhow::Result<ServiceKey> {
        let key = ServiceKey::Addr { protocol: Protocol::Tcp, addr: IpAddr::from(VIP), port: VPORT };
        self.vs.add_service(&mut self.tables, ServiceSpec::new(key, "rr")).map_err(op)?;
        for k in 0..servers {
            let mut d = DestSpec::new(IpAddr::from(real_server(k)), VPORT, Forward::Tunnel, 1);
            d.tun_type = crate::model::TunType::Gue;
            d.tun_port = 6080;
            self.vs.add_dest(&mut self.tables, &key, d).map_err(op)?;
        }
        Ok(key)
    }

    /// An IPv6 service, TCP [VIP6]:80, rr over `servers` IPv6 real servers forwarding by `fwd`.
    pub fn service6(&mut self, servers: usize, fwd: Forward) -> anyhow::Result<ServiceKey> {
        let key = ServiceKey::Addr { protocol: Protocol::Tcp, addr: IpAddr::from(VIP6), port: VPORT };
        self.vs.add_service(&mut self.tables, ServiceSpec::new(key, "rr")).map_err(op)?;
        for k in 0..servers {
            let d = DestSpec::new(IpAddr::from(real_server6(k)), VPORT, fwd, 1);
            self.vs.add_dest(&mut self.tables, &key, d).map_err(op)?;
        }
        Ok(key)
    }

    /// [`Rig::fill_established_fwd`] for the IPv6 service: IPv6 clients `0..count` to IPv6
    /// real server 0.
    pub fn fill_established6(&mut self, key: &ServiceKey, count: u32, fwd: Forward) -> anyhow::Result<()> {
        self.fill_at(key, count, fwd, IpAddr::from(VIP6), IpAddr::from(real_server6(0)), AF_INET6, |n| {
            let (a, p) = client6(n);
            (IpAddr::from(a), p)
        })
    }

    /// Fills the connection table with `count` established NAT connections, clients `0..count`
    /// to real server 0, in both directions (`CONNS` and `CONNS_OUT`) and counted as its active
    /// connections, as the dataplane would have created them.
    pub fn fill_established(&mut self, key: &ServiceKey, count: u32) -> anyhow::Result<()> {
        self.fill_established_fwd(key, count, Forward::Masq)
    }

    /// The same for DR or TUN connections: `CONNS` only (no reverse entry), as the dataplane
    /// creates them.
    pub fn fill_established_fwd(&mut self, key: &ServiceKey, count: u32, fwd: Forward) -> anyhow::Result<()> {
        self.fill_at(key, count, fwd, IpAddr::from(VIP), IpAddr::from(real_server(0)), AF_INET, |n| {
            let (a, p) = client(n);
            (IpAddr::from(a), p)
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn fill_at(
        &mut self,
        key: &ServiceKey,
        count: u32,
        fwd: Forward,
        vip: IpAddr,
        rs0: IpAddr,
        family: u8,
        client: impl Fn(u32) -> (IpAddr, u16),
    ) -> anyhow::Result<()> {
        let nat = fwd == Forward::Masq;
        let svc_key = tables::svc_key(key)?;
        let svc_id = self.tables.svc_index.get(&svc_key, 0).context("service not in SVC_INDEX")?;
        let conf = self.tables.services.get(&svc_id, 0)?;
        let (rs0, _) = addr_words(rs0);
        let dest_id = conf.dests[..conf.dest_count as usize]
            .iter()
            .copied()
            .find(|slot| self.tables.dests.get(slot, 0).is_ok_and(|d| d.addr == rs0))
            .context("real server 0 not in the service")?;
        let now = tables::monotonic_ns();
        let (vip, _) = addr_words(vip);
        for n in 0..count {
            let (addr, port) = client(n);
            let in_key = FlowKey {
                src: addr_words(addr).0,
                dst: vip,
                sport: port.to_be(),
                dport: VPORT.to_be(),
                proto: 6,
                family,
                _pad: [0; 2],
            };
            let e = ConnEntry {
                vaddr: vip,
                daddr: rs0,
                vport: VPORT.to_be(),
                dport: VPORT.to_be(),
                fwd: fwd.number(),
                state: tcp_state::ESTABLISHED,
                flags: if nat { conn_flags::NAT } else { 0 },
                svc_id,
                dest_id,
                // Far beyond the run: nothing expires while it is measured.
                expires_ns: now + 86_400 * 1_000_000_000,
                active: 0,
                ctl_mask: 0,
                ctl_mark: 0,
            };
            self.tables.conns.insert(in_key, e, 0).with_context(|| format!("CONNS entry {n}"))?;
            if !nat {
                continue;
            }
            self.conns_out
                .insert(tables::out_key(&in_key, &e), ConnRef { in_key }, 0)
                .with_context(|| format!("CONNS_OUT entry {n}"))?;
        }
        let counters = DestCounters { active: count as u64, ..Default::default() };
        self.tables.dest_counters.set(dest_id, counters, 0)?;
        Ok(())
    }

    /// Every verdict counter, summed over CPUs, in `Counter` order.
    pub fn counters(&self) -> anyhow::Result<[u64; COUNTER_COUNT as usize]> {
        let mut out = [0; COUNTER_COUNT as usize];
        for (c, v) in self.tables.counters()? {
            out[c as usize] = v;
        }
        Ok(out)
    }
}

/// The per-iteration counter check: `expect` advanced by exactly `iterations`, every other
/// counter not at all. Returns what differs, named.
pub fn counter_mismatch(
    before: &[u64; COUNTER_COUNT as usize],
    after: &[u64; COUNTER_COUNT as usize],
    expect: &[Counter],
    iterations: u64,
) -> Option<String> {
    let mut wrong = Vec::new();
    for c in Counter::ALL {
        let delta = after[c as usize] - before[c as usize];
        let want = if expect.contains(&c) { iterations } else { 0 };
        if delta != want {
            wrong.push(format!("{} advanced by {delta}, expected {want}", c.name()));
        }
    }
    (!wrong.is_empty()).then(|| wrong.join("; "))
}

fn op(e: crate::daemon::state::OpError) -> anyhow::Error {
    anyhow::anyhow!("{e:?}")
}
