//! The benchmark cases. A scenario is a dataplane state; each of its cases is a frame sent
//! through it, with the counters that must advance once per iteration (proof the packet took
//! the path the case is named after) and the target, as cost above the harness floor.
//!
//! Adding a case: a frame, a variation, the expected counters and verdict, in an existing
//! scenario or a new one with its own setup.

use lvs_common::counters::Counter;

use super::{
    harness::Vary,
    rig::{self, Rig, CLIENT0, CLIENT0_PORT, CLIENT6_0, CLIENT_MAC, DIRECTOR_IN_MAC, NOT_A_VIP, VIP, VIP6, VPORT},
};
use crate::model::Forward;
use crate::testkit::{
    frames::{tcp6_frame, tcp_frame, Ip, TCP_ACK, TCP_SYN},
    netns::DIRECTOR_RS_MAC,
};

pub const XDP_PASS: u32 = 2;
pub const XDP_REDIRECT: u32 = 4;

/// Connection-table capacity (`connection_table_size`) for every scenario: room for the
/// 1 M-entry table and for a run's worth of new connections.
pub const TABLE_SIZE: u32 = 1 << 21;

pub struct Scenario {
    pub name: String,
    /// Builds the dataplane state on a freshly loaded dataplane.
    pub setup: Box<dyn Fn(&mut Rig) -> anyhow::Result<()>>,
    /// A fresh dataplane (empty tables) for every run: the cases fill the table.
    pub fresh_per_run: bool,
    pub cases: Vec<Case>,
}

pub struct Case {
    /// Short stable name (JSON key, table row).
    pub name: String,
    /// What the case measures, one line.
    pub what: String,
    pub frame: Vec<u8>,
    pub vary: Vary,
    /// Counters that advance by exactly one per iteration; every other counter must not move.
    pub expect: &'static [Counter],
    pub verdict: u32,
    /// Target for the cost above the harness floor, ns.
    pub target_ns: Option<f64>,
}

/// Length of every case's frame: the harness copies the frame on every iteration, and one
/// floor is subtracted from all cases, so they must all be the same length. 80 bytes hold the
/// longest, an IPv6 TCP segment without payload (74); IPv4 frames are padded with zeros to it
/// (Ethernet pads short frames on the wire anyway; the IP lengths ignore the padding).
const FRAME_LEN: usize = 80;

fn padded(mut frame: Vec<u8>) -> Vec<u8> {
    assert!(frame.len() <= FRAME_LEN, "a {}-byte benchmark frame", frame.len());
    frame.resize(FRAME_LEN, 0);
    frame
}

/// A client SYN (or ACK) to `dst`, from client 0: a 54-byte TCP segment without payload,
/// padded to [`FRAME_LEN`].
fn from_client(dst: [u8; 4], flags: u8) -> Vec<u8> {
    let ip = Ip::new(CLIENT0, dst);
    padded(tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, ip, CLIENT0_PORT, VPORT, flags, &[]))
}

/// Real server 0's reply to client 0.
fn from_real_server() -> Vec<u8> {
    let ip = Ip::new(rig::real_server(0), CLIENT0);
    padded(tcp_frame(
        DIRECTOR_RS_MAC,
        rig::real_server_mac(0),
        ip,
        VPORT,
        CLIENT0_PORT,
        TCP_ACK,
        &[],
    ))
}

/// An IPv6 client's ACK to [VIP6]:80, 74 bytes padded to [`FRAME_LEN`].
fn from_client6() -> Vec<u8> {
    padded(tcp6_frame(DIRECTOR_IN_MAC, CLIENT_MAC, CLIENT6_0, VIP6, 64, CLIENT0_PORT, VPORT, TCP_ACK, &[]))
}

/// IPv6 real server 0's reply to IPv6 client 0.
fn from_real_server6() -> Vec<u8> {
    padded(tcp6_frame(
        DIRECTOR_RS_MAC,
        rig::real_server_mac(0),
        rig::real_server6(0),
        CLIENT6_0,
        64,
        VPORT,
        CLIENT0_PORT,
        TCP_ACK,
        &[],
    ))
}

