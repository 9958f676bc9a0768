//! The firewall-mark classifier: ordered rules (destination prefix, protocol, destination-port
//! range) giving the mark that `-f MARK` services match on.
//!
//! Kernel IPVS reads `skb->mark`, which iptables sets in the mangle table before IPVS's hook.
//! XDP runs before netfilter, so lvsd classifies in the dataplane from rules in its config.
//!
//! Layout: `CLASSIFIER` is an array of two [`ClassRuleSet`]s (double buffer); word
//! [`CTL_RULE_SET`] of `LOOKUP_CTL` says which one is live (0: none, 1 or 2: set 0 or 1).
//! Userspace writes the idle set completely, then flips that word: a packet reads the word once
//! and walks only the set it names, so it sees either the old rules or the new ones, never a
//! mix. A set stops being live at a flip and is rewritten only at a later reload, which lvsd
//! holds back until [`REWRITE_GRACE_MS`] after the flip, thousands of times longer than a walk
//! of [`MAX_CLASS_RULES`] rules takes (well under a microsecond).

use crate::{AF_INET, AF_INET6};

/// Rules the dataplane holds. The walk is bounded by this (a `bpf_loop` over the live count).
pub const MAX_CLASS_RULES: usize = 64;

/// Milliseconds lvsd waits after a flip before it may rewrite the set that went idle.
pub const REWRITE_GRACE_MS: u64 = 10;

/// `LOOKUP_CTL` word: which `CLASSIFIER` set is live (0 none, 1 + index otherwise).
pub const CTL_RULE_SET: u32 = 0;
/// `LOOKUP_CTL` word: number of address services with port 0 (IPVS's `nullsvc_counter`). The
/// dataplane tries the port-0 fallback lookup only when it is non-zero, so a packet for no
/// service does not pay a third hash lookup.
pub const CTL_PORT0_SERVICES: u32 = 1;
/// Words in `LOOKUP_CTL`.
pub const CTL_WORDS: u32 = 2;

/// `ClassRule::proto` for "tcp or udp" (the dataplane balances nothing else).
pub const PROTO_ANY: u8 = 0;

/// One classifier rule. 44 bytes, no hidden padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ClassRule {
    /// Destination prefix, network order, host bits cleared (IPv4 in `addr[0]`).
    pub addr: [u32; 4],
    /// The prefix's netmask, network order (IPv4 in `mask[0]`).
    pub mask: [u32; 4],
    /// Lowest destination port matched, host order.
    pub port_min: u16,
    /// Highest destination port matched, host order (inclusive).
    pub port_max: u16,
    /// IP protocol number, or [`PROTO_ANY`].
    pub proto: u8,
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    pub _pad: [u8; 2],
    /// The firewall mark given to matching packets; never 0 (0 means "no mark", as in IPVS).
    pub mark: u32,
}

impl ClassRule {
    /// Whether an IPv4 packet to `daddr` (network order) with protocol `proto` and destination
    /// port `dport` (host order) matches. The dataplane's per-rule test.
    #[inline(always)]
    pub fn matches_v4(&self, daddr: u32, proto: u8, dport: u16) -> bool {
        self.family == AF_INET
            && daddr & self.mask[0] == self.addr[0]
            && (self.proto == PROTO_ANY || self.proto == proto)
            && dport >= self.port_min
            && dport <= self.port_max
    }

    /// Whether every packet this rule could match is matched by `earlier` too (so with first
    /// match wins, this rule would never match). Userspace refuses such rules.
    /// The same for an IPv6 destination (four network-order words).
    #[inline(always)]
    pub fn matches_v6(&self, daddr: &[u32; 4], proto: u8, dport: u16) -> bool {
        self.family == AF_INET6
            && daddr[0] & self.mask[0] == self.addr[0]
            && daddr[1] & self.mask[1] == self.addr[1]
            && daddr[2] & self.mask[2] == self.addr[2]
            && daddr[3] & self.mask[3] == self.addr[3]
            && (self.proto == PROTO_ANY || self.proto == proto)
            && dport >= self.port_min
            && dport <= self.port_max
    }

    pub fn shadowed_by(&self, earlier: &ClassRule) -> bool {
        if self.family != earlier.family {
            return false;
        }
        let words = if self.family == AF_INET6 { 4 } else { 1 };
        // `earlier`'s prefix contains ours: its mask is no longer than ours (a subset of our
        // bits) and our prefix agrees with it on its bits.
        let prefix = (0..words).all(|i| {
            earlier.mask[i] & self.mask[i] == earlier.mask[i] && self.addr[i] & earlier.mask[i] == earlier.addr[i]
        });
        prefix
            && (earlier.proto == PROTO_ANY || earlier.proto == self.proto)
            && earlier.port_min <= self.port_min
            && earlier.port_max >= self.port_max
    }
}

/// One complete rule set (an entry of `CLASSIFIER`). Rules are tried in order; the first match
/// gives the mark.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassRuleSet {
    /// Valid entries at the front of `rules`.
    pub count: u32,
    pub _pad: u32,
    pub rules: [ClassRule; MAX_CLASS_RULES],
}

impl Default for ClassRuleSet {
    fn default() -> Self {
        ClassRuleSet { count: 0, _pad: 0, rules: [ClassRule::default(); MAX_CLASS_RULES] }
    }
}

