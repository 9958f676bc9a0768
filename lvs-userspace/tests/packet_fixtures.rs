//! Packet fixtures run through the real XDP program with BPF_PROG_TEST_RUN.
//!
//! Each fixture is {name, input frame, expected verdict, expected output frame}. Expected
//! frames are built from scratch with full checksums (not the incremental updates the program
//! uses), so a wrong checksum update shows up as a byte mismatch. Maps are set up through the
//! daemon's own control-plane code (`VirtualServers`), as lvsd would.
//!
//! `bpf_fib_lookup` runs in the caller's network namespace, so the test thread moves into a
//! private namespace with two veth pairs and static neighbours, which makes next hops and MAC
//! addresses deterministic. Needs root; in CI (`CI` set) a missing privilege is a failure.

mod fixture_kit;

use std::net::IpAddr;

use fixture_kit::{
    check, in_netns, Fixture, Netns, Rig, CLIENT_MAC, DIRECTOR_IN_MAC, PAYLOAD, RS1_MAC, RS2_MAC, XDP_DROP, XDP_PASS,
    XDP_REDIRECT,
};
use lvs_common::counters::Counter;
use lvs_userspace::{
    daemon::state::VirtualServers,
    model::{DestSpec, Forward, Protocol, ServiceKey, ServiceSpec},
    testkit::{
        frames::{self, hex, Ip},
        netns::{DIRECTOR_CL_MAC, DIRECTOR_RS_MAC},
    },
};

const CLIENT: [u8; 4] = [198, 51, 100, 2];
const VIP: [u8; 4] = [203, 0, 113, 10];
const RS1: [u8; 4] = [192, 0, 2, 11];
const RS2: [u8; 4] = [192, 0, 2, 12];

const SYN: u8 = frames::TCP_SYN;
const ACK: u8 = frames::TCP_ACK;
const PSH: u8 = frames::TCP_PSH;
const RST: u8 = frames::TCP_RST;

// ---- packet building (full checksums, independent of the program's incremental updates) ----

fn tcp_frame(dmac: [u8; 6], smac: [u8; 6], ip: Ip, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    frames::tcp_frame(dmac, smac, ip, sport, dport, flags, PAYLOAD)
}

fn udp_frame(dmac: [u8; 6], smac: [u8; 6], ip: Ip, sport: u16, dport: u16) -> Vec<u8> {
    frames::udp_frame(dmac, smac, ip, sport, dport, b"ping")
}

// ---- what this file's tests add to the shared rig ----

impl Rig {
    fn service(&mut self, proto: Protocol, port: u16, servers: &[[u8; 4]]) -> ServiceKey {
        self.service_fwd(proto, port, servers, Forward::Masq)
    }

    fn service_fwd(&mut self, proto: Protocol, port: u16, servers: &[[u8; 4]], fwd: Forward) -> ServiceKey {
        let key = ServiceKey::Addr { protocol: proto, addr: IpAddr::from(VIP), port };
        self.add(key, servers.iter().map(|s| DestSpec::new(IpAddr::from(*s), port, fwd, 1)))
    }

    /// The real server a new TCP connection from `sport` is sent to (last octet of the
    /// rewritten destination), or `None` when the packet is not redirected.
    fn schedule_syn(&mut self, sport: u16) -> Option<u8> {
        let (v, out) = self.run(&tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), sport, 80, SYN));
        (v == XDP_REDIRECT).then(|| out[14 + 19])
    }
}

fn with_ttl(ip: Ip, ttl: u8) -> Ip {
    ip.with_ttl(ttl)
}

#[test]
fn nat_fixtures() {
    in_netns(Netns::Director, || {
        let mut rig = Rig::new("nat");
        // -a rs1, -a rs2: kernel order rs2, rs1, so rr starts with rs2.
        rig.service(Protocol::Tcp, 80, &[RS1, RS2]);
        rig.service(Protocol::Udp, 53, &[RS1]);
        rig.service(Protocol::Tcp, 443, &[]);

        let opts = vec![0x01, 0x01, 0x01, 0x00]; // NOP NOP NOP EOL: a 24-byte IPv4 header
        let mut syn_in = Ip::new(CLIENT, VIP);
        syn_in.options = opts.clone();
        let mut syn_out = Ip::new(CLIENT, RS2);
        syn_out.options = opts;
        syn_out.ttl = 63;

        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&CLIENT_MAC);
        arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        arp.extend_from_slice(&[0; 18]);

        let mut frag = Ip::new(CLIENT, VIP);
        frag.frag = 0x0001; // offset 8, last: a later fragment, whose first was never seen
        let mut bad_ihl = tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 40000, 80, SYN);
        bad_ihl[14] = 0x44;
        let short_tcp = {
            let full = tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 40000, 80, SYN);
            full[..14 + 20 + 10].to_vec()
        };

        let fixtures = vec![
            Fixture { name: "ARP passes untouched", input: arp, verdict: XDP_PASS, output: None },
            Fixture {
                name: "TCP to a non-VIP address passes untouched",
                input: tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, [198, 51, 100, 1]), 40000, 80, SYN),
                verdict: XDP_PASS,
                output: None,
            },
            Fixture {
                name: "TCP to the VIP on a port without a service passes untouched",
                input: tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 40000, 22, SYN),
                verdict: XDP_PASS,
                output: None,
            },
            Fixture {
                name: "a later fragment to the VIP without its first passes untouched",
                input: tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, frag, 40000, 80, SYN),
                verdict: XDP_PASS,
                output: None,
            },
            Fixture { name: "IHL 4 passes untouched", input: bad_ihl, verdict: XDP_PASS, output: None },
            Fixture { name: "truncated TCP header passes untouched", input: short_tcp, verdict: XDP_PASS, output: None },
            Fixture {
                name: "ACK without a connection passes untouched (IPVS schedules only SYNs)",
                input: tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 40001, 80, ACK),
                verdict: XDP_PASS,
                output: None,
            },
            Fixture {
                name: "SYN with IP options to the VIP goes to rs2 (newest first), rewritten",
                input: tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, syn_in, 40000, 80, SYN),
                verdict: XDP_REDIRECT,
                output: Some(tcp_frame(RS2_MAC, DIRECTOR_RS_MAC, syn_out, 40000, 80, SYN)),
            },
            Fixture {
                name: "next SYN from another port goes to rs1 (round robin)",
                input: tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 40002, 80, SYN),
                verdict: XDP_REDIRECT,
                output: Some(tcp_frame(RS1_MAC, DIRECTOR_RS_MAC, with_ttl(Ip::new(CLIENT, RS1), 63), 40002, 80, SYN)),
            },
            Fixture {
                name: "later packet of the first flow sticks to rs2",
                input: tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 40000, 80, ACK | PSH),
                verdict: XDP_REDIRECT,
                output: Some(tcp_frame(RS2_MAC, DIRECTOR_RS_MAC, with_ttl(Ip::new(CLIENT, RS2), 63), 40000, 80, ACK | PSH)),
            },
            Fixture {
                name: "reply from rs2 is rewritten to come from the VIP",
                input: tcp_frame(DIRECTOR_RS_MAC, RS2_MAC, Ip::new(RS2, CLIENT), 80, 40000, SYN | ACK),
                verdict: XDP_REDIRECT,
                output: Some(tcp_frame(CLIENT_MAC, DIRECTOR_CL_MAC, with_ttl(Ip::new(VIP, CLIENT), 63), 80, 40000, SYN | ACK)),
            },
            Fixture {
                name: "reply from the wrong real server for that flow passes untouched",
                input: tcp_frame(DIRECTOR_RS_MAC, RS1_MAC, Ip::new(RS1, CLIENT), 80, 40000, ACK),
                verdict: XDP_PASS,
                output: None,
            },
            Fixture {
                name: "UDP datagram to the VIP is rewritten to rs1",
                input: udp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 5353, 53),
                verdict: XDP_REDIRECT,
                output: Some(udp_frame(RS1_MAC, DIRECTOR_RS_MAC, with_ttl(Ip::new(CLIENT, RS1), 63), 5353, 53)),
            },
            Fixture {
                name: "UDP reply is rewritten to come from the VIP",
                input: udp_frame(DIRECTOR_RS_MAC, RS1_MAC, Ip::new(RS1, CLIENT), 53, 5353),
                verdict: XDP_REDIRECT,
                output: Some(udp_frame(CLIENT_MAC, DIRECTOR_CL_MAC, with_ttl(Ip::new(VIP, CLIENT), 63), 53, 5353)),
            },
            Fixture {
                name: "SYN to a service without real servers gets ICMP port unreachable back",
                input: tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 40003, 443, SYN),
                verdict: XDP_REDIRECT,
                output: Some(frames::icmp_port_unreachable(&tcp_frame(
                    DIRECTOR_IN_MAC,
                    CLIENT_MAC,
                    Ip::new(CLIENT, VIP),
                    40003,
                    443,
                    SYN,
                ))),
            },
            Fixture {
                name: "RST for the first flow still goes to rs2",
                input: tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 40000, 80, RST),
                verdict: XDP_REDIRECT,
                output: Some(tcp_frame(RS2_MAC, DIRECTOR_RS_MAC, with_ttl(Ip::new(CLIENT, RS2), 63), 40000, 80, RST)),
            },
        ];
        check(&mut rig, fixtures);

        // Every verdict above was counted under its reason.
        assert_eq!(rig.counter(Counter::PassNotIp), 1);
        assert_eq!(rig.counter(Counter::PassNoService), 3, "non-VIP, port 22, wrong-server reply");
        assert_eq!(rig.counter(Counter::PassFragment), 1);
        assert_eq!(rig.counter(Counter::PassMalformed), 2);
        assert_eq!(rig.counter(Counter::PassNotSyn), 1);
        assert_eq!(rig.counter(Counter::Redirect), 7);
        assert_eq!(rig.counter(Counter::NewConn), 3);
        assert_eq!(rig.counter(Counter::TxIcmpUnreachable), 1);
        assert_eq!(rig.counter(Counter::DropNoDest), 0);

        // Deleting rs2 makes its connection's client packets drop (IPVS, expire_nodest_conn=0).
        let key = ServiceKey::Addr { protocol: Protocol::Tcp, addr: IpAddr::from(VIP), port: 80 };
        rig.vs.del_dest(&mut rig.tables, &key, IpAddr::from(RS2), 80).unwrap();
        let (v, _) = rig.run(&tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 40000, 80, ACK));
        assert_eq!(v, XDP_DROP);
        assert_eq!(rig.counter(Counter::DropDestUnavailable), 1);
    });
}

