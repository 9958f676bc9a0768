//! `ipvsadm -L -c`: the connection table as the kernel's `/proc/net/ip_vs_conn` shows it
//! (`ip_vs_conn_seq_show`), one [`ConnStatus`] per live entry, in table order (the kernel's is
//! its hash order too; ipvsadm does not sort).
//!
//! Persistence templates (`TEMPLATES`) are listed after the connections, as the kernel shows
//! them: state `NONE` or `ASSURED`, the masked client address with port 0, protocol 0 (`IP`)
//! and the mark as the virtual address for firewall-mark services.

use std::collections::HashSet;

use lvs_common::{
    flow::{ConnEntry, FlowKey},
    persist::{template_flags, Template},
    tcp_state::{STATE_NAMES, TCP_STATE_COUNT},
};

use super::tables::{monotonic_ns, words_addr, Tables};
use crate::control::ConnStatus;

const NSEC_PER_SEC: u64 = 1_000_000_000;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// Every live entry of `CONNS`, with its time left as of now.
pub fn list(t: &Tables) -> Vec<ConnStatus> {
    let now = monotonic_ns();
    // A walk of a BPF hash map starts over when the key it stands on is deleted meanwhile
    // (the dataplane replaces entries, the reclaimer removes them): skip keys seen already.
    let mut seen = HashSet::new();
    let mut out: Vec<ConnStatus> = t
        .conns
        .iter()
        .filter_map(Result::ok)
        .filter(|(k, _)| seen.insert(*k))
        .filter_map(|(k, e)| status(&k, &e, now))
        .collect();
    let mut seen = HashSet::new();
    out.extend(
        t.templates
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, _)| seen.insert(*k))
            .filter_map(|(k, tp)| {
                let mut st = template_status(&k, &tp, now)?;
                // A sip template: the engine's name and the Call-ID (`ip_vs_sip_show_pe_data`).
                if lvs_common::sip::key_mark(&k) != 0 {
                    if let Ok(c) = t.sip_callids.get(&k, 0) {
                        st.pe = Some(("sip".to_string(), String::from_utf8_lossy(c.bytes()).into_owned()));
                    }
                }
                Some(st)
            }),
    );
    out
}

/// One persistence template as `-L -c` shows it, or `None` once it has expired.
pub fn template_status(k: &FlowKey, t: &Template, now_ns: u64) -> Option<ConnStatus> {
    if t.expires_ns <= now_ns {
        return None;
    }
    Some(ConnStatus {
        protocol: k.proto,
        client: words_addr(k.src, k.family),
        client_port: 0,
        vaddr: words_addr(k.dst, k.family),
        vport: u16::from_be(k.dport),
        daddr: words_addr(t.daddr, k.family),
        dport: u16::from_be(t.dport),
        state: if t.flags & template_flags::ASSURED != 0 { "ASSURED" } else { "NONE" }.to_string(),
        expires: ((t.expires_ns - now_ns) / NSEC_PER_SEC).min(u64::from(u32::MAX)) as u32,
        pe: None,
    })
}

/// One entry as `-L -c` shows it, or `None` once it has expired: the dataplane no longer
/// matches it, and the kernel's timer would have removed it.
pub fn status(k: &FlowKey, e: &ConnEntry, now_ns: u64) -> Option<ConnStatus> {
    if e.expires_ns <= now_ns {
        return None;
    }
    Some(ConnStatus {
        protocol: k.proto,
        client: words_addr(k.src, k.family),
        client_port: u16::from_be(k.sport),
        vaddr: words_addr(e.vaddr, k.family),
        vport: u16::from_be(e.vport),
        daddr: words_addr(e.daddr, k.family),
        dport: u16::from_be(e.dport),
        state: state_name(k.proto, e.state).to_string(),
        // The kernel prints `jiffies_delta_to_msecs(expires - jiffies) / 1000`: truncated, so
        // an entry refreshed just now shows 14:59, not 15:00.
        expires: ((e.expires_ns - now_ns) / NSEC_PER_SEC).min(u64::from(u32::MAX)) as u32,
        pe: None,
    })
}

/// `ip_vs_state_name`: TCP states by name, every UDP entry `UDP`, `ERR!` for what the
/// protocol does not know.
fn state_name(proto: u8, state: u8) -> &'static str {
    match proto {
        IPPROTO_TCP if (state as usize) < TCP_STATE_COUNT => STATE_NAMES[state as usize],
        IPPROTO_UDP => "UDP",
        _ => "ERR!",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::tables::addr_words;
    use lvs_common::tcp_state;

    fn entry(proto: u8, state: u8, expires_ns: u64) -> (FlowKey, ConnEntry) {
        let w = |a: &str| addr_words(a.parse().unwrap()).0;
        let k = FlowKey {
            src: w("198.51.100.2"),
            dst: w("203.0.113.10"),
            sport: 37008u16.to_be(),
            dport: 80u16.to_be(),
            proto,
            family: lvs_common::AF_INET,
            _pad: [0; 2],
        };
        let e = ConnEntry {
            vaddr: w("203.0.113.10"),
            daddr: w("192.0.2.11"),
            vport: 80u16.to_be(),
            dport: 8080u16.to_be(),
            state,
            expires_ns,
            ..Default::default()
        };
        (k, e)
    }

    #[test]
    fn addresses_ports_state_and_truncated_expiry() {
        let now = 1_000 * NSEC_PER_SEC;
        // Refreshed 1 ms ago with 900 s: 899.999 s left, shown as 899 (14:59).
        let (k, e) = entry(IPPROTO_TCP, tcp_state::ESTABLISHED, now + 900 * NSEC_PER_SEC - 1_000_000);
        let s = status(&k, &e, now).unwrap();
        assert_eq!(s.client, "198.51.100.2".parse::<std::net::IpAddr>().unwrap());
        assert_eq!((s.client_port, s.vport, s.dport), (37008, 80, 8080));
        assert_eq!(s.vaddr.to_string(), "203.0.113.10");
        assert_eq!(s.daddr.to_string(), "192.0.2.11");
        assert_eq!((s.protocol, s.state.as_str(), s.expires), (6, "ESTABLISHED", 899));
    }

    #[test]
    fn expired_entries_are_not_listed() {
        let now = 50 * NSEC_PER_SEC;
        let (k, e) = entry(IPPROTO_UDP, tcp_state::UDP, now);
        assert_eq!(status(&k, &e, now), None);
        let (k, e) = entry(IPPROTO_UDP, tcp_state::UDP, now + 1);
        let s = status(&k, &e, now).unwrap();
        assert_eq!((s.state.as_str(), s.expires), ("UDP", 0));
    }

    #[test]
    fn state_names_as_the_kernel_prints_them() {
        assert_eq!(state_name(IPPROTO_TCP, tcp_state::TIME_WAIT), "TIME_WAIT");
        assert_eq!(state_name(IPPROTO_TCP, tcp_state::NONE), "NONE");
        assert_eq!(state_name(IPPROTO_TCP, tcp_state::SYNACK), "SYNACK");
        assert_eq!(state_name(IPPROTO_TCP, tcp_state::UDP), "ERR!");
        assert_eq!(state_name(IPPROTO_UDP, tcp_state::UDP), "UDP");
    }
}
