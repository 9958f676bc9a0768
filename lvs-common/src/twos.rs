//! The twos (power of two choices) scheduler of kernel 6.x (`ip_vs_twos.c`).
//!
//! Two servers are drawn at random, each with probability proportional to its weight, among
//! the servers that may take a new connection (not overloaded, weight > 0); of the two, the one
//! with the lower overhead per weight wins (`w2 * oh1 > w1 * oh2` picks the second, so a tie
//! keeps the first draw). Two walks in kernel order: the first sums the weights, the second
//! finds where each draw falls. The dataplane drives both with `bpf_loop`, the host tests with
//! plain loops; the arithmetic is the kernel's `int` arithmetic.

use crate::service::{overhead, DestCounters};

/// No server drawn (yet).
pub const NONE: u32 = u32::MAX;

/// The range of the draws: `Σ weight + 1` over the eligible servers, so a draw is
/// `0..=Σ weight` and 0 falls on the first one (the kernel's "inclusive" range; the first
/// eligible server is slightly favoured). `None` when no server is eligible.
#[inline(always)]
pub fn twos_range(sum_of_weights: u32) -> Option<u32> {
    (sum_of_weights != 0).then_some(sum_of_weights.wrapping_add(1))
}

/// A uniform draw below `range` from a random 32-bit value. The kernel's
/// `get_random_u32_below` is exactly uniform; a plain remainder is off by at most
/// `range / 2^32`, far below what any test or workload can see.
#[inline(always)]
pub fn twos_draw(random: u32, range: u32) -> u32 {
    random.checked_rem(range).unwrap_or(0)
}

/// The second walk: where the two draws fall, and the overheads to compare. `#[repr(C)]`: the
/// dataplane keeps it on the `bpf_loop` caller's stack.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TwosPick {
    /// What is left of each draw (the kernel's `rweight1/2`).
    pub r1: i32,
    pub r2: i32,
    /// Positions (kernel order) of the two choices, or [`NONE`].
    pub c1: u32,
    pub c2: u32,
    /// Their weights and overheads (`active * 256 + inactive` as an `int`).
    pub w1: i32,
    pub w2: i32,
    pub oh1: i32,
    pub oh2: i32,
}

impl TwosPick {
    /// Starts the walk with the two draws (each below [`twos_range`]).
    pub const fn new(draw1: u32, draw2: u32) -> TwosPick {
        TwosPick { r1: draw1 as i32, r2: draw2 as i32, c1: NONE, c2: NONE, w1: -1, w2: -1, oh1: 0, oh2: 0 }
    }

    /// Offers the server at position `idx`; `eligible` is false for one that is gone or
    /// overloaded. Returns true once both choices are made (the walk may stop).
    #[inline(always)]
    pub fn offer(&mut self, idx: u32, eligible: bool, weight: i32, c: &DestCounters) -> bool {
        if !eligible || weight <= 0 {
            return self.done();
        }
        self.r1 = self.r1.wrapping_sub(weight);
        self.r2 = self.r2.wrapping_sub(weight);
        let oh = overhead(c) as i32;
        if self.r1 <= 0 && self.c1 == NONE {
            (self.c1, self.w1, self.oh1) = (idx, weight, oh);
        }
        if self.r2 <= 0 && self.c2 == NONE {
            (self.c2, self.w2, self.oh2) = (idx, weight, oh);
        }
        self.done()
    }

    #[inline(always)]
    pub fn done(&self) -> bool {
        self.c1 != NONE && self.c2 != NONE
    }

    /// The position chosen: the second draw when it has the lower overhead per weight.
    #[inline(always)]
    pub fn choice(&self) -> Option<u32> {
        if self.c1 == NONE {
            // Only when servers changed under a dataplane walk (the kernel's draws always land).
            return (self.c2 != NONE).then_some(self.c2);
        }
        if self.c2 != NONE && self.w2.wrapping_mul(self.oh1) > self.w1.wrapping_mul(self.oh2) {
            return Some(self.c2);
        }
        (self.c1 != NONE).then_some(self.c1)
    }
}