/// IPVS rr's pointer across configuration changes (ip_vs_rr.c): new servers go to the list
/// head, weight 0 is skipped, deleting the server under the pointer moves it back one place.
#[test]
fn rr_follows_the_kernel_across_changes() {
    in_netns(Netns::Director, || {
        let mut rig = Rig::new("rr");
        let key = ServiceKey::Addr { protocol: Protocol::Tcp, addr: IpAddr::from(VIP), port: 80 };
        rig.vs.add_service(&mut rig.tables, ServiceSpec::new(key, "rr")).unwrap();
        let add = |rig: &mut Rig, last: u8, weight: i32| {
            let d = DestSpec::new(IpAddr::from([192, 0, 2, last]), 80, Forward::Masq, weight);
            rig.vs.add_dest(&mut rig.tables, &key, d).unwrap();
        };
        // The spec's example: -a A, -a B -w 0, -a C gives C A C A.
        add(&mut rig, 11, 1); // A
        add(&mut rig, 12, 0); // B, quiesced
        add(&mut rig, 13, 1); // C
        let seq: Vec<_> = (0..4).map(|i| rig.schedule_syn(41000 + i)).collect();
        assert_eq!(seq, [Some(13), Some(11), Some(13), Some(11)]);

        // Pointer on A (kernel order C B A). B back to weight 1, D added at the head:
        // the walk after A wraps to the head, D.
        let b = DestSpec::new(IpAddr::from([192, 0, 2, 12]), 80, Forward::Masq, 1);
        rig.vs.edit_dest(&mut rig.tables, &key, b).unwrap();
        add(&mut rig, 14, 1); // D: order D C B A
        assert_eq!(rig.schedule_syn(42000), Some(14));
        assert_eq!(rig.schedule_syn(42001), Some(13));
        assert_eq!(rig.schedule_syn(42002), Some(12));
        // Pointer on B; deleting B moves it back to C, so A is next, then D.
        rig.vs.del_dest(&mut rig.tables, &key, IpAddr::from([192, 0, 2, 12]), 80).unwrap();
        let seq: Vec<_> = (0..4).map(|i| rig.schedule_syn(43000 + i)).collect();
        assert_eq!(seq, [Some(11), Some(14), Some(13), Some(11)]);

        // Every server quiesced: no destination, the client gets ICMP port unreachable.
        for last in [11, 13, 14] {
            let d = DestSpec::new(IpAddr::from([192, 0, 2, last]), 80, Forward::Masq, 0);
            rig.vs.edit_dest(&mut rig.tables, &key, d).unwrap();
        }
        let syn = tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 44000, 80, SYN);
        let (v, out) = rig.run(&syn);
        assert_eq!(v, XDP_REDIRECT);
        assert_eq!(hex(&out), hex(&frames::icmp_port_unreachable(&syn)));
        assert_eq!(rig.counter(Counter::TxIcmpUnreachable), 1);
    });
}

/// wrr in the XDP program against the host reference (`lvs_common::wrr`, itself checked
/// against a transcription of `ip_vs_wrr_schedule`): 4 real servers with weights that share a
/// gcd part of the time, OVERLOAD flags flipped at random between connections, weight edits
/// (`dest_changed`) now and then. After every SYN the chosen server and the mark in
/// `SCHED_STATE` must equal the host's.
#[test]
fn wrr_matches_the_reference_under_overload() {
    use lvs_common::{
        service::dest_flags,
        wrr::{wrr_dest_changed, wrr_init, wrr_schedule},
    };
    in_netns(Netns::Director, || {
        let mut rig = Rig::new("wrr");
        let key = ServiceKey::Addr { protocol: Protocol::Tcp, addr: IpAddr::from(VIP), port: 80 };
        rig.vs.add_service(&mut rig.tables, ServiceSpec::new(key, "wrr")).unwrap();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        // Host model, kernel order (newest first): (last octet, weight).
        let mut servers: Vec<(u8, i32)> = Vec::new();
        let mut mark = wrr_init(&[]);
        for (last, w) in [(11u8, 4), (12, 6), (13, 2), (14, 8)] {
            let d = DestSpec::new(IpAddr::from([192, 0, 2, last]), 80, Forward::Masq, w);
            rig.vs.add_dest(&mut rig.tables, &key, d).unwrap();
            servers.insert(0, (last, w));
            wrr_dest_changed(&mut mark, &servers.iter().map(|s| s.1).collect::<Vec<_>>());
        }
        let svc_id = rig.tables.svc_index.get(&lvs_userspace::daemon::tables::svc_key(&key).unwrap(), 0).unwrap();
        let mut overloaded = [false; 4];
        let (mut hits, mut misses) = (0, 0);
        for step in 0..400u16 {
            if step % 50 == 49 {
                // An edit: new weight (sometimes 0), the mark resets as the kernel's does.
                let i = rand(4) as usize;
                let w = [0, 1, 2, 3, 4, 6, 9, 12][rand(8) as usize];
                servers[i].1 = w;
                let d = DestSpec::new(IpAddr::from([192, 0, 2, servers[i].0]), 80, Forward::Masq, w);
                rig.vs.edit_dest(&mut rig.tables, &key, d).unwrap();
                wrr_dest_changed(&mut mark, &servers.iter().map(|s| s.1).collect::<Vec<_>>());
            }
            let conf = rig.tables.services.get(&svc_id, 0).unwrap();
            for (i, ov) in overloaded.iter_mut().enumerate() {
                if rand(4) == 0 {
                    *ov = !*ov;
                }
                let slot = conf.dests[i];
                let mut d = rig.tables.dests.get(&slot, 0).unwrap();
                d.flags = if *ov { d.flags | dest_flags::OVERLOAD } else { d.flags & !dest_flags::OVERLOAD };
                rig.tables.dests.set(slot, d, 0).unwrap();
            }
            let model: Vec<(i32, bool)> = servers.iter().zip(overloaded).map(|(s, ov)| (s.1, ov)).collect();
            let want = wrr_schedule(&mut mark, &model).map(|i| servers[i].0);
            let refused = rig.counter(Counter::TxIcmpUnreachable);
            let mut got = rig.schedule_syn(20000 + step);
            if got == Some(CLIENT[3]) {
                // Redirected back to the client: the ICMP port unreachable of "no destination".
                assert_eq!(rig.counter(Counter::TxIcmpUnreachable), refused + 1);
                got = None;
            }
            assert_eq!(got, want, "step {step}: servers {model:?}");
            let st = rig.tables.sched_state.get(&svc_id, 0).unwrap();
            assert_eq!(st.wrr, mark, "step {step}: mark");
            if want.is_some() {
                hits += 1;
            } else {
                misses += 1;
            }
        }
        // Both outcomes were exercised.
        assert!(hits > 100 && misses > 5, "hits {hits}, misses {misses}");
    });
}