/// Established IPv6 flows, 1 Ki connections in turn, by forwarding method: the IPv4
/// program's parse and its tail calls to `lvs_xdp6` and `lvs_xdp6_send` included.
fn established6_scenario(fwd: Forward) -> Scenario {
    let (tag, what) = match fwd {
        Forward::Masq => ("nat", "NAT"),
        Forward::Route => ("dr", "DR (MACs and hop limit)"),
        _ => ("tun", "TUN (IPv6-in-IPv6 encapsulation)"),
    };
    let mut cases = vec![Case {
        name: format!("v6_{tag}_in_1k"),
        what: format!("established IPv6 {what}, client -> real server, 1024 connections in turn"),
        frame: from_client6(),
        vary: rig::vary_client6_src((1 << 10) - 1),
        expect: &[Counter::ConnHit, Counter::Redirect],
        verdict: XDP_REDIRECT,
        target_ns: None,
    }];
    if fwd == Forward::Masq {
        cases.push(Case {
            name: "v6_nat_out_1k".into(),
            what: "established IPv6 NAT, reply -> client, 1024 connections in turn".into(),
            frame: from_real_server6(),
            vary: rig::vary_client6_dst((1 << 10) - 1),
            expect: &[Counter::ConnHit, Counter::Redirect],
            verdict: XDP_REDIRECT,
            target_ns: None,
        });
    }
    Scenario {
        name: format!("established IPv6 {}, 1 Ki connections", tag.to_uppercase()),
        setup: Box::new(move |rig| {
            let key = rig.service6(8, fwd)?;
            rig.fill_established6(&key, 1 << 10, fwd)
        }),
        fresh_per_run: false,
        cases,
    }
}

fn established(rig: &mut Rig, conns: u32) -> anyhow::Result<()> {
    let key = rig.service(8)?;
    rig.fill_established(&key, conns)
}

/// Both directions of an established NAT flow, cycling through all `conns` entries (a power
/// of two) so the table's size shows in the cost, not one hot entry.
fn established_cases(conns: u32, size: &str) -> Vec<Case> {
    let mask = conns - 1;
    vec![
        Case {
            name: format!("nat_in_{size}"),
            what: format!("established NAT, client -> real server, {conns} connections in turn"),
            frame: from_client(VIP, TCP_ACK),
            vary: rig::vary_client_src(mask),
            expect: &[Counter::ConnHit, Counter::Redirect],
            verdict: XDP_REDIRECT,
            target_ns: Some(110.0),
        },
        Case {
            name: format!("nat_out_{size}"),
            what: format!("established NAT, reply -> client, {conns} connections in turn"),
            frame: from_real_server(),
            vary: rig::vary_client_dst(mask),
            expect: &[Counter::ConnHit, Counter::Redirect],
            verdict: XDP_REDIRECT,
            target_ns: Some(110.0),
        },
    ]
}

/// The client -> real server direction of an established DR or TUN flow (the only direction
/// the director sees), `conns` connections in turn.
fn established_fwd_case(method: &str, conns: u32, size: &str) -> Case {
    Case {
        name: format!("{method}_in_{size}"),
        what: format!(
            "established {}, client -> real server, {conns} connections in turn",
            match method {
                "dr" => "DR (MACs and TTL)",
                "gue" => "TUN (GUE encapsulation, in lvs_xdp_tun)",
                _ => "TUN (IP-in-IP encapsulation)",
            }
        ),
        frame: from_client(VIP, TCP_ACK),
        vary: rig::vary_client_src(conns - 1),
        expect: &[Counter::ConnHit, Counter::Redirect],
        verdict: XDP_REDIRECT,
        // The figure for an established TUN flow is 100 ns (Katran's IP-in-IP: 106
        // here); GUE is held to it too. DR shares NAT's 110.
        target_ns: Some(if method == "dr" { 110.0 } else { 100.0 }),
    }
}

fn new_fwd(method: &str, servers: usize) -> Case {
    Case {
        name: format!("new_{method}_{servers}"),
        what: format!("new TCP connection (SYN), rr over {servers} {} real servers", method.to_uppercase()),
        ..new_conn("rr", servers, "")
    }
}

/// Weights 1, 2, 3, 4, 1, ... for the weighted schedulers: gcd 1, so wrr steps its threshold
/// through 4, 3, 2, 1 and its walks read a different share of the list on each pass.
fn weight_1_to_4(k: usize) -> i32 {
    (k % 4) as i32 + 1
}

/// A new connection on a service with `sched` over `servers` real servers.
fn new_conn(sched: &str, servers: usize, weights: &str) -> Case {
    Case {
        name: format!("new_{sched}_{servers}"),
        what: format!("new TCP connection (SYN), {sched} over {servers} real servers{weights}"),
        frame: from_client(VIP, TCP_SYN),
        // Every iteration a client never seen before (up to 2^24 of them).
        vary: rig::vary_client_src((1 << lvs_common::bench::BENCH_VARY_BITS) - 1),
        expect: &[Counter::NewConn, Counter::Redirect],
        verdict: XDP_REDIRECT,
        // The targets: 250 ns for a hash or rr scheduler; the dynamic ones (which scan
        // every server's counters) are held to 3x rr's figure, reported beside it.
        target_ns: matches!(sched, "rr" | "sh" | "dh" | "mh").then_some(250.0),
    }
}

