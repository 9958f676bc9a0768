//! Benchmark harness for `BPF_PROG_TEST_RUN` (a separate object: lvsd never loads it).
//!
//! The kernel re-runs a program with `repeat > 1` on the buffer the previous iteration
//! rewrote. `bench_harness` puts the original frame back on every iteration, optionally makes
//! the iteration a different flow, and tail-calls the program under test. `bench_pass` is the
//! bare `XDP_PASS` floor: run directly, and as the harness's target to measure the harness
//! itself. `bench_insert` is the memory floor of a new connection: one insert of the frame's
//! connection key into a table laid out as `CONNS`. Types and names are in `lvs_common::bench`.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_xdp_adjust_head,
    macros::{map, xdp},
    maps::{Array, HashMap, ProgramArray},
    programs::XdpContext,
};
use lvs_common::{
    bench::{vary_octet, vary_port, BenchFrame, BENCH_FRAME_MAX, INSERT_FAILED, INSERT_OK, INSERT_SLOTS},
    flow::{ConnEntry, FlowKey},
    AF_INET,
};

/// The original frame and how to vary it (one entry, written by the bench runner).
#[map]
static BENCH_FRAME: Array<BenchFrame> = Array::with_max_entries(1, 0);

/// Slot 0: the program under test.
#[map]
static BENCH_TARGET: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// `bench_insert`'s table: the key and value types of `CONNS`, preallocated as it is. One
/// entry here; the runner loads a copy of this object with the size it measures.
#[map]
static INSERT_TABLE: HashMap<FlowKey, ConnEntry> = HashMap::with_max_entries(1, 0);

/// Inserts that succeeded and failed (one CPU runs a test at a time: plain increments).
#[map]
static INSERT_STATS: Array<u64> = Array::with_max_entries(INSERT_SLOTS, 0);

#[xdp]
pub fn bench_harness(ctx: XdpContext) -> u32 {
    match restore(&ctx) {
        Some(()) => {
            // Does not return when the slot holds a program.
            unsafe { BENCH_TARGET.tail_call(&ctx, 0) };
            xdp_action::XDP_ABORTED
        }
        None => xdp_action::XDP_ABORTED,
    }
}

#[xdp]
pub fn bench_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The memory floor of a new connection: the client-side key of the frame's IPv4 TCP segment
/// (fixed offsets: the benchmark's frames have no IP options) inserted with `BPF_ANY` into
/// `INSERT_TABLE`, as the dataplane inserts into `CONNS`, and counted. No lookup before or
/// after, no second table, no scheduling: what is left above this in `new_dr_8` is the rest.
#[xdp]
pub fn bench_insert(ctx: XdpContext) -> u32 {
    let Some(key) = frame_key(&ctx) else { return xdp_action::XDP_ABORTED };
    let value = ConnEntry {
        vaddr: key.dst,
        daddr: key.dst,
        vport: key.dport,
        dport: key.dport,
        fwd: 0,
        state: 0,
        flags: 0,
        svc_id: 0,
        dest_id: 0,
        expires_ns: 0,
        active: 0,
        ctl_mask: 0,
        ctl_mark: 0,
    };
    let slot = match INSERT_TABLE.insert(&key, &value, 0) {
        Ok(()) => INSERT_OK,
        Err(_) => INSERT_FAILED,
    };
    if let Some(n) = INSERT_STATS.get_ptr_mut(slot) {
        unsafe { *n += 1 };
    }
    xdp_action::XDP_PASS
}

#[inline(always)]
fn frame_key(ctx: &XdpContext) -> Option<FlowKey> {
    // Ethernet 14 bytes, IPv4 20 (addresses at 12 and 16), then the ports; all kept in
    // network order, as the dataplane's keys. Bytes: the IP header is 2 bytes off alignment.
    let h = ptr_at::<[u8; 24]>(ctx, 14)?;
    let h = unsafe { &*h };
    let src = u32::from_ne_bytes([h[12], h[13], h[14], h[15]]);
    let dst = u32::from_ne_bytes([h[16], h[17], h[18], h[19]]);
    let (sport, dport) = (u16::from_ne_bytes([h[20], h[21]]), u16::from_ne_bytes([h[22], h[23]]));
    Some(FlowKey {
        src: [src, 0, 0, 0],
        dst: [dst, 0, 0, 0],
        sport,
        dport,
        proto: 6,
        family: AF_INET,
        _pad: [0; 2],
    })
}

#[inline(always)]
fn restore(ctx: &XdpContext) -> Option<()> {
    let f = BENCH_FRAME.get_ptr_mut(0)?;
    let (len, seq, mask, port_off, addr_off) =
        unsafe { ((*f).len, (*f).seq, (*f).mask, (*f).port_off, (*f).addr_off) };
    // The helper's length must be a non-zero scalar the verifier can bound. A range check gets
    // folded by LLVM into one unsigned compare the verifier cannot follow, so map the value into
    // 1..=BENCH_FRAME_MAX arithmetically instead (userspace only writes lengths in that range).
    let len = ((len.wrapping_sub(1)) & (BENCH_FRAME_MAX as u32 - 1)) + 1;
    // A program that encapsulates (bpf_xdp_adjust_head with a negative delta) leaves the frame
    // longer at the front; move the start back so the original frame fits where it began.
    let cur = (ctx.data_end() - ctx.data()) as i32;
    if cur != len as i32 && unsafe { bpf_xdp_adjust_head(ctx.ctx, cur - len as i32) } != 0 {
        return None;
    }
    // Eight bytes at a time (userspace pads frames to a multiple of 8): a third of what
    // bpf_xdp_store_bytes costs, and the harness's cost is noise in every figure.
    let src = unsafe { (*f).bytes.as_ptr() } as *const u64;
    for i in 0..BENCH_FRAME_MAX / 8 {
        if i * 8 >= len as usize {
            break;
        }
        let dst = ptr_at::<u64>(ctx, i * 8)?;
        unsafe { *dst = *src.add(i) };
    }
    unsafe { (*f).seq = seq + 1 };

    let n = (seq as u32) & mask;
    // Offsets are masked to the frame map's size so the verifier sees them bounded; the bounds
    // check against data_end follows.
    let port = ptr_at::<[u8; 2]>(ctx, port_off as usize & (BENCH_FRAME_MAX - 1))?;
    // Checked as two bytes: LLVM turns a one-byte check into `ptr >= data_end`, from which
    // this verifier derives no readable range. An address octet is never a frame's last byte.
    let octet = ptr_at::<[u8; 2]>(ctx, addr_off as usize & (BENCH_FRAME_MAX - 1))?;
    unsafe {
        let p = u16::from_be_bytes(*port) ^ vary_port(n);
        *port = p.to_be_bytes();
        (*octet)[0] ^= vary_octet(n);
    }
    Some(())
}

/// A pointer to a `T` at `off` bytes into the frame, if the whole `T` is inside it.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Option<*mut T> {
    let start = ctx.data();
    if start + off + core::mem::size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some((start + off) as *mut T)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
