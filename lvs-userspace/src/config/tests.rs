use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use lvs_common::{
    service::MAX_DESTS_PER_SVC,
    tcp_state::{DEFAULT_TIMEOUTS, ESTABLISHED, FIN_WAIT, TIME_WAIT, UDP},
};

use super::*;
use crate::model::{svc_flags, Forward, Protocol, ServiceKey};

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

/// The whole error text for `text`, as lvsd would print it.
fn error(text: &str) -> String {
    match parse(text, "t.yaml") {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e.to_string(),
    }
}

/// A configuration with one service (given as YAML lines indented for the list) around it.
fn with_service(service: &str) -> String {
    format!("interfaces: [eth0]\nservices:\n{service}")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn every_example_parses() {
    let mut seen = 0;
    for entry in std::fs::read_dir(configs_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            if let Err(e) = load(&path) {
                panic!("{e}");
            }
            seen += 1;
        }
    }
    assert!(seen >= 3, "only {seen} examples found");
}

#[test]
fn demo_config() {
    let c = load(&configs_dir().join("demo.yaml")).unwrap();
    assert_eq!(c.interfaces, ["to-clients", "to-servers"]);
    assert_eq!(c.xdp_mode, XdpMode::Auto);
    assert_eq!(c.services.len(), 2);
    let udp = &c.services[1];
    assert_eq!(
        udp.spec.key,
        ServiceKey::Addr {
            protocol: Protocol::Udp,
            addr: ip("203.0.113.10"),
            port: 53
        }
    );
    // The real server's port defaults to the service's.
    assert_eq!(
        udp.dests[0],
        DestSpec::new(ip("192.0.2.11"), 53, Forward::Masq, 1)
    );
    assert_eq!(
        udp.location,
        Location {
            line: 35,
            column: 5
        }
    );
    assert_eq!(
        udp.dest_locations,
        [
            Location {
                line: 40,
                column: 9
            },
            Location {
                line: 42,
                column: 9
            }
        ]
    );
}

#[test]
fn interfaces_only_is_valid_with_defaults() {
    let c = parse("interfaces: [eth0, eth1]\n", "m.yaml").unwrap();
    assert_eq!(c.interfaces, ["eth0", "eth1"]);
    assert_eq!(c.xdp_mode, XdpMode::Auto);
    assert_eq!(
        c.connection_table_size,
        lvs_common::flow::DEFAULT_CONN_TABLE_SIZE
    );
    assert_eq!(c.timeouts, DEFAULT_TIMEOUTS);
    assert_eq!(c.timeouts_named, [false; 12]);
    assert!(c.services.is_empty());
    assert_eq!(c.source, "m.yaml");
}

#[test]
fn reference_values() {
    let c = load(&configs_dir().join("reference.yaml")).unwrap();
    let web = &c.services[0];
    assert_eq!(web.spec.scheduler, "wrr");
    let d = &web.dests[0];
    assert_eq!(
        (d.port, d.forward, d.weight, d.u_threshold, d.l_threshold),
        (8080, Forward::Masq, 3, 1000, 800)
    );
    assert_eq!(web.dests[1].forward, Forward::Masq);

    let dr = &c.services[1];
    assert_eq!(dr.spec.flags, svc_flags::PERSISTENT);
    assert_eq!(dr.spec.timeout, 600);
    assert_eq!(dr.spec.netmask, 0xffff_ff00);
    assert_eq!(dr.dests[0].forward, Forward::Route);
    assert_eq!(dr.dests[0].port, 443);
    assert_eq!(dr.dests[1].forward, Forward::Tunnel);

    let v6 = &c.services[3];
    assert_eq!(v6.spec.netmask, 64);
    assert_eq!(v6.dests[1].weight, 0);
    let fwm = &c.services[4];
    assert_eq!(fwm.spec.key, ServiceKey::Fwmark { mark: 1, ipv6: false });
    assert_eq!((fwm.dests[0].port, fwm.dests[1].port), (0, 8443));
    assert_eq!(c.services[5].spec.scheduler, "wlc");
    assert_eq!(c.services[5].spec.flags, svc_flags::ONEPACKET);
    assert!(c.services[5].dests.is_empty());
    let sip = &c.services[6];
    assert_eq!((sip.spec.pe.as_deref(), sip.spec.flags, sip.spec.timeout), (Some("sip"), svc_flags::PERSISTENT, 60));

    let marks: Vec<_> =
        c.classifier.iter().map(|r| (r.mark, r.prefix_len, r.protocol, r.ports)).collect();
    assert_eq!(
        marks,
        [
            (1, 32, Some(Protocol::Tcp), (80, 80)),
            (1, 32, Some(Protocol::Tcp), (443, 443)),
            (2, 29, None, (5000, 5099)),
            (3, 48, None, (0, 65535))
        ]
    );
}