/// Every scheduler the dataplane has, as the kernel names them.
const SCHEDULERS: [&str; 14] =
    ["rr", "wrr", "lc", "wlc", "sed", "nq", "fo", "ovf", "twos", "lblc", "lblcr", "dh", "sh", "mh"];

fn new_conn_scenario(sched: &'static str, servers: usize) -> Scenario {
    // The weighted schedulers get unequal weights, or they would behave like their plain twins.
    // ovf sends to one server until its active connections reach its weight and then to none:
    // a run of a million SYNs needs weights that never overflow.
    let (weight, desc): (fn(usize) -> i32, &str) = match sched {
        "wrr" | "twos" => (weight_1_to_4, ", weights 1-4"),
        "ovf" => (|_| 1 << 30, ", weights 2^30"),
        _ => (|_| 1, ""),
    };
    Scenario {
        name: format!("new connections, {sched} over {servers}"),
        setup: Box::new(move |rig| rig.service_with(servers, sched, weight, None).map(|_| ())),
        fresh_per_run: true,
        cases: vec![new_conn(sched, servers, desc)],
    }
}

/// Persistence: every client shares one template (netmask 0.0.0.0), so after the first SYN
/// each new connection is decided by a template hit, not by the scheduler.
fn template_hit_scenario() -> Scenario {
    Scenario {
        name: "new connections, persistence template hit".into(),
        setup: Box::new(|rig| rig.service_with(8, "rr", |_| 1, Some(0)).map(|_| ())),
        fresh_per_run: true,
        cases: vec![Case {
            name: "new_template_hit".into(),
            what: "new TCP connection (SYN) decided by a live persistence template (-p, rr over 8)".into(),
            frame: from_client(VIP, TCP_SYN),
            vary: rig::vary_client_src((1 << lvs_common::bench::BENCH_VARY_BITS) - 1),
            expect: &[Counter::NewConn, Counter::Redirect],
            verdict: XDP_REDIRECT,
            target_ns: None,
        }],
    }
}

/// An insert-floor case: no dataplane, only the harness and `bench_insert` over a table of
/// `entries` (`harness::InsertFloor`), fresh for each run.
pub struct InsertFloorCase {
    pub case: Case,
    pub entries: u32,
}

/// The memory floor under the new-connection cases: one insert of a 40-byte key with a 72-byte
/// value, as `CONNS` has them, per iteration. `insert_floor_2m`: a fresh key each iteration into
/// a table of `CONNS`' size (a run fills it about half, as a `new_*` run does `CONNS`);
/// `insert_floor_64k`: a table of 2^16 entries and 2^15 keys in turn, so it never fills and
/// every key after the first 2^15 replaces its earlier entry (a table that fits in the caches,
/// for comparison). A case's check: every iteration's insert succeeded (the program's counts).
pub fn insert_floors() -> Vec<InsertFloorCase> {
    let floor = |name: &str, entries: u32, mask: u32, what: &str| InsertFloorCase {
        case: Case {
            name: name.into(),
            what: what.into(),
            frame: from_client(VIP, TCP_SYN),
            vary: rig::vary_client_src(mask),
            expect: &[],
            verdict: XDP_PASS,
            target_ns: None,
        },
        entries,
    };
    vec![
        floor(
            "insert_floor_2m",
            TABLE_SIZE,
            (1 << lvs_common::bench::BENCH_VARY_BITS) - 1,
            "one insert of a new 40-byte key (72-byte value) into a preallocated hash table of 2^21, no lookups",
        ),
        floor(
            "insert_floor_64k",
            1 << 16,
            (1 << 15) - 1,
            "one insert into a preallocated hash table of 2^16, 2^15 keys in turn (replacing)",
        ),
    ]
}

