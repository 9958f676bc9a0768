//! The schedulers that choose by live connection counts: lc, wlc, sed, nq, fo and ovf.
//!
//! Each one is a single walk over the real servers in kernel order (newest first), offering
//! every server to a [`Chooser`] once; the dataplane drives the walk with `bpf_loop`, the host
//! tests with a plain loop. The comparisons are the kernel's, operator for operator, so ties go
//! the same way (the first server in kernel order wins) and 64-bit products wrap as they do in
//! the kernel.

use crate::service::{overhead, sched, DestCounters};

/// No server chosen (yet).
pub const NONE: u32 = u32::MAX;

/// The state of one walk. `#[repr(C)]` because the dataplane keeps it on the stack of the
/// `bpf_loop` caller and passes it to the callback by pointer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chooser {
    /// `sched::*`.
    pub sched: u32,
    /// Position (in kernel order) of the server chosen so far, or [`NONE`].
    pub found: u32,
    /// Its weight.
    pub weight: u32,
    /// 1 once the choice is final (nq found an idle server): the walk may stop.
    pub done: u32,
    /// Its cost: overhead (lc, wlc), active + 1 (sed, nq).
    pub cost: u64,
}

impl Chooser {
    pub const fn new(sched: u32) -> Chooser {
        Chooser { sched, found: NONE, weight: 0, done: 0, cost: 0 }
    }

    /// Offers the server at position `idx`. `usable` is false for a server that is gone or has
    /// the OVERLOAD flag (every scheduler here skips those); `weight` is its weight.
    #[inline(always)]
    pub fn offer(&mut self, idx: u32, usable: bool, weight: i32, c: &DestCounters) {
        if self.done != 0 || !usable || weight <= 0 {
            // Weight 0 is skipped by lc, nq, fo and ovf outright; wlc and sed compare it but it
            // can never win (`loh * 0 > doh * lw` is false), so skipping it is the same.
            return;
        }
        let w = weight as u32;
        match self.sched {
            sched::LC => {
                let doh = overhead(c);
                if self.found == NONE || doh < self.cost {
                    self.take(idx, w, doh);
                }
            }
            sched::WLC | sched::SED => {
                let doh = if self.sched == sched::WLC { overhead(c) } else { c.active.wrapping_add(1) };
                if self.found == NONE || self.beats(doh, w) {
                    self.take(idx, w, doh);
                }
            }
            sched::NQ => {
                let doh = c.active.wrapping_add(1);
                if c.active == 0 {
                    // An idle server is taken at once, wherever it is in the list.
                    self.take(idx, w, doh);
                    self.done = 1;
                } else if self.found == NONE || self.beats(doh, w) {
                    self.take(idx, w, doh);
                }
            }
            sched::FO => {
                if w > self.weight {
                    self.take(idx, w, 0);
                }
            }
            sched::OVF => {
                // A server takes connections while its active count is at most its weight.
                if c.active <= w as u64 && (self.found == NONE || w > self.weight) {
                    self.take(idx, w, 0);
                }
            }
            _ => {}
        }
    }

    /// The kernel's `(u64)loh * d.weight > (u64)doh * least.weight`, wrapping like it.
    #[inline(always)]
    fn beats(&self, doh: u64, w: u32) -> bool {
        self.cost.wrapping_mul(w as u64) > doh.wrapping_mul(self.weight as u64)
    }

    #[inline(always)]
    fn take(&mut self, idx: u32, w: u32, cost: u64) {
        self.found = idx;
        self.weight = w;
        self.cost = cost;
    }
}

