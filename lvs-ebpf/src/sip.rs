//! The sip persistence engine (`--pe sip`): a new UDP datagram of a persistent service with it
//! is scheduled by its SIP Call-ID as well as its client network (`ip_vs_sip_fill_param`).
//!
//! The search runs in a program of its own, `lvs_xdp_sip`, for the verifier's sake: `lvs_xdp`
//! uses most of its million processed instructions already. The hand-over, all on one CPU
//! (a tail call does not leave it) through the per-CPU `SIP_WORK`:
//! 1. `lvs_xdp` reaches the persistence step for such a service; [`gate`] finds no result for
//!    this packet, notes the flow and service, and `lvs_xdp` tail-calls `lvs_xdp_sip`;
//! 2. `lvs_xdp_sip` ([`process`]) copies the first `sip::SCAN_MAX` bytes of the payload, runs
//!    `lvs_common::sip::Scan` over them under `bpf_loop`, records the Call-ID for the listing
//!    (`SIP_CALLIDS`, under the template's key) and marks the result ready;
//! 3. it tail-calls `lvs_xdp` again (`XDP_MAIN_SLOT`), which takes the same path to [`gate`]:
//!    the result is for this flow, so it is consumed, and the template key carries the
//!    Call-ID's hash (`persist::scope`). No Call-ID: the datagram is dropped, as the kernel
//!    drops it when `fill_param` fails.

use core::ffi::c_void;

use aya_ebpf::{helpers::bpf_loop, programs::XdpContext, EbpfContext};
use lvs_common::{
    counters::Counter,
    flow::FlowKey,
    persist::{fill_template_key, SVC_F_PERSISTENT},
    service::svc_conf_flags,
    sip::{key_hash, mark_key, CallId, Scan, FOUND, SCAN_MAX},
};

use crate::{
    maps::{SERVICES, SIP_CALLIDS},
    parse::{self, IPPROTO_UDP},
    persist,
};

/// Per-CPU hand-over between `lvs_xdp` and `lvs_xdp_sip` (nothing in it outlives the packet).
#[repr(C)]
pub struct SipWork {
    /// The client-side key and service of the datagram the search is for.
    pub key: FlowKey,
    pub svc_id: u32,
    /// 1 from the search's end until `lvs_xdp` takes the result.
    pub ready: u32,
    /// 1: a Call-ID was found.
    pub found: u32,
    /// `sip::key_hash` of the Call-ID (0 when none): read by `persist::scope`.
    pub hash: u32,
    pub scan: Scan,
    pub callid: CallId,
    pub tkey: FlowKey,
    pub buf: [u8; SCAN_MAX],
}

/// [`gate`]'s answers.
pub const GO: u32 = 0;
pub const SCAN: u32 = 1;
pub const DROP: u32 = 2;

/// At the persistence step of a persistent `--pe sip` service: [`GO`] with the Call-ID's hash
/// in place for `persist::scope`, [`SCAN`] when the search must run first (the caller
/// tail-calls it), [`DROP`] when there is no Call-ID, or the packet is not UDP (the kernel's
/// engine fails for anything else, and `ip_vs_sched_persist` drops).
///
/// A subprogram returning a number, so that `lvs_xdp` continues in one state after it.
#[inline(never)]
pub fn gate(svc_id: u32, svc_flags: u32, key: &FlowKey) -> u32 {
    let Some(w) = crate::maps::SIP_WORK.get_ptr_mut(0) else { return DROP };
    let both = svc_conf_flags::PE_SIP | SVC_F_PERSISTENT;
    if svc_flags & both != both {
        // Any other service: no Call-ID share in its keys ([`pe_share`]).
        unsafe { (*w).hash = 0 };
        return GO;
    }
    if key.proto != IPPROTO_UDP {
        return DROP;
    }
    unsafe {
        if (*w).ready == 1 && (*w).svc_id == svc_id && (*w).key == *key {
            (*w).ready = 0;
            return if (*w).found == 1 { GO } else { DROP };
        }
        (*w).ready = 0;
        (*w).found = 0;
        (*w).hash = 0;
        (*w).svc_id = svc_id;
        (*w).key = *key;
    }
    SCAN
}

/// The Call-ID share of the template key for the IPv4 packet being scheduled on this CPU, as
/// [`gate`] left it: 0 unless its service has the sip engine. A subprogram returning a
/// number, so that nothing it reads stays live across the scheduler.
#[inline(never)]
pub fn pe_share() -> u32 {
    match crate::maps::SIP_WORK.get_ptr(0) {
        Some(w) => unsafe { (*w).hash },
        None => 0,
    }
}

/// State of the `bpf_loop` walk (on the stack, as the helper wants).
#[repr(C)]
struct Walk {
    n: u32,
    _pad: u32,
}

/// One byte of the search; 1 stops the loop.
extern "C" fn step(i: u64, _ctx: *mut c_void) -> i64 {
    let Some(w) = crate::maps::SIP_WORK.get_ptr_mut(0) else { return 1 };
    unsafe {
        let b = *(*w).buf.as_ptr().add(i as usize & (SCAN_MAX - 1));
        if (*w).scan.step(b, &mut (*w).callid) {
            1
        } else {
            0
        }
    }
}

/// `lvs_xdp_sip`: the search for the packet [`gate`] noted. `None`: go back to `lvs_xdp`
/// with the result ready.
#[inline(always)]
pub fn process(ctx: &XdpContext) -> Option<Counter> {
    let w = crate::maps::SIP_WORK.get_ptr_mut(0)?;
    let pkt = match parse::parse(ctx) {
        Ok(p) => p,
        Err(c) => return Some(c),
    };
    let ip_len = (unsafe { (*pkt.ip).vihl } & 0x0f) as u32 * 4;
    let tot_len = pkt.tot_len as u32;
    // UDP payload: after the IP header and the 8-byte UDP header, up to the IP total length
    // (what the kernel searches: skb->len past the headers).
    let plen = tot_len.saturating_sub(ip_len + 8);
    let n = if plen > SCAN_MAX as u32 { SCAN_MAX as u32 } else { plen };

    let off = 14 + ip_len + 8;
    unsafe {
        (*w).scan = Scan::new();
        (*w).callid.len = 0;
        (*w).callid.hash = 0;
        (*w).found = 0;
        (*w).hash = 0;
        if n > 0 {
            // 1..=SCAN_MAX in a form the verifier follows (the helper refuses a length that
            // may be 0): the volatile read keeps the compiler from folding the mask away.
            let n = (core::ptr::read_volatile(&n).wrapping_sub(1) & (SCAN_MAX as u32 - 1)) + 1;
            let buf = (*w).buf.as_mut_ptr() as *mut c_void;
            if aya_ebpf::helpers::bpf_xdp_load_bytes(ctx.as_ptr() as *mut _, off, buf, n) == 0 {
                let mut walk = Walk { n, _pad: 0 };
                bpf_loop(n, step as *mut c_void, &mut walk as *mut Walk as *mut c_void, 0);
            }
        }
        if (*w).scan.result == FOUND {
            let h = key_hash((*w).callid.hash);
            (*w).hash = h;
            (*w).found = 1;
            // The listing's copy of the Call-ID, under the key the template gets (or has).
            if let Some(svc) = SERVICES.get((*w).svc_id) {
                if let Some(scope) = persist::scope(svc, &(*w).key) {
                    fill_template_key(&mut (*w).tkey, &(*w).key, &scope);
                    mark_key(&mut (*w).tkey, h);
                    let _ = SIP_CALLIDS.insert(&(*w).tkey, &(*w).callid, 0);
                }
            }
        }
        (*w).ready = 1;
    }
    None
}