/// The whole scheduler on the host: servers `(weight, overloaded, counters)` in kernel order
/// and two random values. The reference the dataplane follows step by step.
pub fn twos_pick(dests: &[(i32, bool, DestCounters)], rand1: u32, rand2: u32) -> Option<usize> {
    let sum = dests.iter().filter(|d| !d.1 && d.0 > 0).fold(0u32, |s, d| s.wrapping_add(d.0 as u32));
    let range = twos_range(sum)?;
    let mut p = TwosPick::new(twos_draw(rand1, range), twos_draw(rand2, range));
    for (i, (w, ov, c)) in dests.iter().enumerate() {
        if p.offer(i as u32, !ov, *w, c) {
            break;
        }
    }
    p.choice().map(|i| i as usize)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn idle(w: i32) -> (i32, bool, DestCounters) {
        (w, false, DestCounters::default())
    }

    fn with(w: i32, active: u64, inactive: u64) -> (i32, bool, DestCounters) {
        (w, false, DestCounters { active, inactive, ..Default::default() })
    }

    /// Draws fall on the cumulative weights in kernel order; 0 falls on the first server and
    /// the largest draw (Σw) on the last.
    #[test]
    fn draws_fall_on_cumulative_weights() {
        let d = [idle(2), idle(3), idle(1)]; // sum 6, range 7: draws 0..=6
        let at = |r: u32| twos_pick(&d, r, r);
        assert_eq!([0, 1, 2, 3, 4, 5, 6].map(at), [Some(0), Some(0), Some(0), Some(1), Some(1), Some(1), Some(2)]);
    }

    /// The less loaded of the two per weight wins; a tie keeps the first draw.
    #[test]
    fn lower_overhead_per_weight_wins() {
        let d = [with(1, 1, 0), with(1, 0, 5)]; // overheads 256 and 5
        assert_eq!(twos_pick(&d, 1, 2), Some(1)); // draws: first server, then second
        assert_eq!(twos_pick(&d, 2, 1), Some(1));
        let tie = [with(1, 0, 3), with(1, 0, 3)];
        assert_eq!(twos_pick(&tie, 1, 2), Some(0));
        assert_eq!(twos_pick(&tie, 2, 1), Some(1));
        // Per weight: 512/2 < 300/1.
        let d = [with(1, 0, 300), with(2, 2, 0)];
        assert_eq!(twos_pick(&d, 1, 3), Some(1));
    }

    /// Weight 0 and overloaded servers are never drawn; none eligible, no server.
    #[test]
    fn weight_zero_and_overloaded_never_chosen() {
        let d = [idle(0), (5, true, DestCounters::default()), idle(2)];
        for r in 0..1000u32 {
            assert_eq!(twos_pick(&d, r.wrapping_mul(2654435761), r), Some(2));
        }
        assert_eq!(twos_pick(&[idle(0), (1, true, DestCounters::default())], 1, 2), None);
        assert_eq!(twos_pick(&[], 1, 2), None);
    }

    /// Over many draws with idle servers each server is chosen in proportion to its weight
    /// (the first one slightly more: draw 0 lands on it too).
    #[test]
    fn idle_servers_share_by_weight() {
        let d = [idle(1), idle(3), idle(6)];
        let mut seen = [0u32; 3];
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
        };
        for _ in 0..110_000 {
            seen[twos_pick(&d, next(), next()).unwrap()] += 1;
        }
        // Expected shares 2/11, 3/11, 6/11 of 110000: 20000, 30000, 60000.
        let want = [20_000i64, 30_000, 60_000];
        let off: Vec<i64> = seen.iter().zip(want).map(|(&s, w)| s as i64 - w).collect();
        assert!(off.iter().all(|o| o.abs() < 1500), "{seen:?}");
    }
}