/// lc, wlc, sed, nq, fo and ovf in the XDP program against the host reference
/// (`lvs_common::sched_dynamic::Chooser`, checked against the kernel's rules by its own
/// tests) over 21 real servers: the program offers them several to a `bpf_loop` step, so the
/// list crosses step boundaries and ends inside one. Before every SYN each server gets random
/// counters (small ranges, so ties happen), a random weight (0 now and then) and, now and
/// then, the OVERLOAD flag; the server chosen must be the reference's, first in kernel order
/// on ties.
#[test]
fn dynamic_schedulers_match_the_reference_over_many_servers() {
    use lvs_common::{
        sched_dynamic::{Chooser, NONE},
        service::{dest_flags, sched, DestCounters},
    };
    in_netns(Netns::Director, || {
        let mut rig = Rig::new("dyn");
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let scheds = [("lc", sched::LC), ("wlc", sched::WLC), ("sed", sched::SED), ("nq", sched::NQ), ("fo", sched::FO), ("ovf", sched::OVF)];
        let mut sport = 30000u16;
        for (port, (name, s)) in (81u16..).zip(scheds) {
            let key = ServiceKey::Addr { protocol: Protocol::Tcp, addr: IpAddr::from(VIP), port };
            rig.vs.add_service(&mut rig.tables, ServiceSpec::new(key, name)).unwrap();
            for last in 11..32u8 {
                let d = DestSpec::new(IpAddr::from([192, 0, 2, last]), 80, Forward::Masq, 1);
                rig.vs.add_dest(&mut rig.tables, &key, d).unwrap();
            }
            let svc_id = rig.tables.svc_index.get(&lvs_userspace::daemon::tables::svc_key(&key).unwrap(), 0).unwrap();
            let conf = rig.tables.services.get(&svc_id, 0).unwrap();
            assert_eq!(conf.dest_count, 21);
            let mut far = 0;
            for step in 0..120 {
                let mut chooser = Chooser::new(s);
                let mut octets = Vec::new();
                for i in 0..conf.dest_count as usize {
                    let slot = conf.dests[i];
                    let mut d = rig.tables.dests.get(&slot, 0).unwrap();
                    d.weight = if rand(10) == 0 { 0 } else { 1 + rand(20) as i32 };
                    let ov = rand(12) == 0;
                    d.flags = if ov { d.flags | dest_flags::OVERLOAD } else { d.flags & !dest_flags::OVERLOAD };
                    rig.tables.dests.set(slot, d, 0).unwrap();
                    let c = DestCounters { active: rand(10), inactive: rand(600), ..Default::default() };
                    rig.tables.dest_counters.set(slot, c, 0).unwrap();
                    chooser.offer(i as u32, !ov && d.flags & dest_flags::AVAILABLE != 0, d.weight, &c);
                    octets.push(d.addr[0].to_ne_bytes()[3]);
                }
                let want = (chooser.found != NONE).then(|| octets[chooser.found as usize]);
                if chooser.found != NONE && chooser.found >= 8 {
                    far += 1;
                }
                sport += 1;
                let syn = tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), sport, port, SYN);
                // Only .11 and .12 have neighbours here: a SYN to another real server leaves
                // rewritten, with XDP_PASS (NO_NEIGH). No server: ICMP back to the client.
                let (v, out) = rig.run(&syn);
                let to_server = matches!(v, XDP_REDIRECT | XDP_PASS) && out[14 + 16..14 + 19] == [192, 0, 2];
                let got = to_server.then(|| out[14 + 19]);
                assert_eq!(got, want, "{name} step {step}");
            }
            // The walk's later steps decided often enough to matter.
            assert!(far > 20, "{name}: only {far} of 120 choices past the first 8 servers");
        }
    });
}

/// `--ops`: each datagram of one flow is scheduled on its own (rr alternates), leaves no
/// connection entry and no count; the real server's reply is not translated (IPVS never
/// hashes one-packet connections), so it passes untouched. On a TCP service the flag is
/// ignored, as the kernel ignores it.
#[test]
fn one_packet_datagrams_are_scheduled_alone() {
    in_netns(Netns::Director, || {
        let mut rig = Rig::new("ops");
        let mut add = |proto, port| {
            let key = ServiceKey::Addr { protocol: proto, addr: IpAddr::from(VIP), port };
            let mut spec = ServiceSpec::new(key, "rr");
            spec.flags = lvs_userspace::model::svc_flags::ONEPACKET;
            rig.vs.add_service(&mut rig.tables, spec).unwrap();
            for s in [RS1, RS2] {
                rig.vs.add_dest(&mut rig.tables, &key, DestSpec::new(IpAddr::from(s), port, Forward::Masq, 1)).unwrap();
            }
        };
        add(Protocol::Udp, 53);
        add(Protocol::Tcp, 80);
        let dgram = udp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 5353, 53);
        let to = |mac, rs| Some(udp_frame(mac, DIRECTOR_RS_MAC, with_ttl(Ip::new(CLIENT, rs), 63), 5353, 53));
        let fixtures = vec![
            Fixture { name: "datagram 1 to rs2", input: dgram.clone(), verdict: XDP_REDIRECT, output: to(RS2_MAC, RS2) },
            Fixture { name: "datagram 2, same flow, to rs1", input: dgram.clone(), verdict: XDP_REDIRECT, output: to(RS1_MAC, RS1) },
            Fixture { name: "datagram 3 to rs2", input: dgram.clone(), verdict: XDP_REDIRECT, output: to(RS2_MAC, RS2) },
            Fixture {
                name: "rs1's reply is not translated",
                input: udp_frame(DIRECTOR_RS_MAC, RS1_MAC, Ip::new(RS1, CLIENT), 53, 5353),
                verdict: XDP_PASS,
                output: None,
            },
        ];
        check(&mut rig, fixtures);
        assert_eq!(rig.counter(Counter::NewConn), 3);
        assert_eq!(rig.counter(Counter::PassNoService), 1);
        assert_eq!(rig.tables.conns.iter().count(), 0, "no connection entry");
        for slot in 0..2 {
            let c = rig.tables.dest_counters(slot);
            assert_eq!((c.active, c.inactive), (0, 0), "dest slot {slot}");
        }
        // TCP: the flag does nothing, the SYN gets a connection entry as usual.
        assert_eq!(rig.schedule_syn(40000), Some(12));
        assert_eq!(rig.schedule_syn(40000), Some(12), "the retransmitted SYN follows its entry");
        assert_eq!(rig.tables.conns.iter().count(), 1);
    });
}

