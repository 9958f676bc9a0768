//! Next hop: `bpf_fib_lookup` on the rewritten packet, then redirect; the kernel's stack when
//! the neighbour is not resolved yet.

use aya_ebpf::{
    bindings::{bpf_fib_lookup as FibLookup, xdp_action},
    helpers::{bpf_fib_lookup, bpf_redirect},
    programs::XdpContext,
};
use lvs_common::{counters::Counter, csum::replace2, AF_INET};

use crate::parse::Packet;

const BPF_FIB_LKUP_RET_SUCCESS: i64 = 0;
const BPF_FIB_LKUP_RET_NO_NEIGH: i64 = 7;

/// The kernel's `struct bpf_fib_lookup` (64 bytes) with plain fields, so it can be filled
/// field by field instead of through `mem::zeroed()`, which compiles to a looping memset.
#[repr(C)]
struct FibParams {
    family: u8,
    l4_protocol: u8,
    sport: u16,
    dport: u16,
    /// In: IP total length, **host order**. Out: MTU.
    tot_len: u16,
    ifindex: u32,
    tos: u32,
    /// Network order; IPv4 uses word 0.
    src: [u32; 4],
    dst: [u32; 4],
    vlan: u32,
    /// In: the first 4 bytes are `mark`, which must be 0.
    smac: [u8; 6],
    dmac: [u8; 6],
}
const _: () = assert!(core::mem::size_of::<FibParams>() == 64);

/// Forwards the (already rewritten) packet. Returns the counter that describes the verdict;
/// `Counter::Redirect` means XDP_REDIRECT, the others XDP_PASS.
#[inline(always)]
pub fn forward(ctx: &XdpContext, pkt: &Packet) -> Counter {
    let ip = pkt.ip;
    let (src, dst, tot_len, tos, ttl) = unsafe {
        (
            u32::from_ne_bytes((*ip).src_addr),
            u32::from_ne_bytes((*ip).dst_addr),
            u16::from_be_bytes((*ip).tot_len),
            (*ip).tos,
            (*ip).ttl,
        )
    };
    // The ports in the packet may have been rewritten; read them back for the lookup.
    let ports = unsafe { *(pkt.l4 as *const [u8; 4]) };
    let mut p = FibParams {
        family: AF_INET,
        l4_protocol: pkt.proto,
        sport: u16::from_ne_bytes([ports[0], ports[1]]),
        dport: u16::from_ne_bytes([ports[2], ports[3]]),
        tot_len,
        ifindex: ctx.ingress_ifindex() as u32,
        tos: tos as u32,
        src: [src, 0, 0, 0],
        dst: [dst, 0, 0, 0],
        vlan: 0,
        smac: [0; 6],
        dmac: [0; 6],
    };
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.ctx as *mut _,
            &mut p as *mut FibParams as *mut FibLookup,
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    };
    match rc {
        BPF_FIB_LKUP_RET_SUCCESS => {}
        // First packets towards a host the director has not resolved yet: the kernel forwards
        // this one (and ARPs); later packets find the neighbour.
        BPF_FIB_LKUP_RET_NO_NEIGH => return Counter::PassFibFallback,
        _ => return Counter::PassFibFailed,
    }
    // TTL about to expire: the kernel sends the ICMP time-exceeded.
    if ttl <= 1 {
        return Counter::PassTtlExceeded;
    }
    unsafe {
        // TTL and protocol share one 16-bit word of the header checksum.
        let old = u16::from_ne_bytes([ttl, pkt.proto]);
        let new = u16::from_ne_bytes([ttl - 1, pkt.proto]);
        (*ip).ttl = ttl - 1;
        (*ip).check = replace2(u16::from_ne_bytes((*ip).check), old, new).to_ne_bytes();
        (*pkt.eth).dst_addr = p.dmac;
        (*pkt.eth).src_addr = p.smac;
        if bpf_redirect(p.ifindex, 0) as u32 != xdp_action::XDP_REDIRECT {
            return Counter::PassFibFailed;
        }
    }
    Counter::Redirect
}
