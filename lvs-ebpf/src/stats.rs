//! Per-CPU counters: every packet bumps exactly one verdict counter.

use lvs_common::counters::Counter;

use crate::maps::STATS;

#[inline(always)]
pub fn count(c: Counter) {
    if let Some(p) = STATS.get_ptr_mut(c as u32) {
        // Per-CPU slot: no other CPU writes it, a plain add is enough.
        unsafe { *p += 1 };
    }
}
