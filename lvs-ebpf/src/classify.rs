//! The firewall-mark classifier and IPVS's service lookup order.

use lvs_common::{
    classify::{ClassRule, CTL_PORT0_SERVICES, CTL_RULE_SET, MAX_CLASS_RULES},
    service::SvcKey,
    AF_INET,
};

use crate::maps::{ADDR_FILTER, CLASSIFIER, LOOKUP_CTL, SVC_INDEX};

/// [`find_service`]'s answer when no service takes the packet.
pub const NO_SERVICE: u32 = u32::MAX;

/// The packet's firewall mark: the first matching rule's, or 0. With no rules loaded this is
/// one inlined array read. `dport` in host order.
///
/// A plain bounded loop, not `bpf_loop`: a rule test is a handful of instructions, and the
/// callback's indirect call and map lookup per rule cost about 11 ns each (measured with 64
/// rules: 700 ns against 46 ns for this loop), several times the test itself. The verifier walks at most `MAX_CLASS_RULES`
/// iterations of a small body.
#[inline(always)]
fn mark_of(daddr: u32, proto: u8, dport: u16) -> u32 {
    first_mark(|r| r.matches_v4(daddr, proto, dport))
}

/// The mark of the first rule of the live set that `matches`, or 0: the walk of both
/// families' classifiers.
#[inline(always)]
pub fn first_mark(matches: impl Fn(&ClassRule) -> bool) -> u32 {
    // The live set is read once: a reload flips this word after writing the other set
    // completely, so the walk below never sees a half-written set.
    let live = match LOOKUP_CTL.get(CTL_RULE_SET) {
        Some(v) if *v != 0 => *v - 1,
        _ => return 0,
    };
    let Some(set) = CLASSIFIER.get(live) else { return 0 };
    let count = set.count as usize;
    let mut i = 0;
    while i < MAX_CLASS_RULES && i < count {
        if let Some(r) = set.rules.get(i) {
            if matches(r) {
                return r.mark;
            }
        }
        i += 1;
    }
    0
}

/// [`listed`]: the destination may be a virtual address.
pub const DST_LISTED: u8 = 1;
/// [`listed`]: the source may be a real server or a virtual address.
pub const SRC_LISTED: u8 = 2;

/// Which of a packet's addresses (network order) may concern a service
/// (`lvs_common::prefilter`): [`DST_LISTED`] unless the destination's bit is clear,
/// [`SRC_LISTED`] unless the source's is; both while the filter is not ready or a classifier
/// rule set is live. Two inlined array reads; for traffic that is none of the director's
/// business (0) they replace the connection, service and DR-reply lookups, and each bit alone
/// spares one connection lookup: a client-side `CONNS` key's destination is a virtual address,
/// a `CONNS_OUT` key's source a real server.
#[inline(always)]
pub fn listed(saddr: u32, daddr: u32) -> u8 {
    if matches!(LOOKUP_CTL.get(CTL_RULE_SET), Some(v) if *v != 0)
        || !matches!(ADDR_FILTER.get(lvs_common::prefilter::FILTER_READY), Some(v) if *v != 0)
    {
        return DST_LISTED | SRC_LISTED;
    }
    (filter_has(daddr) as u8) | ((filter_has(saddr) as u8) << 1)
}

#[inline(always)]
fn filter_has(addr: u32) -> bool {
    let (word, mask) = lvs_common::prefilter::word_of(addr);
    // A missing word (never: the index is in range) counts as set, so nothing is lost.
    ADDR_FILTER.get(word).is_none_or(|w| *w & mask != 0)
}

/// The `SERVICES` slot for a packet that starts a connection to `daddr:dport` (network
/// order), in `ip_vs_service_find`'s order: the firewall-mark service of the packet's mark,
/// then (protocol, address, port), then the port-0 service of (protocol, address) when any
/// exists. [`NO_SERVICE`] when none.
///
/// A BPF subprogram (not inlined) returning a plain number: however the lookup went (which
/// rule matched, which of the three lookups answered), the caller continues in one state, so
/// the verifier explores the rest of the program once. Inlined, every exit of the rule walk
/// reached the scheduler and persistence in a state of its own, and the program went past the
/// verifier's million instructions.
#[inline(never)]
pub fn find_service(daddr: u32, dport: u16, proto: u8) -> u32 {
    let mark = mark_of(daddr, proto, u16::from_be(dport));
    if mark != 0 {
        if let Some(id) = unsafe { SVC_INDEX.get(&SvcKey::fwmark(mark, AF_INET)) } {
            return *id;
        }
    }
    let mut key = SvcKey { addr: [daddr, 0, 0, 0], port: dport, proto, family: AF_INET };
    if let Some(id) = unsafe { SVC_INDEX.get(&key) } {
        return *id;
    }
    match LOOKUP_CTL.get(CTL_PORT0_SERVICES) {
        Some(n) if *n != 0 => {
            key.port = 0;
            unsafe { SVC_INDEX.get(&key) }.copied().unwrap_or(NO_SERVICE)
        }
        _ => NO_SERVICE,
    }
}