/// IPVS's traffic statistics as the dataplane keeps them: a connection counts once, on its real
/// server, its service and the totals; bytes are the IP total length (Ethernet padding not
/// included); nothing counts while the real server is unavailable; `-Z` starts from zero.
#[test]
fn traffic_statistics_follow_the_kernel_rules() {
    in_netns(Netns::Director, || {
        let mut rig = Rig::new("stats");
        let tcp = rig.service(Protocol::Tcp, 80, &[RS1, RS2]);
        let udp = rig.service(Protocol::Udp, 53, &[RS1]);
        // [conns, inpkts, outpkts, inbytes, outbytes] of a service and of one of its servers.
        let row = |s: &lvs_userspace::model::Stats| [s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes];
        let of = |rig: &Rig, key: ServiceKey, server: Option<[u8; 4]>| -> [u64; 5] {
            let list = rig.vs.list(&rig.tables);
            let svc = list.iter().find(|s| s.spec.key == key).expect("service");
            match server {
                None => row(&svc.stats),
                Some(a) => row(&svc.dests.iter().find(|d| d.spec.addr == IpAddr::from(a)).expect("server").stats),
            }
        };
        let tcp_len = 20 + 20 + PAYLOAD.len() as u64;

        // A SYN: rs2 (newest first) gets the connection and the packet.
        let syn = tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 40000, 80, SYN);
        assert_eq!(rig.run(&syn).0, XDP_REDIRECT);
        assert_eq!(of(&rig, tcp, Some(RS2)), [1, 1, 0, tcp_len, 0]);
        assert_eq!(of(&rig, tcp, Some(RS1)), [0; 5]);
        assert_eq!(of(&rig, tcp, None), [1, 1, 0, tcp_len, 0]);
        // More of the same flow in both directions: packets, not connections.
        let data = tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 40000, 80, ACK | PSH);
        assert_eq!(rig.run(&data).0, XDP_REDIRECT);
        let reply = tcp_frame(DIRECTOR_RS_MAC, RS2_MAC, Ip::new(RS2, CLIENT), 80, 40000, ACK);
        assert_eq!(rig.run(&reply).0, XDP_REDIRECT);
        assert_eq!(of(&rig, tcp, Some(RS2)), [1, 2, 1, 2 * tcp_len, tcp_len]);
        assert_eq!(of(&rig, tcp, None), [1, 2, 1, 2 * tcp_len, tcp_len]);

        // A 4-byte UDP datagram in a frame padded to Ethernet's 60-byte minimum: 32 bytes.
        let mut dgram = udp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 5000, 53);
        dgram.resize(60, 0);
        assert_eq!(rig.run(&dgram).0, XDP_REDIRECT);
        assert_eq!(of(&rig, udp, Some(RS1)), [1, 1, 0, 32, 0]);
        assert_eq!(rig.vs.totals(&rig.tables).conns, 2);
        assert_eq!(rig.vs.totals(&rig.tables).inbytes, 2 * tcp_len + 32);

        // rs2 deleted: its client packets are dropped and not counted, and its replies, still
        // forwarded, are not counted either (IPVS counts only AVAILABLE servers).
        rig.vs.del_dest(&mut rig.tables, &tcp, IpAddr::from(RS2), 80).unwrap();
        let before = (of(&rig, tcp, None), rig.vs.totals(&rig.tables));
        assert_eq!(rig.run(&data).0, XDP_DROP);
        rig.run(&reply);
        assert_eq!((of(&rig, tcp, None), rig.vs.totals(&rig.tables)), before);

        // -Z of one service leaves the other; -Z of everything clears the totals too.
        rig.vs.zero(&mut rig.tables, Some(&tcp)).unwrap();
        assert_eq!(of(&rig, tcp, None), [0; 5]);
        assert_eq!(of(&rig, udp, Some(RS1)), [1, 1, 0, 32, 0]);
        rig.vs.zero(&mut rig.tables, None).unwrap();
        assert_eq!(of(&rig, udp, None), [0; 5]);
        assert_eq!(row(&rig.vs.totals(&rig.tables)), [0; 5]);
        // ... and counting resumes from there.
        let mut dgram2 = udp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 5001, 53);
        dgram2.resize(60, 0);
        assert_eq!(rig.run(&dgram2).0, XDP_REDIRECT);
        assert_eq!(of(&rig, udp, Some(RS1)), [1, 1, 0, 32, 0]);
        assert_eq!(row(&rig.vs.totals(&rig.tables)), [1, 1, 0, 32, 0]);

        // --ops: every datagram of one flow is a connection of its own; the reply, which
        // matches no connection, counts nowhere.
        let ops = ServiceKey::Addr { protocol: Protocol::Udp, addr: IpAddr::from(VIP), port: 5060 };
        let mut spec = ServiceSpec::new(ops, "rr");
        spec.flags = lvs_userspace::model::svc_flags::ONEPACKET;
        rig.vs.add_service(&mut rig.tables, spec).unwrap();
        rig.vs.add_dest(&mut rig.tables, &ops, DestSpec::new(IpAddr::from(RS1), 5060, Forward::Masq, 1)).unwrap();
        let sip = udp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 5060, 5060);
        for _ in 0..3 {
            assert_eq!(rig.run(&sip).0, XDP_REDIRECT);
        }
        assert_eq!(rig.run(&udp_frame(DIRECTOR_RS_MAC, RS1_MAC, Ip::new(RS1, CLIENT), 5060, 5060)).0, XDP_PASS);
        assert_eq!(of(&rig, ops, Some(RS1)), [3, 3, 0, 3 * 32, 0]);
        assert_eq!(of(&rig, ops, None), [3, 3, 0, 3 * 32, 0]);
    });
}

/// `ip_vs_service_find`'s order through the real program: the fwmark service of the
/// classifier's mark first, then (protocol, address, port), then the port-0 service, which is
/// tried only while one exists. Checked on the rewritten destination of each SYN.
#[test]
fn fwmark_then_address_then_port_zero() {
    in_netns(Netns::Director, || {
        let mut rig = Rig::new("fwmark");
        rig.service(Protocol::Tcp, 80, &[RS1]);
        let fwm = ServiceKey::Fwmark { mark: 5, ipv6: false };
        rig.vs.add_service(&mut rig.tables, ServiceSpec::new(fwm, "rr")).unwrap();
        // Port 0: the connection keeps the packet's destination port.
        rig.vs.add_dest(&mut rig.tables, &fwm, DestSpec::new(IpAddr::from(RS2), 0, Forward::Masq, 1)).unwrap();
        let rule = |mark: u32, ports: (u16, u16), protocol: Protocol| lvs_userspace::config::ClassifierRule {
            mark,
            addr: IpAddr::from(VIP),
            prefix_len: 32,
            protocol: Some(protocol),
            ports,
            location: Default::default(),
        };
        let rules = [rule(5, (80, 81), Protocol::Tcp), rule(9, (82, 82), Protocol::Tcp)];
        rig.tables.write_classifier(&lvs_userspace::config::rule_set(&rules)).unwrap();

        // (verdict, destination address's last octet, destination port) of a SYN to VIP:port.
        let syn = |rig: &mut Rig, sport: u16, port: u16| {
            let input = tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), sport, port, SYN);
            let (v, out) = rig.run(&input);
            if v != XDP_REDIRECT {
                assert_eq!(out, input, "a packet that is not redirected must be untouched");
            }
            (v, out[14 + 19], u16::from_be_bytes([out[14 + 22], out[14 + 23]]))
        };
        // Marked 5: the fwmark service wins over the address service on :80.
        assert_eq!(syn(&mut rig, 41000, 80), (XDP_REDIRECT, 12, 80));
        assert_eq!(syn(&mut rig, 41001, 81), (XDP_REDIRECT, 12, 81));
        // Marked 9, no such fwmark service: the address lookup, which has nothing on :82.
        assert_eq!(syn(&mut rig, 41002, 82), (XDP_PASS, VIP[3], 82));
        // UDP is not marked by TCP rules, and has no service.
        let udp = udp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 41003, 80);
        assert_eq!(rig.run(&udp), (XDP_PASS, udp.clone()));

        // A port-0 service of (TCP, VIP) catches every port without its own service. (Port-0
        // services need persistence, which lvsd does not have yet; the table code takes one.)
        let any_port = ServiceKey::Addr { protocol: Protocol::Tcp, addr: IpAddr::from(VIP), port: 0 };
        assert_eq!(syn(&mut rig, 41004, 83), (XDP_PASS, VIP[3], 83));
        rig.vs.add_service(&mut rig.tables, ServiceSpec::new(any_port, "rr")).unwrap();
        rig.vs.add_dest(&mut rig.tables, &any_port, DestSpec::new(IpAddr::from(RS1), 0, Forward::Masq, 1)).unwrap();
        assert_eq!(syn(&mut rig, 41005, 83), (XDP_REDIRECT, 11, 83));
        assert_eq!(syn(&mut rig, 41006, 82), (XDP_REDIRECT, 11, 82));
        // The exact service still comes before it, and the fwmark service before both.
        assert_eq!(syn(&mut rig, 41007, 81), (XDP_REDIRECT, 12, 81));
        rig.vs.del_service(&mut rig.tables, &any_port).unwrap();
        assert_eq!(syn(&mut rig, 41008, 83), (XDP_PASS, VIP[3], 83));

        // An empty rule set switches the classifier off: :81 is nobody's, :80 the address
        // service's.
        rig.tables.write_classifier(&lvs_userspace::config::rule_set(&[])).unwrap();
        assert_eq!(syn(&mut rig, 41009, 81), (XDP_PASS, VIP[3], 81));
        assert_eq!(syn(&mut rig, 41010, 80), (XDP_REDIRECT, 11, 80));
        // Rules back (into the other set): marked again.
        rig.tables.write_classifier(&lvs_userspace::config::rule_set(&rules[..1])).unwrap();
        assert_eq!(syn(&mut rig, 41011, 80), (XDP_REDIRECT, 12, 80));
        assert_eq!(rig.counter(Counter::NewConn), 7);
    });
}