#[test]
fn persistence_engine_sip_on_persistent_udp_services() {
    let c = parse(&with_service("  - {protocol: udp, address: 192.0.2.1, port: 5060, persistent: 30, persistence_engine: sip}
"), "t.yaml").unwrap();
    assert_eq!(c.services[0].spec.pe.as_deref(), Some("sip"));
    assert_eq!(
        error(&with_service("  - {protocol: udp, address: 192.0.2.1, port: 5060, persistent: 30, persistence_engine: sipp}\n")),
        "t.yaml:3:89: unknown persistence_engine 'sipp'\n  hint: did you mean 'sip'?"
    );
    assert_eq!(
        error(&with_service("  - protocol: udp\n    address: 192.0.2.1\n    port: 5060\n    persistence_engine: sip\n")),
        "t.yaml:6:5: persistence_engine is only meaningful for a persistent service\n  hint: add 'persistent: SECONDS' or remove persistence_engine"
    );
    assert_eq!(
        error(&with_service("  - protocol: tcp\n    address: 192.0.2.1\n    port: 5060\n    persistent: 30\n    persistence_engine: sip\n")),
        "t.yaml:7:5: persistence_engine sip is only for UDP services (SIP over TCP is not looked into)\n  hint: remove persistence_engine, or make the service 'protocol: udp'"
    );
    assert_eq!(
        error(&with_service("  - protocol: udp\n    address: 2001:db8::1\n    port: 5060\n    persistent: 30\n    persistence_engine: sip\n")),
        "t.yaml:7:5: persistence_engine on an IPv6 service is not supported by lvsd yet\n  hint: the Call-ID search runs for IPv4 services only"
    );
}

#[test]
fn one_packet_only_for_udp() {
    let c = parse(&with_service("  - {protocol: udp, address: 192.0.2.1, port: 53, one_packet: true}
"), "t.yaml").unwrap();
    assert_eq!(c.services[0].spec.flags, svc_flags::ONEPACKET);
    let c = parse(&with_service("  - {protocol: udp, address: 192.0.2.1, port: 53, one_packet: false}
"), "t.yaml").unwrap();
    assert_eq!(c.services[0].spec.flags, 0);
    assert_eq!(
        error(&with_service("  - protocol: tcp\n    address: 192.0.2.1\n    port: 80\n    one_packet: true\n")),
        "t.yaml:6:5: one_packet (ipvsadm -o) is only for UDP services\n  hint: remove one_packet, or make the service 'protocol: udp'"
    );
    assert_eq!(
        error(&with_service("  - {protocol: udp, address: 192.0.2.1, port: 53, one_packet: yes}\n")),
        "t.yaml:3:63: unknown one_packet 'yes'\n  hint: choose one of true, false"
    );
}

#[test]
fn timeouts_by_ipvsadm_and_state_names() {
    let c = parse(
        "interfaces: [e]\ntimeouts: {tcp: 100, tcpfin: 50, udp: 30, time_wait: 5}\n",
        "t",
    )
    .unwrap();
    let mut want = DEFAULT_TIMEOUTS;
    want[ESTABLISHED as usize] = 100;
    want[FIN_WAIT as usize] = 50;
    want[UDP as usize] = 30;
    want[TIME_WAIT as usize] = 5;
    assert_eq!(c.timeouts, want);
    // Only the named states are marked: a reload leaves the others alone.
    let named: Vec<usize> = (0..12).filter(|&i| c.timeouts_named[i]).collect();
    assert_eq!(named, [ESTABLISHED as usize, FIN_WAIT as usize, TIME_WAIT as usize, UDP as usize]);
}

#[test]
fn forward_aliases_and_xdp_modes() {
    let c = parse(
        &format!(
            "xdp_mode: generic\n{}",
            with_service(
                "  - {protocol: tcp, address: 192.0.2.1, port: 80, real_servers: [\
                 {address: 192.0.2.2, forward: dr}, {address: 192.0.2.3, forward: ipip}, \
                 {address: 192.0.2.4, forward: nat, port: 81}]}\n"
            )
        ),
        "t",
    )
    .unwrap();
    assert_eq!(c.xdp_mode, XdpMode::Generic);
    let f: Vec<Forward> = c.services[0].dests.iter().map(|d| d.forward).collect();
    assert_eq!(f, [Forward::Route, Forward::Tunnel, Forward::Masq]);
}

#[test]
fn quoted_ipv6_and_aliases() {
    // Real servers shared through an anchor; a quoted IPv6 address.
    let c = parse(
        "interfaces: [e]\nservices:\n\
         \x20 - {protocol: udp, address: \"2001:db8::1\", port: 53, real_servers: &rs [{address: '2001:db8::2'}]}\n\
         \x20 - {protocol: tcp, address: \"2001:db8::1\", port: 53, real_servers: *rs}\n",
        "t",
    )
    .unwrap();
    assert_eq!(c.services[1].dests, c.services[0].dests);
    assert_eq!(c.services[1].dests[0].addr, ip("2001:db8::2"));
    // A copied service is located at the alias.
    assert_eq!(
        error("interfaces: [e]\nservices:\n  - &svc {protocol: udp, address: \"2001:db8::1\", port: 53}\n  - *svc\n"),
        "t.yaml:4:5: service UDP [2001:db8::1]:53 is defined twice\n  hint: first defined at line 3"
    );
}

#[test]
fn daemon_errors_at_a_service() {
    let c = load(&configs_dir().join("demo.yaml")).unwrap();
    let e = c.error_at(
        c.services[0].location,
        "scheduler 'rr' is not implemented by this dataplane yet",
    );
    assert!(e
        .to_string()
        .ends_with("demo.yaml:19:5: scheduler 'rr' is not implemented by this dataplane yet"));
    let e = ConfigError::at("x.yaml", Location { line: 3, column: 7 }, "bad").with_hint("fix it");
    assert_eq!(e.to_string(), "x.yaml:3:7: bad\n  hint: fix it");
}

// One test per class of error, each asserting the exact text.

#[test]
fn unreadable_file() {
    let e = load(Path::new("/nonexistent/lvs.yaml"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "/nonexistent/lvs.yaml: cannot read: No such file or directory (os error 2)"
    );
}

#[test]
fn not_utf8() {
    let dir = std::env::temp_dir().join(format!("lvs-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("latin1.yaml");
    std::fs::write(&path, b"interfaces: [caf\xe9]\n").unwrap();
    let e = load(&path).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        e.message,
        "cannot read: not UTF-8 text (invalid byte at offset 16)"
    );
    assert_eq!(e.location, None);
}

#[test]
fn empty_file() {
    let hint = "\n  hint: it needs at least the interfaces to attach to, e.g. 'interfaces: [eth0]'";
    assert_eq!(
        error(""),
        format!("t.yaml: the configuration is empty{hint}")
    );
    assert_eq!(
        error("# only a comment\n"),
        format!("t.yaml: the configuration is empty{hint}")
    );
    assert_eq!(
        error("---\n...\n"),
        format!("t.yaml: the configuration is empty{hint}")
    );
}

#[test]
fn not_a_mapping() {
    assert_eq!(
        error("- eth0\n- eth1\n"),
        "t.yaml:1:1: the configuration must be a mapping of keys such as 'interfaces:', found a list"
    );
    assert_eq!(
        error("eth0\n"),
        "t.yaml:1:1: the configuration must be a mapping of keys such as 'interfaces:', found 'eth0'"
    );
}

#[test]
fn yaml_syntax_error() {
    assert_eq!(
        error("interfaces: [eth0\nxdp_mode: auto\n"),
        "t.yaml:2:9: YAML syntax error: illegal placement of ':' indicator"
    );
    assert_eq!(
        error("interfaces:\n\t- eth0\n"),
        "t.yaml:2:2: YAML syntax error: tabs disallowed within this context (block indentation)\n  \
         hint: indent with spaces; YAML does not allow tabs for indentation"
    );
    assert_eq!(
        error("interfaces: [a]\nservices:\n  - protocol: tcp\n   address: 192.0.2.1\n"),
        "t.yaml:4:4: YAML syntax error: while parsing a block collection, did not find expected '-' indicator\n  \
         hint: check the indentation of this line against the lines above it"
    );
    assert_eq!(
        error("interfaces: 'eth0\n"),
        "t.yaml:1:13: YAML syntax error: while scanning a quoted scalar, found unexpected end of stream"
    );
}

#[test]
fn second_document() {
    assert_eq!(
        error("interfaces: [a]\n---\ninterfaces: [b]\n"),
        "t.yaml:2:1: a second YAML document is not allowed here\n  hint: a configuration is one document; remove the extra '---'"
    );
}

#[test]
fn duplicate_key() {
    assert_eq!(
        error("interfaces: [a]\nxdp_mode: auto\nxdp_mode: native\n"),
        "t.yaml:3:1: key 'xdp_mode' is given twice\n  hint: first given at line 2"
    );
}

#[test]
fn tags_are_refused() {
    assert_eq!(
        error("interfaces: [a]\nconnection_table_size: !!int 5\n"),
        "t.yaml:2:24: YAML tags such as '!!int' are not supported\n  hint: write the value without a tag"
    );
}

#[test]
fn unknown_key_with_hint() {
    assert_eq!(
        error("interfaces: [a]\nxdp-mode: auto\n"),
        "t.yaml:2:1: unknown key 'xdp-mode' in the configuration\n  hint: did you mean 'xdp_mode'?"
    );
    assert_eq!(
        error(&with_service("  - protocol: tcp\n    adress: 192.0.2.1\n")),
        "t.yaml:4:5: unknown key 'adress' in a service\n  hint: did you mean 'address'?"
    );
    assert_eq!(
        error(&with_service(
            "  - protocol: tcp\n    address: 192.0.2.1\n    port: 80\n    backends: []\n"
        )),
        "t.yaml:6:5: unknown key 'backends' in a service\n  hint: did you mean 'real_servers'?"
    );
    assert_eq!(
        error(&with_service(
            "  - {protocol: tcp, address: 192.0.2.1, port: 80, real_servers: [{address: 192.0.2.2, wieght: 2}]}\n"
        )),
        "t.yaml:3:87: unknown key 'wieght' in a real server\n  hint: did you mean 'weight'?"
    );
}

#[test]
fn misplaced_keys() {
    assert_eq!(
        error(&with_service(
            "  - {protocol: tcp, address: 192.0.2.1, port: 80, weight: 2}\n"
        )),
        "t.yaml:3:51: unknown key 'weight' in a service\n  \
         hint: this key belongs to a real server, in the list under 'real_servers:'"
    );
    assert_eq!(
        error("interfaces: [a]\nprotocol: tcp\n"),
        "t.yaml:2:1: unknown key 'protocol' in the configuration\n  \
         hint: this key belongs to a service, in the list under 'services:'"
    );
    assert_eq!(
        error("interfaces: [a]\nudp: 30\n"),
        "t.yaml:2:1: unknown key 'udp' in the configuration\n  hint: timeouts go under 'timeouts:'"
    );
}

#[test]
fn unknown_key_without_near_miss() {
    assert_eq!(
        error("interfaces: [a]\ncolour: blue\n"),
        "t.yaml:2:1: unknown key 'colour' in the configuration\n  hint: the configuration takes: \
         interfaces, xdp_mode, connection_table_size, timeouts, sysctls, classifier, services, metrics_address, sync"
    );
}

#[test]
fn missing_interfaces() {
    assert_eq!(
        error("xdp_mode: auto\n"),
        "t.yaml:1:1: the configuration has no 'interfaces'\n  hint: list the interfaces to attach XDP to, e.g. 'interfaces: [eth0]'"
    );
}

#[test]
fn bad_interfaces() {
    assert_eq!(
        error("interfaces: eth0\n"),
        "t.yaml:1:13: interfaces must be a list, found 'eth0'\n  hint: write 'interfaces: [eth0]'"
    );
    assert_eq!(
        error("interfaces: []\n"),
        "t.yaml:1:13: interfaces is empty\n  hint: list at least one interface to attach XDP to"
    );
    assert_eq!(
        error("interfaces:\n"),
        "t.yaml:1:1: interfaces is empty\n  hint: list at least one interface to attach XDP to"
    );
    assert_eq!(
        error("interfaces: [eth0, a-very-long-ifname]\n"),
        "t.yaml:1:20: interface name 'a-very-long-ifname' is longer than 15 bytes"
    );
    assert_eq!(
        error("interfaces: [eth0, 'eth0 x']\n"),
        "t.yaml:1:20: interface name 'eth0 x' contains '/', ':' or whitespace"
    );
    assert_eq!(
        error("interfaces:\n  - eth0\n  - eth1\n  - eth0\n"),
        "t.yaml:4:5: interface 'eth0' is listed twice\n  hint: first listed at line 2"
    );
}

#[test]
fn bad_xdp_mode() {
    assert_eq!(
        error("interfaces: [a]\nxdp_mode: skb\n"),
        "t.yaml:2:11: unknown xdp_mode 'skb'\n  hint: did you mean 'generic'?"
    );
    assert_eq!(
        error("interfaces: [a]\nxdp_mode: fast\n"),
        "t.yaml:2:11: unknown xdp_mode 'fast'\n  hint: choose one of auto, native, generic"
    );
}

#[test]
fn numbers_wrong_type_and_range() {
    assert_eq!(
        error("interfaces: [a]\nconnection_table_size: 0\n"),
        "t.yaml:2:24: connection_table_size 0 is out of range (1 to 134217728)"
    );
    assert_eq!(
        error("interfaces: [a]\nconnection_table_size: 1e6\n"),
        "t.yaml:2:24: connection_table_size must be a whole number, found '1e6'"
    );
    assert_eq!(
        error("interfaces: [a]\nconnection_table_size: \"1000\"\n"),
        "t.yaml:2:24: connection_table_size must be a number, found quoted text \"1000\"\n  hint: remove the quotes"
    );
    assert_eq!(
        error("interfaces: [a]\nconnection_table_size: [1]\n"),
        "t.yaml:2:24: connection_table_size must be a number, found a list"
    );
    assert_eq!(
        error("interfaces: [a]\nconnection_table_size:\n"),
        "t.yaml:2:1: connection_table_size has no value; give a number from 1 to 134217728"
    );
    assert_eq!(
        error("interfaces: [a]\nconnection_table_size: 99999999999999999999999999999999999999999\n"),
        "t.yaml:2:24: connection_table_size 99999999999999999999999999999999999999999 is out of range (1 to 134217728)"
    );
}

#[test]
fn bad_timeouts() {
    assert_eq!(
        error("interfaces: [a]\ntimeouts:\n  tcp: 900\n  established: 800\n"),
        "t.yaml:4:3: timeouts 'tcp' and 'established' both set the ESTABLISHED timeout\n  hint: give only one of them"
    );
    assert_eq!(
        error("interfaces: [a]\ntimeouts: {fin_wait: 9, tcpfin: 9}\n"),
        "t.yaml:2:25: timeouts 'fin_wait' and 'tcpfin' both set the FIN_WAIT timeout\n  hint: give only one of them"
    );
    assert_eq!(
        error("interfaces: [a]\ntimeouts: {udp: 0}\n"),
        "t.yaml:2:17: udp 0 is out of range (1 to 2678400)"
    );
    assert_eq!(
        error("interfaces: [a]\ntimeouts: {tcp_fin: 10}\n"),
        "t.yaml:2:12: unknown key 'tcp_fin' in timeouts\n  hint: did you mean 'tcpfin'?"
    );
    assert_eq!(
        error("interfaces: [a]\ntimeouts: [900, 120, 300]\n"),
        "t.yaml:2:11: timeouts must be a mapping, found a list\n  hint: write e.g. 'timeouts: {tcp: 900, tcpfin: 120, udp: 300}'"
    );
}

#[test]
fn services_not_a_list() {
    assert_eq!(
        error("interfaces: [a]\nservices:\n  protocol: tcp\n"),
        "t.yaml:3:3: services must be a list, found a mapping\n  hint: start each service with '- '"
    );
    assert_eq!(
        error(&with_service("  - tcp\n")),
        "t.yaml:3:5: a service must be a mapping, found 'tcp'"
    );
}

#[test]
fn service_missing_key() {
    assert_eq!(
        error(&with_service("  - protocol: tcp\n    port: 80\n")),
        "t.yaml:3:5: a service has no 'address'\n  hint: add e.g. 'address: 203.0.113.10'"
    );
    assert_eq!(
        error(&with_service("  - protocol: tcp\n    address: 192.0.2.1\n")),
        "t.yaml:3:5: a service has no 'port'\n  hint: add e.g. 'port: 80'"
    );
}

#[test]
fn bad_protocol_and_scheduler() {
    assert_eq!(
        error(&with_service(
            "  - {protocol: TCP, address: 192.0.2.1, port: 80}\n"
        )),
        "t.yaml:3:16: unknown protocol 'TCP'\n  hint: did you mean 'tcp'?"
    );
    assert_eq!(
        error(&with_service(
            "  - {protocol: sctp, address: 192.0.2.1, port: 80}\n"
        )),
        "t.yaml:3:16: unknown protocol 'sctp'\n  hint: choose one of tcp, udp"
    );
    assert_eq!(
        error(&with_service(
            "  - {protocol: tcp, address: 192.0.2.1, port: 80, scheduler: round_robin}\n"
        )),
        "t.yaml:3:62: unknown scheduler 'round_robin'\n  hint: did you mean 'rr'?"
    );
    assert_eq!(
        error(&with_service("  - {protocol: tcp, address: 192.0.2.1, port: 80, scheduler: fastest}\n")),
        "t.yaml:3:62: unknown scheduler 'fastest'\n  hint: choose one of rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, mh, fo, ovf, twos"
    );
}

#[test]
fn bad_addresses() {
    assert_eq!(
        error(&with_service(
            "  - {protocol: tcp, address: 192.0.2.300, port: 80}\n"
        )),
        "t.yaml:3:30: '192.0.2.300' is not an IPv4 or IPv6 address"
    );
    assert_eq!(
        error(&with_service("  - protocol: tcp\n    address: 192.0.2.1:80\n    port: 80\n")),
        "t.yaml:4:14: '192.0.2.1:80' is not an IPv4 or IPv6 address\n  hint: give the port under 'port:', not in the address"
    );
    assert_eq!(
        error(&with_service("  - protocol: tcp\n    address: [2001:db8::1]\n    port: 80\n")),
        "t.yaml:4:14: address must be an IP address, found a list\n  hint: write IPv6 addresses without brackets"
    );
    assert_eq!(
        error(&with_service("  - protocol: tcp\n    address: 192.0.2.0/24\n    port: 80\n")),
        "t.yaml:4:14: '192.0.2.0/24' is not an IPv4 or IPv6 address\n  hint: give a single address, not a network"
    );
}

#[test]
fn bad_ports() {
    assert_eq!(
        error(&with_service(
            "  - {protocol: tcp, address: 192.0.2.1, port: 65536}\n"
        )),
        "t.yaml:3:47: port 65536 is out of range (0 to 65535)"
    );
    assert_eq!(
        error(&with_service(
            "  - {protocol: tcp, address: 192.0.2.1, port: -1}\n"
        )),
        "t.yaml:3:47: port -1 is out of range (0 to 65535)"
    );
    assert_eq!(
        error(&with_service("  - {protocol: tcp, address: 192.0.2.1, port: 0}\n")),
        "t.yaml:3:47: port 0 is only allowed for a persistent service\n  hint: add 'persistent: SECONDS' for an all-ports service, or give the port"
    );
}

#[test]
fn bad_persistence() {
    assert_eq!(
        error(&with_service("  - {protocol: tcp, address: 192.0.2.1, port: 80, persistent: true}\n")),
        "t.yaml:3:63: persistent must be a whole number, found 'true'\n  hint: give the persistence timeout in seconds (ipvsadm -p defaults to 300)"
    );
    assert_eq!(
        error(&with_service(
            "  - {protocol: tcp, address: 192.0.2.1, port: 80, persistent: 2678401}\n"
        )),
        "t.yaml:3:63: persistent 2678401 is out of range (1 to 2678400)"
    );
    assert_eq!(
        error(&with_service("  - protocol: tcp\n    address: 192.0.2.1\n    port: 80\n    netmask: 255.255.255.0\n")),
        "t.yaml:6:5: netmask is only meaningful for a persistent service\n  hint: add 'persistent: SECONDS' or remove netmask"
    );
    assert_eq!(
        error(&with_service("  - {protocol: tcp, address: 192.0.2.1, port: 80, persistent: 60, netmask: 255.0.255.0}\n")),
        "t.yaml:3:76: netmask 255.0.255.0 is not a valid mask\n  hint: its one-bits must be contiguous from the left, at least one, e.g. 255.255.255.0"
    );
    assert_eq!(
        error(&with_service("  - {protocol: tcp, address: 192.0.2.1, port: 80, persistent: 60, netmask: 24}\n")),
        "t.yaml:3:76: netmask '24' is not a dotted IPv4 mask\n  hint: an IPv4 service's netmask is a dotted mask such as 255.255.255.0"
    );
    assert_eq!(
        error(&with_service("  - {protocol: tcp, address: '2001:db8::1', port: 80, persistent: 60, netmask: 129}\n")),
        "t.yaml:3:80: netmask 129 is out of range (1 to 128)\n  hint: an IPv6 service's netmask is a prefix length from 1 to 128"
    );
}

#[test]
fn duplicate_service() {
    assert_eq!(
        error(&with_service(
            "  - {protocol: tcp, address: 192.0.2.1, port: 80}\n  - {protocol: udp, address: 192.0.2.1, port: 80}\n  - {protocol: tcp, address: 192.0.2.1, port: 80}\n"
        )),
        "t.yaml:5:5: service TCP 192.0.2.1:80 is defined twice\n  hint: first defined at line 3"
    );
}

#[test]
fn real_servers_not_a_list() {
    assert_eq!(
        error(&with_service("  - protocol: tcp\n    address: 192.0.2.1\n    port: 80\n    real_servers: 192.0.2.2\n")),
        "t.yaml:6:19: real_servers must be a list, found '192.0.2.2'\n  hint: start each real server with '- '"
    );
}

#[test]
fn real_server_missing_address() {
    assert_eq!(
        error(&with_service("  - protocol: tcp\n    address: 192.0.2.1\n    port: 80\n    real_servers:\n      - port: 80\n")),
        "t.yaml:7:9: a real server has no 'address'\n  hint: add e.g. 'address: 192.0.2.11'"
    );
}

#[test]
fn mixed_families() {
    assert_eq!(
        error(&with_service("  - protocol: tcp\n    address: 192.0.2.1\n    port: 80\n    real_servers:\n      - address: 2001:db8::2\n")),
        "t.yaml:7:18: real server 2001:db8::2 is IPv6 but the service is IPv4"
    );
}

#[test]
fn bad_forward() {
    assert_eq!(
        error(&with_service("  - {protocol: tcp, address: 192.0.2.1, port: 80, real_servers: [{address: 192.0.2.2, forward: masquerade}]}\n")),
        "t.yaml:3:96: unknown forward 'masquerade'\n  hint: did you mean 'masq'?"
    );
    assert_eq!(
        error(&with_service("  - {protocol: tcp, address: 192.0.2.1, port: 80, real_servers: [{address: 192.0.2.2, forward: local}]}\n")),
        "t.yaml:3:96: unknown forward 'local'\n  hint: choose masq (or nat), route (or dr, gatewaying) or tunnel (or tun, ipip)"
    );
}

#[test]
fn port_change_needs_masq() {
    assert_eq!(
        error(&with_service("  - protocol: tcp\n    address: 192.0.2.1\n    port: 80\n    real_servers:\n      - address: 192.0.2.2\n        port: 8080\n")),
        "t.yaml:8:15: real server port 8080 differs from the service port 80; direct routing cannot change the port\n  hint: remove 'port:' or use 'forward: masq'"
    );
    assert_eq!(
        error(&with_service("  - protocol: tcp\n    address: 192.0.2.1\n    port: 80\n    real_servers:\n      - address: 192.0.2.2\n        forward: tun\n        port: 8080\n")),
        "t.yaml:9:15: real server port 8080 differs from the service port 80; tunnelling cannot change the port\n  hint: remove 'port:' or use 'forward: masq'"
    );
    assert_eq!(
        error(&with_service("  - protocol: tcp\n    address: 192.0.2.1\n    port: 80\n    real_servers:\n      - address: 192.0.2.2\n        forward: masq\n        port: 0\n")),
        "t.yaml:9:15: real server port 0 is only meaningful for a port-0 service\n  hint: remove 'port:' to use the service's port 80"
    );
}

#[test]
fn bad_weight() {
    assert_eq!(
        error(&with_service("  - {protocol: tcp, address: 192.0.2.1, port: 80, real_servers: [{address: 192.0.2.2, weight: 2147483648}]}\n")),
        "t.yaml:3:95: weight 2147483648 is out of range (0 to 2147483647)"
    );
}

#[test]
fn thresholds() {
    assert_eq!(
        error(&with_service("  - {protocol: tcp, address: 192.0.2.1, port: 80, real_servers: [{address: 192.0.2.2, u_threshold: 5, l_threshold: 6}]}\n")),
        "t.yaml:3:116: l_threshold 6 is above u_threshold 5"
    );
    assert_eq!(
        error(&with_service("  - {protocol: tcp, address: 192.0.2.1, port: 80, real_servers: [{address: 192.0.2.2, l_threshold: 6}]}\n")),
        "t.yaml:3:100: l_threshold 6 is above u_threshold 0\n  hint: u_threshold defaults to 0 (no limit) and the kernel refuses a lower threshold above the upper one; set u_threshold too"
    );
}

#[test]
fn duplicate_real_server() {
    assert_eq!(
        error(&with_service(
            "  - protocol: tcp\n    address: 192.0.2.1\n    port: 80\n    real_servers:\n      - address: 192.0.2.2\n      - address: 192.0.2.3\n      - address: 192.0.2.2\n        port: 80\n"
        )),
        "t.yaml:9:9: real server 192.0.2.2:80 is listed twice in this service\n  hint: first listed at line 7"
    );
    // Masq real servers differing only by port are distinct.
    parse(
        &with_service("  - {protocol: tcp, address: 192.0.2.1, port: 80, real_servers: [{address: 192.0.2.2, forward: masq}, {address: 192.0.2.2, forward: masq, port: 81}]}\n"),
        "t",
    )
    .unwrap();
}

#[test]
fn too_many_real_servers() {
    let mut s = String::from(
        "  - protocol: tcp\n    address: 192.0.2.1\n    port: 80\n    real_servers:\n",
    );
    for i in 0..=MAX_DESTS_PER_SVC {
        s.push_str(&format!(
            "      - {{address: 192.0.2.2, forward: masq, port: {}}}\n",
            1000 + i
        ));
    }
    assert_eq!(
        error(&with_service(&s)),
        format!(
            "t.yaml:{}:9: service TCP 192.0.2.1:80 has more than 256 real servers, the most the dataplane holds per service",
            7 + MAX_DESTS_PER_SVC
        )
    );
}

#[test]
fn deep_nesting_and_alias_bombs_do_not_panic() {
    let deep = format!("interfaces: {}{}\n", "[".repeat(200), "]".repeat(200));
    assert_eq!(error(&deep), "t.yaml:1:77: nested more than 64 levels deep");
    let mut bomb = String::from("interfaces: [e]\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..8 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    assert!(error(&bomb).contains("aliases expand to too many nodes"));
    // Aliases of aliases, each adding depth: refused before the tree gets deep.
    let mut tower = String::from("interfaces: [e]\nservices:\n  - &a0 [[[[[[[[[[x]]]]]]]]]]\n");
    for i in 1..20 {
        tower.push_str(&format!("  - &a{i} [[[[[[[[[[*a{}]]]]]]]]]]\n", i - 1));
    }
    assert!(
        error(&tower).contains("nested more than 64 levels deep"),
        "{}",
        error(&tower)
    );
}

#[test]
fn garbage_is_refused_without_panicking() {
    for text in [
        "{",
        "[",
        ":",
        "- - -",
        "interfaces: [a]\nservices: [[[]]]",
        "\t",
        "interfaces: &x [*x]",
        "? [a]\n: b",
        "interfaces: [a]\nservices:\n  - {? : }",
    ] {
        let err = parse(text, "t.yaml").expect_err(text);
        let shown = err.to_string();
        assert!(shown.starts_with("t.yaml:"), "{text:?} -> {shown}");
        assert!(err.location.is_some() || shown.starts_with("t.yaml: "), "{text:?} -> {shown}");
    }
}

/// A configuration with the given classifier rules (YAML lines indented for the list).
fn with_rules(rules: &str) -> String {
    format!("interfaces: [eth0]\nclassifier:\n{rules}")
}

#[test]
fn classifier_rules_in_order_with_defaults() {
    let c = parse(
        &with_rules(
            "  - { mark: 7, destination: 203.0.113.12, protocol: tcp, ports: 443 }\n\
             \x20 - { mark: 8, destination: 203.0.113.0/24, ports: 8000-8099 }\n\
             \x20 - { mark: 9, destination: 198.18.0.0/15, protocol: any }\n\
             \x20 - { mark: 4294967295, destination: '2001:db8::/32', protocol: udp }\n",
        ),
        "t.yaml",
    )
    .unwrap();
    let r = &c.classifier;
    assert_eq!(r.len(), 4);
    assert_eq!((r[0].mark, r[0].addr, r[0].prefix_len, r[0].protocol, r[0].ports), (7, ip("203.0.113.12"), 32, Some(Protocol::Tcp), (443, 443)));
    assert_eq!((r[1].mark, r[1].prefix_len, r[1].protocol, r[1].ports), (8, 24, None, (8000, 8099)));
    assert_eq!((r[2].prefix_len, r[2].protocol, r[2].ports), (15, None, (0, 65535)));
    assert_eq!((r[3].mark, r[3].addr, r[3].prefix_len), (u32::MAX, ip("2001:db8::"), 32));
    assert_eq!(r[1].location, Location { line: 4, column: 5 });

    // The dataplane's layout: network order, first match wins.
    let set = rule_set(r);
    assert_eq!(set.count, 4);
    assert_eq!(set.rules[1].mask[0].to_ne_bytes(), [255, 255, 255, 0]);
    assert_eq!(set.rules[1].addr[0].to_ne_bytes(), [203, 0, 113, 0]);
    assert_eq!(set.rules[3].family, lvs_common::AF_INET6);
    assert_eq!(set.rules[3].mask, [u32::from_ne_bytes([255, 255, 255, 255]), 0, 0, 0]);
    let a = |s: &str| match ip(s) {
        IpAddr::V4(a) => u32::from_ne_bytes(a.octets()),
        _ => unreachable!(),
    };
    assert_eq!(set.classify_v4(a("203.0.113.12"), 6, 443), 7);
    assert_eq!(set.classify_v4(a("203.0.113.12"), 17, 8050), 8);
    assert_eq!(set.classify_v4(a("198.19.1.1"), 17, 53), 9);
    assert_eq!(set.classify_v4(a("192.0.2.1"), 6, 443), 0);
}

#[test]
fn bad_classifier_rules() {
    let e = |rule: &str| error(&with_rules(&format!("  - {rule}\n")));
    assert_eq!(
        e("{ mark: 0, destination: 203.0.113.12 }"),
        "t.yaml:3:13: mark 0 is out of range (1 to 4294967295)\n  hint: a firewall mark is from 1 to 4294967295 (0 means no mark)"
    );
    assert_eq!(
        e("{ destination: 203.0.113.12 }"),
        "t.yaml:3:5: a classifier rule has no 'mark'\n  hint: add e.g. 'mark: 1'"
    );
    assert_eq!(
        e("{ mark: 1, destination: 203.0.113.300/24 }"),
        "t.yaml:3:29: '203.0.113.300/24' is not an IPv4 or IPv6 address or prefix\n  hint: write e.g. 203.0.113.0/24, 203.0.113.12 or 2001:db8::/32"
    );
    assert_eq!(
        e("{ mark: 1, destination: 203.0.113.0/33 }"),
        "t.yaml:3:29: prefix length '33' in '203.0.113.0/33' is not a number from 0 to 32"
    );
    assert_eq!(
        e("{ mark: 1, destination: 203.0.113.12/24 }"),
        "t.yaml:3:29: '203.0.113.12/24' has host bits set beyond the /24 prefix\n  hint: did you mean 203.0.113.0/24?"
    );
    assert_eq!(
        e("{ mark: 1, destination: 203.0.113.0/24, ports: 90-80 }"),
        "t.yaml:3:52: port range '90-80' is empty: 90 is above 80\n  hint: write 80-90"
    );
    assert_eq!(
        e("{ mark: 1, destination: 203.0.113.0/24, ports: 80- }"),
        "t.yaml:3:52: port range '80-' is missing an end\n  hint: write one port (443) or a range (8000-8099)"
    );
    assert_eq!(
        e("{ mark: 1, destination: 203.0.113.0/24, ports: 70000 }"),
        "t.yaml:3:52: '70000' is not a port from 0 to 65535\n  hint: write one port (443) or a range (8000-8099)"
    );
    assert_eq!(
        e("{ mark: 1, destination: 203.0.113.0/24, protocol: icmp }"),
        "t.yaml:3:55: unknown protocol 'icmp'\n  hint: choose one of tcp, udp, any"
    );
    assert_eq!(
        e("{ mark: 1, dst: 203.0.113.0/24 }"),
        "t.yaml:3:16: unknown key 'dst' in a classifier rule\n  hint: did you mean 'destination'?"
    );
}

#[test]
fn classifier_rules_that_never_match_are_refused() {
    // Partial overlap is fine: the first match wins.
    parse(
        &with_rules(
            "  - { mark: 1, destination: 203.0.113.12, ports: 80-90 }\n  - { mark: 2, destination: 203.0.113.0/24, ports: 85-95 }\n",
        ),
        "t.yaml",
    )
    .unwrap();
    assert_eq!(
        error(&with_rules(
            "  - { mark: 1, destination: 203.0.113.0/24, protocol: tcp }\n  - { mark: 2, destination: 203.0.113.12, protocol: tcp, ports: 443 }\n"
        )),
        "t.yaml:4:5: this classifier rule never matches: it is covered by the rule at line 3 (mark 1)\n  hint: the first matching rule wins; move this rule above line 3 or remove it"
    );
    assert_eq!(
        error(&with_rules(
            "  - { mark: 1, destination: 203.0.113.12 }\n  - { mark: 1, destination: 203.0.113.12/32, protocol: any }\n"
        )),
        "t.yaml:4:5: this classifier rule never matches: it repeats the rule at line 3\n  hint: the first matching rule wins; move this rule above line 3 or remove it"
    );
    // A narrower protocol or port range earlier does not shadow a wider rule after it.
    parse(
        &with_rules(
            "  - { mark: 1, destination: 203.0.113.12, protocol: udp }\n  - { mark: 2, destination: 203.0.113.12 }\n",
        ),
        "t.yaml",
    )
    .unwrap();
    let many: String = (0..65).map(|i| format!("  - {{ mark: 1, destination: 198.18.{i}.0/24 }}\n")).collect();
    assert_eq!(
        error(&with_rules(&many)),
        "t.yaml:67:5: more than 64 classifier rules, the most the dataplane holds\n  hint: merge rules: a rule takes a prefix and a port range"
    );
}

#[test]
fn fwmark_services() {
    let c = parse(
        &with_service(
            "  - fwmark: 7\n    scheduler: rr\n    real_servers:\n      - { address: 192.0.2.11, forward: masq }\n      - { address: 192.0.2.12, port: 8080, forward: masq }\n  - { fwmark: 8, family: ipv6, real_servers: [ { address: '2001:db8:1::11' } ] }\n",
        ),
        "t.yaml",
    )
    .unwrap();
    assert_eq!(c.services[0].spec.key, ServiceKey::Fwmark { mark: 7, ipv6: false });
    assert_eq!(c.services[0].spec.scheduler, "rr");
    assert_eq!((c.services[0].dests[0].port, c.services[0].dests[1].port), (0, 8080));
    assert_eq!(c.services[1].spec.key, ServiceKey::Fwmark { mark: 8, ipv6: true });
    assert_eq!(c.services[1].spec.netmask, 128);

    assert_eq!(
        error(&with_service("  - { fwmark: 7, protocol: tcp }\n")),
        "t.yaml:3:18: a firewall-mark service has no 'protocol'\n  hint: it takes the packets the classifier marks; remove 'fwmark' for an address service"
    );
    assert_eq!(
        error(&with_service("  - { fwmark: 0 }\n")),
        "t.yaml:3:15: fwmark 0 is out of range (1 to 4294967295)\n  hint: a firewall mark is from 1 to 4294967295 (0 means no mark)"
    );
    assert_eq!(
        error(&with_service("  - { protocol: tcp, address: 203.0.113.10, port: 80, family: ipv4 }\n")),
        "t.yaml:3:55: family is only for a firewall-mark service\n  hint: an address service takes its family from 'address'"
    );
    assert_eq!(
        error(&with_service("  - { fwmark: 7, real_servers: [ { address: '2001:db8:1::11' } ] }\n")),
        "t.yaml:3:45: real server 2001:db8:1::11 is IPv6 but the service is IPv4"
    );
    assert_eq!(
        error(&with_service("  - { fwmark: 7 }\n  - { fwmark: 7, scheduler: rr }\n")),
        "t.yaml:4:5: service FWM 7 is defined twice\n  hint: first defined at line 3"
    );
}

#[test]
fn metrics_address_default_and_errors() {
    let c = parse("interfaces: [eth0]\n", "m.yaml").unwrap();
    assert_eq!(c.metrics_address.to_string(), "127.0.0.1:9117");
    let c = parse("interfaces: [eth0]\nmetrics_address: \"[2001:db8::1]:9200\"\n", "m.yaml").unwrap();
    assert_eq!(c.metrics_address.to_string(), "[2001:db8::1]:9200");
    assert_eq!(
        error("interfaces: [eth0]\nmetrics_address: 127.0.0.1\n"),
        "t.yaml:2:18: '127.0.0.1' is not an address:port\n  hint: add the port, e.g. '127.0.0.1:9117' (IPv6: '[127.0.0.1]:9117')"
    );
    assert_eq!(
        error("interfaces: [eth0]\nmetrics_address: localhost:9117\n"),
        "t.yaml:2:18: 'localhost:9117' is not an address:port\n  hint: write e.g. 127.0.0.1:9117, or [::1]:9117 for IPv6"
    );
    assert!(error("interfaces: [eth0]\nmetrics: 1\n").contains("did you mean 'metrics_address'?"));
}

#[test]
fn sysctls_take_the_kernel_names_and_default_to_zero() {
    let c = parse("interfaces: [eth0]\n", "t.yaml").unwrap();
    assert_eq!((c.sysctls.expire_nodest_conn, c.sysctls.expire_quiescent_template), (0, 0));
    let c = parse("interfaces: [eth0]\nsysctls:\n  expire_quiescent_template: 1\n", "t.yaml").unwrap();
    assert_eq!((c.sysctls.expire_nodest_conn, c.sysctls.expire_quiescent_template), (0, 1));
    let c = parse("interfaces: [eth0]\nsysctls: {expire_nodest_conn: 1}\n", "t.yaml").unwrap();
    assert_eq!((c.sysctls.expire_nodest_conn, c.sysctls.expire_quiescent_template), (1, 0));
}

#[test]
fn sysctls_refuse_other_names_and_values() {
    let e = error("interfaces: [eth0]\nsysctls:\n  expire_nodest: 1\n");
    assert!(e.starts_with("t.yaml:3:3: unknown key 'expire_nodest' in sysctls"), "{e}");
    assert!(e.contains("hint: sysctls takes: expire_nodest_conn, expire_quiescent_template"), "{e}");
    let e = error("interfaces: [eth0]\nsysctls:\n  expire_nodest_conn: 2\n");
    assert!(e.starts_with("t.yaml:3:23: "), "{e}");
}

#[test]
fn sync_daemons_with_ipvsadm_parameters_and_defaults() {
    use crate::control::SyncRole;
    let c = parse(
        "interfaces: [eth0]\nsync:\n  backup: {interface: eth1, syncid: 5, sync_maxlen: 1400}\n  master:\n    interface: eth1\n    syncid: 5\n    mcast_group: 239.1.2.3\n    mcast_port: 9000\n    mcast_ttl: 2\n",
        "t.yaml",
    )
    .unwrap();
    // Master first whatever the order in the file.
    let d: Vec<_> = c.sync.iter().map(|s| &s.daemon).collect();
    assert_eq!(d[0].role, SyncRole::Master);
    assert_eq!(
        (d[0].mcast_ifn.as_str(), d[0].syncid, d[0].mcast_group, d[0].mcast_port, d[0].mcast_ttl, d[0].sync_maxlen),
        ("eth1", 5, Some(ip("239.1.2.3")), 9000, 2, 0)
    );
    assert_eq!(
        (d[1].role, d[1].mcast_group, d[1].mcast_port, d[1].mcast_ttl, d[1].sync_maxlen),
        (SyncRole::Backup, Some(ip("224.0.0.81")), 8848, 1, 1400)
    );
    assert_eq!(c.sync[1].location, Location { line: 3, column: 11 });
    assert!(parse("interfaces: [eth0]\nsync:\n", "t.yaml").unwrap().sync.is_empty());
}

#[test]
fn sync_errors_point_at_the_value() {
    let base = "interfaces: [eth0]\nsync:\n  master:\n";
    for (body, want) in [
        ("    syncid: 1\n", "t.yaml:4:5: the master sync daemon has no 'interface'\n  hint: add e.g. 'interface: eth1'"),
        ("    interface: eth1\n    syncid: 256\n", "t.yaml:5:13: syncid 256 is out of range (0 to 255)"),
        ("    interface: eth1\n    mcast_group: 192.0.2.1\n", "t.yaml:5:18: mcast_group 192.0.2.1 is not a multicast address\n  hint: IPv4 multicast is 224.0.0.0/4; the default is 224.0.0.81"),
        ("    interface: eth1\n    mcast_group: ff02::1:2:3\n", "t.yaml:5:18: mcast_group ff02::1:2:3: IPv6 multicast groups for connection sync are not supported by lvsd yet"),
        ("    interface: eth1\n    mcast_port: 0\n", "t.yaml:5:17: mcast_port 0 is out of range (1 to 65535)"),
        ("    interface: eth1\n    mcast_ttl: 256\n", "t.yaml:5:16: mcast_ttl 256 is out of range (1 to 255)"),
        ("    interface: eth1\n    sync_maxlen: 65508\n", "t.yaml:5:18: sync_maxlen 65508 is out of range (1 to 65507)"),
        ("    interface: a-very-long-name0\n", "t.yaml:4:16: interface name 'a-very-long-name0' is longer than 15 bytes"),
        ("    interface: eth1\n    ttl: 2\n", "t.yaml:5:5: unknown key 'ttl' in the master sync daemon\n  hint: did you mean 'mcast_ttl'?"),
    ] {
        assert_eq!(error(&format!("{base}{body}")), want, "{body}");
    }
    assert_eq!(
        error("interfaces: [eth0]\nsync:\n  standby: {interface: eth1}\n"),
        "t.yaml:3:3: unknown key 'standby' in sync\n  hint: sync takes: master, backup"
    );
}
