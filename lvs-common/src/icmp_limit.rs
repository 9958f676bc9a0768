//! The rate limit on ICMP errors the director originates (port unreachable when no real server
//! can take a connection): the kernel's global ICMP budget, `net.ipv4.icmp_msgs_per_sec`
//! (1000) credits per second up to `net.ipv4.icmp_msgs_burst` (50), which IPVS's `icmp_send`
//! is subject to and which IPv4 and IPv6 share. Without it, a flood of SYNs to a service
//! whose real servers are all quiesced would be answered one for one.
//!
//! As in the kernel, fragmentation needed / packet too big are exempt (path MTU discovery must
//! not be rate limited: `icmpv4_mask_allow`, `icmpv6_mask_allow`), and relayed errors are not
//! ours to limit. Unlike the kernel, the bucket is per CPU (a per-CPU array: no atomics on the
//! packet path), so a director with N CPUs may send up to N times the rate; the kernel's
//! per-destination limit (`icmp_ratelimit`, kept per peer) is not applied.

/// Credits added per second.
pub const ICMP_MSGS_PER_SEC: u64 = 1000;
/// Most credits held.
pub const ICMP_MSGS_BURST: u64 = 50;
const NS_PER_SEC: u64 = 1_000_000_000;

/// Value of `ICMP_BUDGET` (per-CPU array, one slot). 16 bytes, no padding. A zeroed bucket (as
/// the map starts) is full at its first use.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IcmpBucket {
    /// Credits, in billionths (one message costs `NS_PER_SEC`): refilled at `ICMP_MSGS_PER_SEC`
    /// per second with integer arithmetic only.
    pub credit: u64,
    /// When `credit` was last brought up to date (`bpf_ktime_get_ns`); 0: never used.
    pub stamp: u64,
}

const _: () = assert!(core::mem::size_of::<IcmpBucket>() == 16);

impl IcmpBucket {
    /// Whether one more error may be sent at `now` (ns); takes its credit if so.
    #[inline(always)]
    pub fn take(&mut self, now: u64) -> bool {
        let full = ICMP_MSGS_BURST * NS_PER_SEC;
        if self.stamp == 0 {
            self.credit = full;
        } else {
            // At most a second's worth counted: the bucket is full after that anyway, and the
            // product stays far from overflowing.
            let elapsed = now.saturating_sub(self.stamp).min(NS_PER_SEC);
            let c = self.credit + elapsed * ICMP_MSGS_PER_SEC;
            self.credit = if c > full { full } else { c };
        }
        self.stamp = now;
        if self.credit < NS_PER_SEC {
            return false;
        }
        self.credit -= NS_PER_SEC;
        true
    }
}

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::IcmpBucket {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_bucket_allows_the_burst_then_the_rate() {
        let mut b = IcmpBucket::default();
        let t0 = 5 * NS_PER_SEC;
        let sent = (0..200).filter(|_| b.take(t0)).count() as u64;
        assert_eq!(sent, ICMP_MSGS_BURST);
        // One credit per millisecond at 1000/s.
        assert!(!b.take(t0 + 999_999));
        assert!(b.take(t0 + 1_000_000 + 999_999));
        assert!(!b.take(t0 + 1_000_000 + 999_999));
        // A second of quiet refills the burst, no more.
        let t1 = t0 + 10 * NS_PER_SEC;
        let sent = (0..200).filter(|_| b.take(t1)).count() as u64;
        assert_eq!(sent, ICMP_MSGS_BURST);
    }

    #[test]
    fn a_clock_that_goes_back_adds_nothing() {
        let mut b = IcmpBucket::default();
        let t0 = 5 * NS_PER_SEC;
        while b.take(t0) {}
        assert!(!b.take(t0 - NS_PER_SEC));
        assert!(!b.take(t0 - NS_PER_SEC + 500_000));
    }
}