impl ClassRuleSet {
    /// The mark of the first rule matching an IPv4 packet, or 0. The reference the dataplane's
    /// `bpf_loop` walk follows.
    pub fn classify_v4(&self, daddr: u32, proto: u8, dport: u16) -> u32 {
        let n = (self.count as usize).min(MAX_CLASS_RULES);
        self.rules[..n].iter().find(|r| r.matches_v4(daddr, proto, dport)).map_or(0, |r| r.mark)
    }
}

const _: () = assert!(core::mem::size_of::<ClassRule>() == 44);
const _: () = assert!(core::mem::size_of::<ClassRuleSet>() == 8 + 44 * MAX_CLASS_RULES);

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::ClassRule {}
    unsafe impl aya::Pod for super::ClassRuleSet {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4], len: u32, proto: u8, ports: (u16, u16), mark: u32) -> ClassRule {
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        let addr = u32::from_be_bytes(a) & mask;
        ClassRule {
            addr: [addr.to_be(), 0, 0, 0],
            mask: [mask.to_be(), 0, 0, 0],
            port_min: ports.0,
            port_max: ports.1,
            proto,
            family: AF_INET,
            _pad: [0; 2],
            mark,
        }
    }

    fn ip(a: [u8; 4]) -> u32 {
        u32::from_ne_bytes(a)
    }

    #[test]
    fn first_matching_rule_wins() {
        let mut set = ClassRuleSet::default();
        set.rules[0] = v4([203, 0, 113, 12], 32, 6, (443, 443), 7);
        set.rules[1] = v4([203, 0, 113, 0], 24, PROTO_ANY, (0, 65535), 9);
        set.count = 2;
        assert_eq!(set.classify_v4(ip([203, 0, 113, 12]), 6, 443), 7);
        assert_eq!(set.classify_v4(ip([203, 0, 113, 12]), 17, 443), 9);
        assert_eq!(set.classify_v4(ip([203, 0, 113, 12]), 6, 80), 9);
        assert_eq!(set.classify_v4(ip([203, 0, 113, 200]), 6, 443), 9);
        assert_eq!(set.classify_v4(ip([198, 51, 100, 1]), 6, 443), 0);
        // Rules past `count` are not live.
        set.count = 1;
        assert_eq!(set.classify_v4(ip([203, 0, 113, 200]), 6, 443), 0);
    }

    #[test]
    fn port_ranges_are_inclusive() {
        let r = v4([198, 18, 0, 0], 15, 17, (5000, 5002), 3);
        assert!(!r.matches_v4(ip([198, 18, 0, 1]), 17, 4999));
        assert!(r.matches_v4(ip([198, 18, 0, 1]), 17, 5000));
        assert!(r.matches_v4(ip([198, 19, 255, 1]), 17, 5002));
        assert!(!r.matches_v4(ip([198, 20, 0, 1]), 17, 5001));
        assert!(!r.matches_v4(ip([198, 18, 0, 1]), 17, 5003));
        assert!(!r.matches_v4(ip([198, 18, 0, 1]), 6, 5001));
    }

    #[test]
    fn ipv6_rules_match_ipv6_destinations_only() {
        // 2001:db8:40::/48, TCP 8080: four network-order words, as lvsd writes them.
        let w = |b: [u8; 4]| u32::from_ne_bytes(b);
        let r = ClassRule {
            addr: [w([0x20, 0x01, 0x0d, 0xb8]), w([0, 0x40, 0, 0]), 0, 0],
            mask: [u32::MAX, w([0xff, 0xff, 0, 0]), 0, 0],
            port_min: 8080,
            port_max: 8080,
            proto: 6,
            family: AF_INET6,
            _pad: [0; 2],
            mark: 8,
        };
        let inside = [w([0x20, 0x01, 0x0d, 0xb8]), w([0, 0x40, 0xab, 0xcd]), 0, w([0, 0, 0, 1])];
        let outside = [w([0x20, 0x01, 0x0d, 0xb8]), w([0, 0x41, 0, 0]), 0, w([0, 0, 0, 1])];
        assert!(r.matches_v6(&inside, 6, 8080));
        assert!(!r.matches_v6(&inside, 17, 8080));
        assert!(!r.matches_v6(&inside, 6, 8081));
        assert!(!r.matches_v6(&outside, 6, 8080));
        // Never an IPv4 packet, whatever its address.
        assert!(!r.matches_v4(inside[0], 6, 8080));
        assert!(!v4([203, 0, 113, 0], 24, PROTO_ANY, (0, 65535), 1).matches_v6(&inside, 6, 8080));
    }

    #[test]
    fn shadowing_needs_prefix_protocol_and_ports_covered() {
        let wide = v4([203, 0, 113, 0], 24, PROTO_ANY, (0, 65535), 1);
        let narrow = v4([203, 0, 113, 12], 32, 6, (443, 443), 2);
        assert!(narrow.shadowed_by(&wide));
        assert!(!wide.shadowed_by(&narrow));
        assert!(narrow.shadowed_by(&narrow));
        let other_net = v4([203, 0, 114, 0], 24, PROTO_ANY, (0, 65535), 1);
        assert!(!narrow.shadowed_by(&other_net));
        let udp_only = v4([203, 0, 113, 0], 24, 17, (0, 65535), 1);
        assert!(!narrow.shadowed_by(&udp_only));
        let some_ports = v4([203, 0, 113, 0], 24, 6, (80, 442), 1);
        assert!(!narrow.shadowed_by(&some_ports));
    }
}
