//! The benchmark harness's map types: per-packet costs through `BPF_PROG_TEST_RUN`.
//!
//! With `repeat > 1` the kernel runs the program again on the buffer the previous iteration
//! left behind, so a NAT program would measure its own output from iteration 2 on. The harness
//! program (a separate object, `bench-harness`, never loaded by lvsd) therefore copies the
//! original frame from [`BENCH_FRAME`](map_names::BENCH_FRAME) into the packet on every
//! iteration, optionally varies one port and one address octet so that iterations are different
//! flows, and tail-calls the program under test through [`BENCH_TARGET`](map_names::BENCH_TARGET).

/// Largest frame the harness can restore (a power of two).
pub const BENCH_FRAME_MAX: usize = 256;

/// Bits of the iteration number the harness can fold into a frame: 16 into a port, 8 into an
/// address octet.
pub const BENCH_VARY_BITS: u32 = 24;

/// Names of the harness object's maps and programs.
pub mod map_names {
    /// `Array<BenchFrame>`, one entry.
    pub const BENCH_FRAME: &str = "BENCH_FRAME";
    /// `ProgramArray`, one entry: the program under test.
    pub const BENCH_TARGET: &str = "BENCH_TARGET";
    /// The harness entry point.
    pub const HARNESS_PROGRAM: &str = "bench_harness";
    /// A bare `XDP_PASS` program: the floor, run directly and as the harness's target.
    pub const PASS_PROGRAM: &str = "bench_pass";
    /// The insert floor: a connection key from the frame inserted into [`INSERT_TABLE`].
    pub const INSERT_PROGRAM: &str = "bench_insert";
    /// `HashMap<FlowKey, ConnEntry>`, preallocated like `CONNS`; its size is set at load.
    pub const INSERT_TABLE: &str = "INSERT_TABLE";
    /// `Array<u64>` of [`INSERT_SLOTS`](super::INSERT_SLOTS): inserts that succeeded, failed.
    pub const INSERT_STATS: &str = "INSERT_STATS";
}

/// `INSERT_STATS` slots.
pub const INSERT_OK: u32 = 0;
pub const INSERT_FAILED: u32 = 1;
pub const INSERT_SLOTS: u32 = 2;

/// The frame every iteration starts from, and how to vary it (value of `BENCH_FRAME`).
/// 280 bytes, no hidden padding.
///
/// On iteration `i` the harness takes `n = i & mask` and XORs the low 16 bits of `n` (network
/// order) into the 16-bit field at `port_off` and bits 16..24 into the byte at `addr_off`. With
/// `mask == 0` every iteration gets the very same packet; the harness executes the same
/// instructions either way, so its cost does not depend on the case. Varied frames keep their
/// original checksums (stale): the dataplane never verifies checksums, it only updates them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchFrame {
    /// Iterations run since userspace last wrote the entry. Not per CPU: one test run at a
    /// time, and a per-CPU count would start over whenever the thread moves to another CPU.
    pub seq: u64,
    /// Frame length in bytes, 1..=`BENCH_FRAME_MAX`.
    pub len: u32,
    /// Mask applied to `seq` (at most `BENCH_VARY_BITS` bits).
    pub mask: u32,
    /// Byte offset of the 16-bit field (a port) that takes bits 0..16.
    pub port_off: u32,
    /// Byte offset of the byte (an address octet) that takes bits 16..24.
    pub addr_off: u32,
    /// The frame, `len` bytes used.
    pub bytes: [u8; BENCH_FRAME_MAX],
}

impl Default for BenchFrame {
    fn default() -> Self {
        BenchFrame {
            seq: 0,
            len: 0,
            mask: 0,
            port_off: 0,
            addr_off: 0,
            bytes: [0; BENCH_FRAME_MAX],
        }
    }
}

const _: () = assert!(core::mem::size_of::<BenchFrame>() == 24 + BENCH_FRAME_MAX);
// The harness bounds lengths and offsets for the verifier by masking with `BENCH_FRAME_MAX - 1`.
const _: () = assert!(BENCH_FRAME_MAX.is_power_of_two());
const _: () = assert!(core::mem::offset_of!(BenchFrame, bytes) == 24);

/// The 16-bit value XORed into the port field for iteration value `n` (already masked), as the
/// port's host-order number.
#[inline(always)]
pub const fn vary_port(n: u32) -> u16 {
    n as u16
}

/// The value XORed into the address octet for `n`.
#[inline(always)]
pub const fn vary_octet(n: u32) -> u8 {
    (n >> 16) as u8
}

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::BenchFrame {}
}