/// Direct routing and IP-in-IP: the exact frames the director sends (DR: only the MACs and
/// the TTL change; TUN: the outer header of every case), fragmentation needed for a DF packet
/// that would not fit once encapsulated, and the drops that must never reach the stack.
#[test]
fn dr_and_tun_fixtures() {
    in_netns(Netns::Director, || {
        let mut rig = Rig::new("fwd");
        rig.service_fwd(Protocol::Tcp, 80, &[RS1], Forward::Route);
        rig.service_fwd(Protocol::Udp, 53, &[RS2], Forward::Route);
        rig.service_fwd(Protocol::Tcp, 8080, &[RS1], Forward::Tunnel);
        rig.service_fwd(Protocol::Udp, 5353, &[RS2], Forward::Tunnel);
        // 192.0.2.15 has no static neighbour: DR towards it cannot be sent.
        rig.service_fwd(Protocol::Tcp, 81, &[[192, 0, 2, 15]], Forward::Route);
        const DIRECTOR_RS_IP: [u8; 4] = [192, 0, 2, 1];

        let syn = |port: u16, sport: u16, ip: Ip| tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, ip, sport, port, SYN);
        let big = |frag: u16| {
            let mut ip = Ip::new(CLIENT, VIP);
            ip.frag = frag;
            // 20 + 20 + 1460 = 1500 bytes of IP: fits the 1500-byte link, 1500 + 20 does not.
            frames::tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, ip, 41000 + frag, 8080, SYN, &[0x5a; 1460])
        };
        let dr_out = |f: &[u8]| {
            let mut o = f.to_vec();
            o[0..6].copy_from_slice(&RS1_MAC);
            o[6..12].copy_from_slice(&DIRECTOR_RS_MAC);
            o
        };
        let ttl63 = |f: Vec<u8>| {
            // The same frame rebuilt with TTL 63 and a full checksum.
            let mut o = f;
            o[14 + 8] = 63;
            o[14 + 10] = 0;
            o[14 + 11] = 0;
            let c = lvs_common::csum::checksum(&o[14..34]);
            o[14 + 10..14 + 12].copy_from_slice(&c.to_ne_bytes());
            o
        };
        let tun_in = syn(8080, 42000, Ip::new(CLIENT, VIP));
        let mut nodf = Ip::new(CLIENT, VIP);
        nodf.frag = 0;
        let tun_nodf = udp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, nodf.clone(), 42001, 5353);
        let big_df = big(0x4000);
        let big_nodf = big(0);

        let fixtures = vec![
            Fixture {
                name: "DR: SYN to the VIP keeps its addresses, goes to rs1's MAC with TTL 63",
                input: syn(80, 40000, Ip::new(CLIENT, VIP)),
                verdict: XDP_REDIRECT,
                output: Some(dr_out(&syn(80, 40000, with_ttl(Ip::new(CLIENT, VIP), 63)))),
            },
            Fixture {
                name: "DR: later packet of that flow, same",
                input: tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 40000, 80, ACK | PSH),
                verdict: XDP_REDIRECT,
                output: Some(dr_out(&tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, with_ttl(Ip::new(CLIENT, VIP), 63), 40000, 80, ACK | PSH))),
            },
            Fixture {
                name: "DR: UDP to the VIP goes to rs2's MAC unchanged but for the TTL",
                input: udp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 5300, 53),
                verdict: XDP_REDIRECT,
                output: Some({
                    let mut o = udp_frame(RS2_MAC, DIRECTOR_RS_MAC, with_ttl(Ip::new(CLIENT, VIP), 63), 5300, 53);
                    o[0..6].copy_from_slice(&RS2_MAC);
                    o
                }),
            },
            Fixture {
                name: "DR: a reply routed back through the director (VIP -> client) is routed on as it is",
                input: tcp_frame(DIRECTOR_RS_MAC, RS1_MAC, Ip::new(VIP, CLIENT), 80, 40000, ACK),
                verdict: XDP_REDIRECT,
                output: Some(tcp_frame(CLIENT_MAC, DIRECTOR_CL_MAC, with_ttl(Ip::new(VIP, CLIENT), 63), 80, 40000, ACK)),
            },
            Fixture {
                name: "DR: towards a real server without a neighbour entry: dropped, never to the stack",
                input: syn(81, 40001, Ip::new(CLIENT, VIP)),
                verdict: XDP_DROP,
                output: None,
            },
            Fixture {
                name: "TUN: SYN encapsulated from the director's route source to rs1, DF copied, ID 0, TTL 63 inside and out",
                input: tun_in.clone(),
                verdict: XDP_REDIRECT,
                output: Some(frames::ipip_frame(RS1_MAC, DIRECTOR_RS_MAC, DIRECTOR_RS_IP, RS1, 63, 0, &ttl63(tun_in))),
            },
            Fixture {
                name: "TUN: UDP without DF: outer without DF, carrying the inner ID",
                input: tun_nodf.clone(),
                verdict: XDP_REDIRECT,
                output: Some(frames::ipip_frame(RS2_MAC, DIRECTOR_RS_MAC, DIRECTOR_RS_IP, RS2, 63, 0x1234, &ttl63(tun_nodf))),
            },
            Fixture {
                name: "TUN: 1500 bytes with DF would be 1500 + 20: ICMP fragmentation needed, MTU 1480, from the VIP",
                input: big_df.clone(),
                verdict: XDP_REDIRECT,
                output: Some(frames::icmp_frag_needed(&big_df, 1480)),
            },
            Fixture {
                name: "TUN: the same without DF is encapsulated and handed to the kernel to fragment",
                input: big_nodf.clone(),
                verdict: XDP_PASS,
                output: Some(frames::ipip_frame(DIRECTOR_IN_MAC, CLIENT_MAC, DIRECTOR_RS_IP, RS1, 63, 0x1234, &ttl63(big_nodf))),
            },
        ];
        check(&mut rig, fixtures);
        assert_eq!(rig.counter(Counter::DropNoNeigh), 1);
        assert_eq!(rig.counter(Counter::TxIcmpFragNeeded), 1);
        assert_eq!(rig.counter(Counter::PassFibFallback), 1);
        assert_eq!(rig.counter(Counter::Redirect), 6);
        // Every SYN and datagram above made a connection, the dropped and the answered ones too
        // (IPVS creates it before transmitting).
        assert_eq!(rig.counter(Counter::NewConn), 7);
        assert_eq!(rig.counter(Counter::DropUnsupportedForward), 0);
        // The DR miss was reported for lvsd to resolve: next hop 192.0.2.15 on `rs`.
        let m = aya::maps::MapData::from_pin(rig.dp.pins.maps().join(lvs_common::map_names::NEIGH_MISS)).unwrap();
        let m: aya::maps::HashMap<_, lvs_common::fwd::NeighKey, u32> =
            aya::maps::HashMap::try_from(aya::maps::Map::LruHashMap(m)).unwrap();
        let keys: Vec<_> = m.keys().map(Result::unwrap).collect();
        assert_eq!(keys.len(), 1, "{keys:?}");
        assert_eq!(keys[0].addr[0], u32::from_ne_bytes([192, 0, 2, 15]));
    });
}