/// Whether `sched` is one of the schedulers [`Chooser`] implements.
pub const fn is_dynamic(s: u32) -> bool {
    matches!(s, sched::LC | sched::WLC | sched::SED | sched::NQ | sched::FO | sched::OVF)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (usable, weight, active, inactive) in kernel order.
    fn choose(s: u32, dests: &[(bool, i32, u64, u64)]) -> Option<u32> {
        let mut c = Chooser::new(s);
        for (i, &(usable, w, a, ia)) in dests.iter().enumerate() {
            c.offer(i as u32, usable, w, &DestCounters { active: a, inactive: ia, ..Default::default() });
        }
        (c.found != NONE).then_some(c.found)
    }

    #[test]
    fn lc_takes_the_least_overhead_first_in_kernel_order_on_ties() {
        assert_eq!(choose(sched::LC, &[(true, 1, 0, 0), (true, 1, 0, 0)]), Some(0));
        // One active connection (256) outweighs 255 inactive ones.
        assert_eq!(choose(sched::LC, &[(true, 1, 1, 0), (true, 1, 0, 255)]), Some(1));
        assert_eq!(choose(sched::LC, &[(true, 1, 1, 0), (true, 1, 0, 256)]), Some(0));
        // Weights do not matter except 0, and overloaded servers are skipped.
        assert_eq!(choose(sched::LC, &[(true, 100, 1, 0), (true, 1, 0, 0)]), Some(1));
        assert_eq!(choose(sched::LC, &[(true, 0, 0, 0), (true, 1, 5, 0)]), Some(1));
        assert_eq!(choose(sched::LC, &[(false, 1, 0, 0), (true, 1, 5, 0)]), Some(1));
        assert_eq!(choose(sched::LC, &[(false, 1, 0, 0), (true, 0, 0, 0)]), None);
    }

    #[test]
    fn wlc_divides_by_weight_and_keeps_the_earlier_on_ties() {
        // Fresh servers: the head of kernel order.
        assert_eq!(choose(sched::WLC, &[(true, 1, 0, 0), (true, 1, 0, 0), (true, 1, 0, 0)]), Some(0));
        // The spec's example: after C got one connection, B, then A.
        assert_eq!(choose(sched::WLC, &[(true, 1, 1, 0), (true, 1, 0, 0), (true, 1, 0, 0)]), Some(1));
        // 2 active at weight 2 ties 1 active at weight 1: the earlier stays.
        assert_eq!(choose(sched::WLC, &[(true, 2, 2, 0), (true, 1, 1, 0)]), Some(0));
        assert_eq!(choose(sched::WLC, &[(true, 1, 1, 0), (true, 2, 2, 0)]), Some(0));
        assert_eq!(choose(sched::WLC, &[(true, 1, 1, 0), (true, 3, 2, 0)]), Some(1));
        // Weight 0 never wins, even idle; overloaded is skipped.
        assert_eq!(choose(sched::WLC, &[(true, 0, 0, 0), (true, 1, 9, 9)]), Some(1));
        assert_eq!(choose(sched::WLC, &[(true, 1, 9, 9), (true, 0, 0, 0)]), Some(0));
        assert_eq!(choose(sched::WLC, &[(false, 5, 0, 0), (true, 1, 9, 9)]), Some(1));
        assert_eq!(choose(sched::WLC, &[(true, 0, 0, 0)]), None);
    }

    #[test]
    fn sed_ignores_inactive_connections() {
        assert_eq!(choose(sched::SED, &[(true, 1, 0, 1000), (true, 1, 1, 0)]), Some(0));
        // (1+1)/2 = 1 ties (0+1)/1 = 1: the earlier stays.
        assert_eq!(choose(sched::SED, &[(true, 2, 1, 0), (true, 1, 0, 0)]), Some(0));
        assert_eq!(choose(sched::SED, &[(true, 2, 2, 0), (true, 1, 0, 0)]), Some(1));
    }

    #[test]
    fn nq_takes_an_idle_server_at_once() {
        // The idle server wins even though a heavier server later costs less per weight.
        assert_eq!(choose(sched::NQ, &[(true, 1, 3, 0), (true, 1, 0, 50), (true, 100, 1, 0)]), Some(1));
        assert_eq!(choose(sched::NQ, &[(true, 1, 3, 0), (true, 100, 1, 0)]), Some(1));
        // Idle but weight 0 or overloaded: skipped.
        assert_eq!(choose(sched::NQ, &[(true, 0, 0, 0), (false, 1, 0, 0), (true, 1, 2, 0)]), Some(2));
    }

    #[test]
    fn fo_takes_the_highest_weight_first_on_ties() {
        assert_eq!(choose(sched::FO, &[(true, 1, 0, 0), (true, 3, 99, 0), (true, 3, 0, 0)]), Some(1));
        assert_eq!(choose(sched::FO, &[(false, 9, 0, 0), (true, 2, 0, 0)]), Some(1));
        assert_eq!(choose(sched::FO, &[(true, 0, 0, 0)]), None);
    }

    #[test]
    fn ovf_fills_the_heaviest_while_active_is_at_most_its_weight() {
        assert_eq!(choose(sched::OVF, &[(true, 2, 2, 0), (true, 3, 3, 0)]), Some(1));
        assert_eq!(choose(sched::OVF, &[(true, 2, 2, 0), (true, 3, 4, 0)]), Some(0));
        assert_eq!(choose(sched::OVF, &[(true, 2, 3, 0), (true, 3, 4, 0)]), None);
        // Ties: the first in kernel order; inactive connections don't count.
        assert_eq!(choose(sched::OVF, &[(true, 3, 0, 500), (true, 3, 0, 0)]), Some(0));
    }

    #[test]
    fn products_wrap_like_the_kernels() {
        // loh * w overflows u64 in the kernel too; the comparison uses the wrapped values.
        let big = u64::from(u32::MAX);
        let got = choose(sched::WLC, &[(true, i32::MAX, big, big), (true, i32::MAX, 0, 0)]);
        let loh = (big << 8) + big;
        let wrapped = loh.wrapping_mul(i32::MAX as u64) > 0u64.wrapping_mul(i32::MAX as u64);
        assert_eq!(got, Some(if wrapped { 1 } else { 0 }));
    }
}
