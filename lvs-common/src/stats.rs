//! IPVS traffic statistics: Conns, InPkts, OutPkts, InBytes, OutBytes per virtual service, per
//! real server and in total, and the kernel's 2-second rate estimator.
//!
//! The dataplane adds to `IPVS_STATS`, a per-CPU array laid out as
//! `[service slots | totals | real-server slots]` (see [`svc_index`], [`TOTAL_INDEX`],
//! [`dest_index`]), so a packet costs one lookup per object and no atomic operation. Userspace
//! sums the CPUs. Zeroing (`ipvsadm -Z`, and a slot reused by a new service or real server)
//! never writes the per-CPU counters, whose plain adds it could race with; it records the
//! current sums as the object's zero point in `IPVS_STATS_ZERO` (same layout, written only by
//! userspace), exactly as the kernel keeps `kstats0`. What is shown is the sum minus the zero
//! point. Both maps are pinned, so counters and zero points survive lvsd restarts.

use crate::service::{MAX_DESTS, MAX_SERVICES};

/// The five counters of one object, as the kernel's `struct ip_vs_kstats` has them.
/// 40 bytes, no padding. Host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct IpvsStats {
    /// Connections scheduled to the object (not persistence templates).
    pub conns: u64,
    /// Packets from clients (client -> VIP direction).
    pub inpkts: u64,
    /// Packets from real servers (reply direction; NAT only, as in IPVS).
    pub outpkts: u64,
    /// Bytes of `inpkts`: whole IP packets, header included (the kernel's `skb->len`).
    pub inbytes: u64,
    /// Bytes of `outpkts`, counted the same way.
    pub outbytes: u64,
}

const _: () = assert!(core::mem::size_of::<IpvsStats>() == 40);

impl IpvsStats {
    /// Field-wise wrapping sum (summing CPUs).
    pub fn add(&self, o: &IpvsStats) -> IpvsStats {
        IpvsStats {
            conns: self.conns.wrapping_add(o.conns),
            inpkts: self.inpkts.wrapping_add(o.inpkts),
            outpkts: self.outpkts.wrapping_add(o.outpkts),
            inbytes: self.inbytes.wrapping_add(o.inbytes),
            outbytes: self.outbytes.wrapping_add(o.outbytes),
        }
    }

    /// Field-wise wrapping difference (counters since a zero point).
    pub fn since(&self, zero: &IpvsStats) -> IpvsStats {
        IpvsStats {
            conns: self.conns.wrapping_sub(zero.conns),
            inpkts: self.inpkts.wrapping_sub(zero.inpkts),
            outpkts: self.outpkts.wrapping_sub(zero.outpkts),
            inbytes: self.inbytes.wrapping_sub(zero.inbytes),
            outbytes: self.outbytes.wrapping_sub(zero.outbytes),
        }
    }
}

/// Index of the totals (the kernel's `tot_stats`, `/proc/net/ip_vs_stats`).
pub const TOTAL_INDEX: u32 = MAX_SERVICES;
/// Entries of `IPVS_STATS` and `IPVS_STATS_ZERO`.
pub const STATS_SLOTS: u32 = MAX_SERVICES + 1 + MAX_DESTS;

/// Index of service slot `svc_id`.
#[inline(always)]
pub const fn svc_index(svc_id: u32) -> u32 {
    svc_id
}

/// Index of real-server slot `dest_id`.
#[inline(always)]
pub const fn dest_index(dest_id: u32) -> u32 {
    MAX_SERVICES + 1 + dest_id
}

/// The rate estimator of one object (the kernel's `struct ip_vs_estimator`), run every
/// [`ESTIMATOR_PERIOD_SECS`] seconds: `avg += (rate - avg) / 4` with the rate of the last
/// period scaled by 2^10 for connections and packets and 2^5 for bytes (per second, so the
/// 2-second delta is shifted by one less).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Estimator {
    /// The counters at the previous tick.
    pub last: IpvsStats,
    /// Scaled averages: cps, inpps, outpps (×2^10), inbps, outbps (×2^5).
    pub avg: [u64; 5],
}

/// Seconds between estimator ticks.
pub const ESTIMATOR_PERIOD_SECS: u64 = 2;

/// Read-out rates: CPS, InPPS, OutPPS, InBPS, OutBPS as ipvsadm `--rate` prints them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Rates {
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

