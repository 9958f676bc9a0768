//! Benchmark harness for `BPF_PROG_TEST_RUN` (a separate object: lvsd never loads it).
//!
//! The kernel re-runs a program with `repeat > 1` on the buffer the previous iteration
//! rewrote. `bench_harness` puts the original frame back on every iteration, optionally makes
//! the iteration a different flow, and tail-calls the program under test. `bench_pass` is the
//! bare `XDP_PASS` floor: run directly, and as the harness's target to measure the harness
//! itself. Types and names are in `lvs_common::bench`.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_xdp_adjust_head,
    macros::{map, xdp},
    maps::{Array, ProgramArray},
    programs::XdpContext,
};
use lvs_common::bench::{vary_octet, vary_port, BenchFrame, BENCH_FRAME_MAX};

/// The original frame and how to vary it (one entry, written by the bench runner).
#[map]
static BENCH_FRAME: Array<BenchFrame> = Array::with_max_entries(1, 0);

/// Slot 0: the program under test.
#[map]
static BENCH_TARGET: ProgramArray = ProgramArray::with_max_entries(1, 0);

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
