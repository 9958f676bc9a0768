//! The firewall-mark classifier and IPVS's service lookup order.

use core::ffi::c_void;

use aya_ebpf::helpers::bpf_loop;
use lvs_common::{
    classify::{CTL_PORT0_SERVICES, CTL_RULE_SET, MAX_CLASS_RULES},
    service::SvcKey,
    AF_INET,
};

use crate::{
    maps::{CLASSIFIER, LOOKUP_CTL, SVC_INDEX},
    parse::Packet,
};

/// State shared with the `bpf_loop` callback (lives on the caller's stack).
#[repr(C)]
struct ClassWalk {
    /// `CLASSIFIER` index of the set read at the start; every step reads that same set.
    set: u32,
    daddr: u32,
    /// Destination port, host order.
    dport: u16,
    proto: u8,
    _pad: u8,
    /// The mark found, 0 while none.
    mark: u32,
}

/// One rule. Under `bpf_loop` the verifier checks the body once, whatever the rule count.
extern "C" fn class_step(i: u64, ctx: *mut c_void) -> i64 {
    let w = unsafe { &mut *(ctx as *mut ClassWalk) };
    let Some(set) = CLASSIFIER.get(w.set) else { return 1 };
    let Some(r) = set.rules.get(i as usize) else { return 1 };
    if r.matches_v4(w.daddr, w.proto, w.dport) {
        w.mark = r.mark;
        return 1;
    }
    0
}

/// The packet's firewall mark: the first matching rule's, or 0. With no rules loaded this is
/// one inlined array read.
#[inline(always)]
fn mark_of(pkt: &Packet) -> u32 {
    // The live set is read once: a reload flips this word after writing the other set
    // completely, so the walk below never sees a half-written set.
    let live = match LOOKUP_CTL.get(CTL_RULE_SET) {
        Some(v) if *v != 0 => *v - 1,
        _ => return 0,
    };
    let Some(set) = CLASSIFIER.get(live) else { return 0 };
    let count = set.count;
    if count == 0 || count as usize > MAX_CLASS_RULES {
        return 0;
    }
    let mut walk =
        ClassWalk { set: live, daddr: pkt.daddr, dport: u16::from_be(pkt.dport), proto: pkt.proto, _pad: 0, mark: 0 };
    unsafe {
        bpf_loop(count, class_step as *mut c_void, &mut walk as *mut ClassWalk as *mut c_void, 0);
    }
    walk.mark
}

/// The `SERVICES` slot for a packet that starts a connection, in `ip_vs_service_find`'s
/// order: the firewall-mark service of the packet's mark, then (protocol, address, port), then
/// the port-0 service of (protocol, address) when any exists.
#[inline(always)]
pub fn find_service(pkt: &Packet) -> Option<u32> {
    let mark = mark_of(pkt);
    if mark != 0 {
        if let Some(id) = unsafe { SVC_INDEX.get(&SvcKey::fwmark(mark, AF_INET)) } {
            return Some(*id);
        }
    }
    let mut key = SvcKey { addr: [pkt.daddr, 0, 0, 0], port: pkt.dport, proto: pkt.proto, family: AF_INET };
    if let Some(id) = unsafe { SVC_INDEX.get(&key) } {
        return Some(*id);
    }
    match LOOKUP_CTL.get(CTL_PORT0_SERVICES) {
        Some(n) if *n != 0 => {
            key.port = 0;
            unsafe { SVC_INDEX.get(&key) }.copied()
        }
        _ => None,
    }
}