pub fn scenarios() -> Vec<Scenario> {
    let mut all = vec![
        Scenario {
            name: "no VIP".into(),
            setup: Box::new(|rig| rig.service(8).map(|_| ())),
            fresh_per_run: false,
            cases: vec![Case {
                name: "no_vip".into(),
                what: "TCP SYN to an address without a service, empty connection table".into(),
                frame: from_client(NOT_A_VIP, TCP_SYN),
                vary: rig::vary_client_src(0),
                expect: &[Counter::PassNoService],
                verdict: XDP_PASS,
                target_ns: Some(45.0),
            }],
        },
        Scenario {
            name: "no VIP, 64 classifier rules".into(),
            setup: Box::new(|rig| {
                rig.service(8)?;
                rig.classifier(lvs_common::classify::MAX_CLASS_RULES, None)
            }),
            fresh_per_run: false,
            cases: vec![Case {
                name: "no_vip_rules64".into(),
                what: "no_vip with 64 firewall-mark rules loaded, none matching (the whole walk)".into(),
                frame: from_client(NOT_A_VIP, TCP_SYN),
                vary: rig::vary_client_src(0),
                expect: &[Counter::PassNoService],
                verdict: XDP_PASS,
                target_ns: Some(45.0),
            }],
        },
        Scenario {
            name: "new connections, fwmark rr over 8".into(),
            setup: Box::new(|rig| {
                rig.service_at(crate::model::ServiceKey::Fwmark { mark: 64, ipv6: false }, 8, "rr", |_| 1, None)?;
                rig.classifier(lvs_common::classify::MAX_CLASS_RULES, Some(64))
            }),
            fresh_per_run: true,
            cases: vec![Case {
                name: "new_fwm_rr_8".into(),
                what: "new_rr_8 through a firewall-mark service, its mark from the 64th rule".into(),
                ..new_conn("rr", 8, "")
            }],
        },
        Scenario {
            name: "established, 1 Ki connections".into(),
            setup: Box::new(|rig| established(rig, 1 << 10)),
            fresh_per_run: false,
            cases: established_cases(1 << 10, "1k"),
        },
        Scenario {
            name: "established, 1 Mi connections".into(),
            setup: Box::new(|rig| established(rig, 1 << 20)),
            fresh_per_run: false,
            cases: {
                let mut c = established_cases(1 << 20, "1m");
                // The dataplane looks up both connection tables before the service: with a big
                // table those lookups miss the cache even for traffic that is none of its business.
                c.push(Case {
                    name: "no_vip_1m".into(),
                    what: "TCP SYN to an address without a service, 1048576 connections in the table, 1048576 clients in turn".into(),
                    frame: from_client(NOT_A_VIP, TCP_SYN),
                    vary: rig::vary_client_src((1 << 20) - 1),
                    expect: &[Counter::PassNoService],
                    verdict: XDP_PASS,
                    target_ns: Some(45.0),
                });
                c
            },
        },
        Scenario {
            name: "established DR, 1 Ki connections".into(),
            setup: Box::new(|rig| {
                let key = rig.service_fwd(8, Forward::Route)?;
                rig.fill_established_fwd(&key, 1 << 10, Forward::Route)
            }),
            fresh_per_run: false,
            cases: vec![established_fwd_case("dr", 1 << 10, "1k")],
        },
        Scenario {
            name: "established TUN, 1 Ki connections".into(),
            setup: Box::new(|rig| {
                let key = rig.service_fwd(8, Forward::Tunnel)?;
                rig.fill_established_fwd(&key, 1 << 10, Forward::Tunnel)
            }),
            fresh_per_run: false,
            cases: vec![established_fwd_case("tun", 1 << 10, "1k")],
        },
        Scenario {
            name: "established GUE, 1 Ki connections".into(),
            setup: Box::new(|rig| {
                let key = rig.service_gue(8)?;
                rig.fill_established_fwd(&key, 1 << 10, Forward::Tunnel)
            }),
            fresh_per_run: false,
            cases: vec![established_fwd_case("gue", 1 << 10, "1k")],
        },
        Scenario {
            name: "new connections, DR, rr over 8".into(),
            setup: Box::new(|rig| rig.service_fwd(8, Forward::Route).map(|_| ())),
            fresh_per_run: true,
            cases: vec![new_fwd("dr", 8)],
        },
        Scenario {
            name: "new connections, TUN, rr over 8".into(),
            setup: Box::new(|rig| rig.service_fwd(8, Forward::Tunnel).map(|_| ())),
            fresh_per_run: true,
            cases: vec![new_fwd("tun", 8)],
        },
    ];
    for sched in SCHEDULERS {
        for servers in [8, 256] {
            all.push(new_conn_scenario(sched, servers));
        }
    }
    all.push(template_hit_scenario());
    for fwd in [Forward::Masq, Forward::Route, Forward::Tunnel] {
        all.push(established6_scenario(fwd));
    }
    all
}