/// ICMP errors about tracked connections (IPVS `ip_vs_in_icmp` / `ip_vs_out_icmp`): relayed
/// to the real server (NAT rewritten, DR re-addressed, TUN encapsulated) or, from the real
/// servers' side of a NAT connection, to the client; everything else ICMP untouched.
#[test]
fn icmp_error_fixtures() {
    in_netns(Netns::Director, || {
        let mut rig = Rig::new("icmp");
        // NAT real servers on other ports than the virtual ones, so the quoted ports change.
        for (proto, port, rport) in [(Protocol::Tcp, 80, 8000), (Protocol::Udp, 53, 5353)] {
            let key = ServiceKey::Addr { protocol: proto, addr: IpAddr::from(VIP), port };
            rig.vs.add_service(&mut rig.tables, ServiceSpec::new(key, "rr")).unwrap();
            rig.vs.add_dest(&mut rig.tables, &key, DestSpec::new(IpAddr::from(RS1), rport, Forward::Masq, 1)).unwrap();
        }
        rig.service_fwd(Protocol::Tcp, 81, &[RS2], Forward::Route);
        rig.service_fwd(Protocol::Tcp, 8080, &[RS1], Forward::Tunnel);
        const DIRECTOR_RS_IP: [u8; 4] = [192, 0, 2, 1];
        const ROUTER_CL: [u8; 4] = [198, 51, 100, 254];
        const ROUTER_RS: [u8; 4] = [192, 0, 2, 254];

        // The connections the errors are about.
        for (f, what) in [
            (tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 40000, 80, SYN), "NAT TCP"),
            (udp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 5300, 53), "NAT UDP"),
            (tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 40001, 81, SYN), "DR"),
            (tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 40002, 8080, SYN), "TUN"),
        ] {
            assert_eq!(rig.run(&f).0, XDP_REDIRECT, "{what} connection not created");
        }
        let mtu1400 = [0, 0, 0x05, 0x78];
        let ttl63 = |mut o: Vec<u8>| {
            o[14 + 8] = 63;
            o[14 + 10] = 0;
            o[14 + 11] = 0;
            let c = lvs_common::csum::checksum(&o[14..34]);
            o[14 + 10..14 + 12].copy_from_slice(&c.to_ne_bytes());
            o
        };
        // What the director sent to the client (the NAT reply, VIP:80 -> client) and to rs1
        // (client -> rs1:53), as the errors quote them.
        let nat_reply = frames::quote_of(&tcp_frame(CLIENT_MAC, DIRECTOR_CL_MAC, Ip::new(VIP, CLIENT).with_ttl(63), 80, 40000, ACK));
        let nat_udp_out = frames::quote_of(&udp_frame(RS1_MAC, DIRECTOR_RS_MAC, Ip::new(CLIENT, RS1).with_ttl(63), 5300, 5353));
        let nat_tcp_out = frames::quote_of(&tcp_frame(RS1_MAC, DIRECTOR_RS_MAC, Ip::new(CLIENT, RS1).with_ttl(63), 40000, 8000, ACK));
        let dr_reply = frames::quote_of(&tcp_frame(CLIENT_MAC, RS2_MAC, Ip::new(VIP, CLIENT), 81, 40001, ACK));
        let tun_reply = frames::quote_of(&tcp_frame(CLIENT_MAC, RS1_MAC, Ip::new(VIP, CLIENT), 8080, 40002, ACK));
        let udp_reply = frames::quote_of(&udp_frame(CLIENT_MAC, DIRECTOR_CL_MAC, Ip::new(VIP, CLIENT), 53, 5300));

        let err = |dmac, smac, ip: Ip, ty, code, rest, q: &[u8]| frames::icmp_error_frame(dmac, smac, &ip, ty, code, rest, q);
        let dr_in = err(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(ROUTER_CL, VIP), 3, 4, mtu1400, &dr_reply);
        let tun_in = err(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(ROUTER_CL, VIP), 11, 0, [0; 4], &tun_reply);
        let mut echo = frames::frame(DIRECTOR_IN_MAC, CLIENT_MAC, &Ip::new(CLIENT, VIP), 1, vec![8, 0, 0xf7, 0xfe, 0, 1, 0, 0]);
        let c = lvs_common::csum::checksum(&echo[34..]);
        echo[36..38].copy_from_slice(&c.to_ne_bytes());

        let fixtures = vec![
            Fixture {
                name: "NAT, client side: fragmentation needed about VIP:80 -> client goes to rs1, quoting rs1:8000 as the source",
                input: err(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(ROUTER_CL, VIP), 3, 4, mtu1400, &nat_reply),
                verdict: XDP_REDIRECT,
                output: Some(err(
                    RS1_MAC,
                    DIRECTOR_RS_MAC,
                    Ip::new(ROUTER_CL, RS1).with_ttl(63),
                    3,
                    4,
                    mtu1400,
                    &frames::requote(&nat_reply, Some((RS1, 8000)), None),
                )),
            },
            Fixture {
                name: "NAT, client side: port unreachable about a UDP reply, the quoted UDP checksum left as it was",
                input: err(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 3, 3, [0; 4], &udp_reply),
                verdict: XDP_REDIRECT,
                output: Some(err(
                    RS1_MAC,
                    DIRECTOR_RS_MAC,
                    Ip::new(CLIENT, RS1).with_ttl(63),
                    3,
                    3,
                    [0; 4],
                    &frames::requote(&udp_reply, Some((RS1, 5353)), None),
                )),
            },
            Fixture {
                name: "NAT, server side: rs1's port unreachable about client -> rs1:5353 reaches the client from the VIP, quoting VIP:53",
                input: err(DIRECTOR_RS_MAC, RS1_MAC, Ip::new(RS1, CLIENT), 3, 3, [0; 4], &nat_udp_out),
                verdict: XDP_REDIRECT,
                output: Some(err(
                    CLIENT_MAC,
                    DIRECTOR_CL_MAC,
                    Ip::new(VIP, CLIENT).with_ttl(63),
                    3,
                    3,
                    [0; 4],
                    &frames::requote(&nat_udp_out, None, Some((VIP, 53))),
                )),
            },
            Fixture {
                name: "NAT, server side: a router's fragmentation needed also leaves with the VIP as its source (as ip_vs_nat_icmp)",
                input: err(DIRECTOR_RS_MAC, RS1_MAC, Ip::new(ROUTER_RS, CLIENT), 3, 4, mtu1400, &nat_tcp_out),
                verdict: XDP_REDIRECT,
                output: Some(err(
                    CLIENT_MAC,
                    DIRECTOR_CL_MAC,
                    Ip::new(VIP, CLIENT).with_ttl(63),
                    3,
                    4,
                    mtu1400,
                    &frames::requote(&nat_tcp_out, None, Some((VIP, 80))),
                )),
            },
            Fixture {
                name: "DR, client side: the error goes to rs2's MAC, addresses unchanged, TTL 63",
                input: dr_in.clone(),
                verdict: XDP_REDIRECT,
                output: Some({
                    let mut o = ttl63(dr_in);
                    o[0..6].copy_from_slice(&RS2_MAC);
                    o[6..12].copy_from_slice(&DIRECTOR_RS_MAC);
                    o
                }),
            },
            Fixture {
                name: "TUN, client side: time exceeded encapsulated to rs1 as any packet of the connection",
                input: tun_in.clone(),
                verdict: XDP_REDIRECT,
                output: Some(frames::ipip_frame(RS1_MAC, DIRECTOR_RS_MAC, DIRECTOR_RS_IP, RS1, 63, 0, &ttl63(tun_in))),
            },
            Fixture {
                name: "error about a flow we do not track passes untouched",
                input: err(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(ROUTER_CL, VIP), 3, 4, mtu1400, &frames::requote(&nat_reply, None, Some((CLIENT, 40999)))),
                verdict: XDP_PASS,
                output: None,
            },
            Fixture {
                name: "parameter problem about a tracked flow passes untouched (IPVS relays only unreachable, quench, time exceeded)",
                input: err(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(ROUTER_CL, VIP), 12, 0, [0; 4], &nat_reply),
                verdict: XDP_PASS,
                output: None,
            },
            Fixture {
                name: "server-side error addressed elsewhere than the quoted source passes untouched",
                input: err(DIRECTOR_RS_MAC, RS1_MAC, Ip::new(RS1, ROUTER_CL), 3, 3, [0; 4], &nat_udp_out),
                verdict: XDP_PASS,
                output: None,
            },
            Fixture { name: "echo request to the VIP passes untouched", input: echo, verdict: XDP_PASS, output: None },
        ];
        let hits = rig.counter(Counter::ConnHit);
        check(&mut rig, fixtures);
        // The six relayed errors each found their connection.
        assert_eq!(rig.counter(Counter::ConnHit) - hits, 6);
    });
}