impl Estimator {
    /// An estimator starting at `now` with no rate (the kernel's `ip_vs_start_estimator` and
    /// `ip_vs_zero_estimator`: the averages go to 0, the last values to the current counters).
    pub fn starting_at(now: IpvsStats) -> Self {
        Estimator { last: now, avg: [0; 5] }
    }

    /// One tick with the current counters.
    pub fn tick(&mut self, now: IpvsStats) {
        let step = |avg: &mut u64, cur: u64, last: u64, shift: u32| {
            // The kernel computes in s64: the average moves a quarter of the way to the sample,
            // rounding towards minus infinity (an arithmetic shift).
            let rate = (cur.wrapping_sub(last) << shift) as i64;
            let a = *avg as i64;
            *avg = a.wrapping_add(rate.wrapping_sub(a) >> 2) as u64;
        };
        step(&mut self.avg[0], now.conns, self.last.conns, 9);
        step(&mut self.avg[1], now.inpkts, self.last.inpkts, 9);
        step(&mut self.avg[2], now.outpkts, self.last.outpkts, 9);
        step(&mut self.avg[3], now.inbytes, self.last.inbytes, 4);
        step(&mut self.avg[4], now.outbytes, self.last.outbytes, 4);
        self.last = now;
    }

    /// `ip_vs_read_estimator`: rounded to the nearest unit.
    pub fn rates(&self) -> Rates {
        let pps = |e: u64| e.wrapping_add(0x1ff) >> 10;
        let bps = |e: u64| e.wrapping_add(0xf) >> 5;
        Rates {
            cps: pps(self.avg[0]),
            inpps: pps(self.avg[1]),
            outpps: pps(self.avg[2]),
            inbps: bps(self.avg[3]),
            outbps: bps(self.avg[4]),
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::IpvsStats {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_keeps_objects_apart() {
        assert_eq!(svc_index(MAX_SERVICES - 1) + 1, TOTAL_INDEX);
        assert_eq!(dest_index(0), TOTAL_INDEX + 1);
        assert_eq!(dest_index(MAX_DESTS - 1) + 1, STATS_SLOTS);
    }

    #[test]
    fn a_steady_rate_converges_to_itself() {
        // 100 connections, 1000 packets and 1 MB per second, for 200 s: the average closes a
        // quarter of the gap per tick, so it ends within the rounding of the read-out.
        let mut e = Estimator::default();
        let mut now = IpvsStats::default();
        for _ in 0..100 {
            now.conns += 200;
            now.inpkts += 2000;
            now.inbytes += 2_000_000;
            e.tick(now);
        }
        let r = e.rates();
        assert_eq!((r.cps, r.inpps, r.outpps, r.inbps, r.outbps), (100, 1000, 0, 1_000_000, 0));
    }

    #[test]
    fn first_ticks_follow_the_kernel_arithmetic() {
        // 10 packets in the first 2 s: sample 10 << 9 = 5120, avg = 5120 >> 2 = 1280,
        // read-out (1280 + 511) >> 10 = 1. Then nothing: avg 1280 - 320 = 960 -> 1; 720 -> 1;
        // 540 -> 1; 405 -> 0.
        let mut e = Estimator::default();
        let now = IpvsStats { inpkts: 10, inbytes: 600, ..Default::default() };
        e.tick(now);
        assert_eq!(e.avg[1], 1280);
        // bytes: 600 << 4 = 9600, avg 2400, read-out (2400 + 15) >> 5 = 75.
        assert_eq!(e.avg[3], 2400);
        assert_eq!(e.rates().inbps, 75);
        let seen: [u64; 4] = core::array::from_fn(|_| {
            e.tick(now);
            e.rates().inpps
        });
        assert_eq!(seen, [1, 1, 1, 0]);
        assert_eq!(e.avg[1], 405);
    }

    #[test]
    fn zero_points_subtract_and_wrap() {
        let a = IpvsStats { conns: 5, inpkts: 7, outpkts: 1, inbytes: 100, outbytes: 3 };
        let b = IpvsStats { conns: 2, inpkts: 7, outpkts: 0, inbytes: 40, outbytes: 3 };
        assert_eq!(a.since(&b), IpvsStats { conns: 3, inpkts: 0, outpkts: 1, inbytes: 60, outbytes: 0 });
        assert_eq!(a.add(&b).since(&b), a);
    }
}