/// ICMP port unreachable within the kernel's global budget (`icmp_msgs_burst` 50, then
/// `icmp_msgs_per_sec` 1000): a flood of SYNs to a service whose real servers are all
/// quiesced gets 50 answers at once, then about one per millisecond, the rest dropped and
/// counted. The thread is pinned to one CPU, so one per-CPU bucket serves every run.
#[test]
fn port_unreachable_within_the_icmp_budget() {
    in_netns(Netns::Director, || {
        // SAFETY: a zeroed cpu_set_t with CPU 0 set, for this thread only.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set), 0);
        }
        let mut rig = Rig::new("icmp-budget");
        let key = ServiceKey::Addr { protocol: Protocol::Tcp, addr: IpAddr::from(VIP), port: 80 };
        rig.vs.add_service(&mut rig.tables, ServiceSpec::new(key, "rr")).unwrap();
        let quiesced = DestSpec::new(IpAddr::from(RS1), 80, Forward::Masq, 0);
        rig.vs.add_dest(&mut rig.tables, &key, quiesced).unwrap();
        const N: u64 = 1000;
        let t0 = std::time::Instant::now();
        let mut answered = 0;
        for i in 0..N {
            let syn = tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 20000 + i as u16, 80, SYN);
            let (v, out) = rig.run(&syn);
            if v == XDP_REDIRECT {
                assert_eq!(hex(&out), hex(&frames::icmp_port_unreachable(&syn)));
                answered += 1;
            } else {
                assert_eq!(v, XDP_DROP, "SYN {i} over the budget");
            }
        }
        let took_ms = t0.elapsed().as_millis() as u64;
        // The burst, plus one credit per millisecond the loop took; the slack is the partial
        // millisecond and the granularity of the dataplane's clock (a coarse one ticks at the
        // kernel's HZ, every 4 ms at 250).
        assert!(answered >= 50 && answered <= 50 + took_ms + 5, "{answered} answered in {took_ms} ms");
        assert_eq!(rig.counter(Counter::TxIcmpUnreachable), answered);
        assert_eq!(rig.counter(Counter::DropIcmpRateLimited), N - answered);
        // A second later the burst is back.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let again = (0..60u16)
            .filter(|i| rig.run(&tcp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), 30000 + i, 80, SYN)).0 == XDP_REDIRECT)
            .count();
        assert!((50..=55).contains(&again), "{again} answered after a second of quiet");
    });
}

/// The two IPv4 fragments of `full` (an Ethernet/IPv4 frame without options) with
/// identification `id`, split after `first` bytes of its payload (a multiple of 8): the first
/// with MF, the second at offset `first`; full header checksums.
fn fragments(full: &[u8], id: u16, first: usize) -> (Vec<u8>, Vec<u8>) {
    let part = |frag: u16, data: &[u8]| {
        let mut h = full[14..34].to_vec();
        h[2..4].copy_from_slice(&((20 + data.len()) as u16).to_be_bytes());
        h[4..6].copy_from_slice(&id.to_be_bytes());
        h[6..8].copy_from_slice(&frag.to_be_bytes());
        h[10..12].copy_from_slice(&[0, 0]);
        let c = lvs_common::csum::checksum(&h);
        h[10..12].copy_from_slice(&c.to_ne_bytes());
        let mut f = full[..14].to_vec();
        f.extend_from_slice(&h);
        f.extend_from_slice(data);
        f
    };
    let payload = &full[34..];
    (part(0x2000, &payload[..first]), part((first / 8) as u16, &payload[first..]))
}

/// Fragmented UDP datagrams: the first fragment takes the normal path and is rewritten in full
/// (its UDP checksum covers the whole datagram), the later one follows it to the same real
/// server by the same method with only its IP header changed, in NAT (both ways), DR and TUN;
/// a later fragment whose first was not seen goes to the stack untouched.
#[test]
fn fragment_fixtures() {
    in_netns(Netns::Director, || {
        let mut rig = Rig::new("frag");
        // rr over rs2, rs1 (newest first).
        rig.service(Protocol::Udp, 53, &[RS1, RS2]);
        rig.service_fwd(Protocol::Udp, 54, &[RS1], Forward::Route);
        rig.service_fwd(Protocol::Udp, 55, &[RS2], Forward::Tunnel);
        const DIRECTOR_RS_IP: [u8; 4] = [192, 0, 2, 1];

        // 64 bytes of payload: 72 of UDP, cut after 32 (the UDP header and 24 bytes).
        let data: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        let nodf = |src: [u8; 4], dst: [u8; 4], ttl: u8| {
            let mut ip = Ip::new(src, dst).with_ttl(ttl);
            ip.frag = 0;
            ip
        };
        // The datagram `src:sport -> dst:dport` between the given MACs, in two fragments.
        let dgram = |dmac, smac, src, dst, ttl, sport, dport, id| {
            fragments(&frames::udp_frame(dmac, smac, nodf(src, dst, ttl), sport, dport, &data), id, 32)
        };
        let to_vip = |sport, dport, id| dgram(DIRECTOR_IN_MAC, CLIENT_MAC, CLIENT, VIP, 64, sport, dport, id);
        let (miss_first, miss_later) = to_vip(40000, 53, 0x0101);
        let _ = miss_first;
        let (a1, a2) = to_vip(40000, 53, 0x0101);
        let (a1_out, a2_out) = dgram(RS2_MAC, DIRECTOR_RS_MAC, CLIENT, RS2, 63, 40000, 53, 0x0101);
        let (b1, b2) = to_vip(40001, 53, 0x0202);
        let (b1_out, b2_out) = dgram(RS1_MAC, DIRECTOR_RS_MAC, CLIENT, RS1, 63, 40001, 53, 0x0202);
        let (r1, r2) = dgram(DIRECTOR_RS_MAC, RS2_MAC, RS2, CLIENT, 64, 53, 40000, 0x0303);
        let (r1_out, r2_out) = dgram(CLIENT_MAC, DIRECTOR_CL_MAC, VIP, CLIENT, 63, 53, 40000, 0x0303);
        let (d1, d2) = to_vip(40002, 54, 0x0404);
        // DR: the addresses stay, only the MACs and the TTL change.
        let (d1_out, d2_out) = dgram(RS1_MAC, DIRECTOR_RS_MAC, CLIENT, VIP, 63, 40002, 54, 0x0404);
        let (t1, t2) = to_vip(40003, 55, 0x0505);
        let (t1_in63, t2_in63) = dgram(DIRECTOR_IN_MAC, CLIENT_MAC, CLIENT, VIP, 63, 40003, 55, 0x0505);
        // TUN: each fragment in its own outer header (no DF: the outer ID is the inner one).
        let tun = |inner: &[u8]| frames::ipip_frame(RS2_MAC, DIRECTOR_RS_MAC, DIRECTOR_RS_IP, RS2, 63, 0x0505, inner);
        // A last fragment of a single byte (57 bytes of payload, 65 of UDP, cut after 64).
        let tiny = |dmac, smac, dst, ttl| {
            fragments(&frames::udp_frame(dmac, smac, nodf(CLIENT, dst, ttl), 40004, 53, &data[..57]), 0x0606, 64)
        };
        let (s1, s2) = tiny(DIRECTOR_IN_MAC, CLIENT_MAC, VIP, 64);
        let (s1_out, s2_out) = tiny(RS2_MAC, DIRECTOR_RS_MAC, RS2, 63);

        let fixtures = vec![
            Fixture { name: "a later fragment whose first was not seen passes untouched", input: miss_later, verdict: XDP_PASS, output: None },
            Fixture { name: "NAT: first fragment goes to rs2, ports and the whole datagram's checksum rewritten", input: a1, verdict: XDP_REDIRECT, output: Some(a1_out) },
            Fixture { name: "NAT: its later fragment follows to rs2, only the destination and header checksum change", input: a2, verdict: XDP_REDIRECT, output: Some(a2_out) },
            Fixture { name: "NAT: another datagram from another port goes to rs1 (rr)", input: b1, verdict: XDP_REDIRECT, output: Some(b1_out) },
            Fixture { name: "NAT: its later fragment follows to rs1", input: b2, verdict: XDP_REDIRECT, output: Some(b2_out) },
            Fixture { name: "NAT: a fragmented reply from rs2: the first comes from VIP:53", input: r1, verdict: XDP_REDIRECT, output: Some(r1_out) },
            Fixture { name: "NAT: the reply's later fragment comes from the VIP too", input: r2, verdict: XDP_REDIRECT, output: Some(r2_out) },
            Fixture { name: "DR: first fragment to rs1's MAC, TTL 63", input: d1, verdict: XDP_REDIRECT, output: Some(d1_out) },
            Fixture { name: "DR: its later fragment, same", input: d2, verdict: XDP_REDIRECT, output: Some(d2_out) },
            Fixture { name: "TUN: first fragment encapsulated towards rs2", input: t1, verdict: XDP_REDIRECT, output: Some(tun(&t1_in63)) },
            Fixture { name: "TUN: its later fragment encapsulated the same way", input: t2, verdict: XDP_REDIRECT, output: Some(tun(&t2_in63)) },
            Fixture { name: "NAT: a third datagram goes to rs2 (rr)", input: s1, verdict: XDP_REDIRECT, output: Some(s1_out) },
            Fixture { name: "NAT: its one-byte last fragment follows", input: s2, verdict: XDP_REDIRECT, output: Some(s2_out) },
        ];
        check(&mut rig, fixtures);
        assert_eq!(rig.counter(Counter::PassFragment), 1);
        assert_eq!(rig.counter(Counter::FragTracked), 6);
        assert_eq!(rig.counter(Counter::FragHit), 6);
        assert_eq!(rig.counter(Counter::Redirect), 12);
        assert_eq!(rig.counter(Counter::NewConn), 5);
    });
}

/// `--pe sip`: the Call-ID search in `lvs_xdp_sip` and the way back into `lvs_xdp` (both
/// through `XDP_PROGS`, as in production), on real SIP requests. One call goes to one real
/// server whatever the client's port, in either header form; another call is scheduled
/// afresh; a request without a Call-ID, and a TCP SYN to such a service, are dropped as the
/// kernel drops them (its engine's fill_param fails).
#[test]
fn sip_persistence_engine_fixtures() {
    in_netns(Netns::Director, || {
        let mut rig = Rig::new("sip");
        for proto in [Protocol::Udp, Protocol::Tcp] {
            let port = if proto == Protocol::Udp { 5060 } else { 80 };
            let key = ServiceKey::Addr { protocol: proto, addr: IpAddr::from(VIP), port };
            let mut spec = ServiceSpec::new(key, "rr");
            spec.flags = lvs_userspace::model::svc_flags::PERSISTENT;
            spec.timeout = 60;
            spec.pe = Some("sip".to_string());
            rig.vs.add_service(&mut rig.tables, spec).unwrap();
            for s in [RS1, RS2] {
                rig.vs.add_dest(&mut rig.tables, &key, DestSpec::new(IpAddr::from(s), port, Forward::Masq, 1)).unwrap();
            }
        }
        let sip = |sport: u16, header: &str| {
            format!(
                "INVITE sip:bob@203.0.113.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.2:{sport}\r\n\
                 From: <sip:alice@198.51.100.2>;tag=1928301774\r\nTo: <sip:bob@203.0.113.10>\r\n\
                 {header}\r\nCSeq: 314159 INVITE\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes()
        };
        let dgram = |sport, payload: &[u8]| frames::udp_frame(DIRECTOR_IN_MAC, CLIENT_MAC, Ip::new(CLIENT, VIP), sport, 5060, payload);
        let to = |mac, rs, sport, payload: &[u8]| {
            Some(frames::udp_frame(mac, DIRECTOR_RS_MAC, with_ttl(Ip::new(CLIENT, rs), 63), sport, 5060, payload))
        };
        let (a1, a2, a3) = (sip(5070, "Call-ID: a84b4c76e66710@pc33.example.com"), sip(5071, "Call-ID: a84b4c76e66710@pc33.example.com"), sip(5073, "i: a84b4c76e66710@pc33.example.com"));
        let b = sip(5072, "call-id:   f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
        let none = sip(5074, "Subject: no call id");
        let in_request_line = b"OPTIONS sip:Call-ID:x SIP/2.0\r\n\r\n".to_vec();
        let fixtures = vec![
            Fixture { name: "call A from port 5070: scheduled (rs2)", input: dgram(5070, &a1), verdict: XDP_REDIRECT, output: to(RS2_MAC, RS2, 5070, &a1) },
            Fixture { name: "call A from port 5071: its template (rs2)", input: dgram(5071, &a2), verdict: XDP_REDIRECT, output: to(RS2_MAC, RS2, 5071, &a2) },
            Fixture { name: "call B from port 5072: scheduled (rs1)", input: dgram(5072, &b), verdict: XDP_REDIRECT, output: to(RS1_MAC, RS1, 5072, &b) },
            Fixture { name: "call A, compact i:, port 5073 (rs2)", input: dgram(5073, &a3), verdict: XDP_REDIRECT, output: to(RS2_MAC, RS2, 5073, &a3) },
            Fixture { name: "no Call-ID: dropped", input: dgram(5074, &none), verdict: XDP_DROP, output: None },
            Fixture { name: "Call-ID only in the request line: dropped", input: dgram(5075, &in_request_line), verdict: XDP_DROP, output: None },
            Fixture { name: "call A again on 5070: its connection (rs2)", input: dgram(5070, &a1), verdict: XDP_REDIRECT, output: to(RS2_MAC, RS2, 5070, &a1) },
        ];
        check(&mut rig, fixtures);
        assert_eq!(rig.counter(Counter::DropSipNoCallId), 2);
        assert_eq!(rig.counter(Counter::NewConn), 4);
        // A TCP service with the engine: every new connection is dropped.
        assert_eq!(rig.schedule_syn(40000), None);
        assert_eq!(rig.counter(Counter::DropSipNoCallId), 3);
        // Two templates, each with its Call-ID for the listing, and no plain one.
        let templates: Vec<_> = rig.tables.templates.keys().filter_map(Result::ok).collect();
        assert_eq!(templates.len(), 2, "{templates:?}");
        let mut ids: Vec<String> = templates
            .iter()
            .map(|k| {
                assert_ne!(lvs_common::sip::key_mark(k), 0, "a sip template's key carries the Call-ID hash");
                let c = rig.tables.sip_callids.get(k, 0).expect("Call-ID recorded with the template");
                String::from_utf8(c.bytes().to_vec()).unwrap()
            })
            .collect();
        ids.sort();
        assert_eq!(ids, ["a84b4c76e66710@pc33.example.com", "f81d4fae-7dec-11d0-a765-00a0c91e6bf6"]);
        // A restarted lvsd reads the engine back from the maps (`svc_conf_flags::PE_SIP`).
        let again = VirtualServers::recover(&rig.tables).unwrap();
        let pes: Vec<_> = again.specs().into_iter().map(|(s, _)| s.pe).collect();
        assert_eq!(pes, [Some("sip".to_string()), Some("sip".to_string())]);
    });
}
