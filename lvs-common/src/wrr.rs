//! The wrr (weighted round robin) scheduler as IPVS runs it (`ip_vs_wrr.c`), with a bounded
//! walk.
//!
//! State is the kernel's mark: the position of the last chosen server (`cl`), the current weight
//! threshold (`cw`), the highest weight less `gcd - 1` (`mw`) and the gcd of the weights (`di`).
//! Userspace recomputes it with [`wrr_init`] and [`wrr_dest_changed`] exactly when the kernel
//! would; [`wrr_schedule`] picks a server.
//!
//! The kernel's walk runs pass after pass over the list, lowering `cw` by `di` after each,
//! until some server not overloaded has a weight of at least `cw`. With the heaviest servers
//! overloaded that is many empty passes (weights go up to 65535). [`WrrCall`] gets the same
//! answer in at most two walks of the list: the first looks for a hit in the rest of the
//! current pass and notes the highest weight of a server not overloaded; from it, the threshold
//! of the first pass that can hit, and whether the kernel gives up first, follow by arithmetic;
//! the second walk finds the server in that pass. The dataplane runs each walk as a `bpf_loop`
//! (see [`WrrCall`]).

/// No server chosen yet: the kernel's list head.
pub const HEAD: i32 = -1;

/// The wrr state of one service (the kernel's `struct ip_vs_wrr_mark`). 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct WrrMark {
    /// Position in kernel order of the last chosen server, or [`HEAD`].
    pub cl: i32,
    /// Current weight: the next server must weigh at least this much.
    pub cw: i32,
    /// Highest weight minus `di - 1`; 0 when no server has a weight.
    pub mw: i32,
    /// gcd of the positive weights (1 when there are none): the step of `cw`.
    pub di: i32,
}

const _: () = assert!(core::mem::size_of::<WrrMark>() == 16);

/// Why [`wrr_schedule`] found no server (the kernel's two messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrrFail {
    /// "no destination available": no server has a weight (`mw == 0`).
    NoDest,
    /// "no destination available: all destinations are overloaded" (or weight 0).
    Overloaded,
}

/// Euclid on positive values (the kernel's `gcd`).
fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `(di, mw)` of the weights (kernel order; deleted servers absent): `di` = gcd of the weights
/// above 0, or 1; `mw` = max(0, highest weight) - (di - 1).
fn di_mw(weights: &[i32]) -> (i32, i32) {
    let g = weights.iter().filter(|&&w| w > 0).fold(0u32, |g, &w| gcd(w as u32, g));
    let di = if g == 0 { 1 } else { g as i32 };
    let max = weights.iter().copied().fold(0, i32::max);
    (di, max - (di - 1))
}

/// The mark of a service when wrr is bound to it (`ip_vs_wrr_init_svc`: service created with
/// wrr, or `-E` to wrr from another scheduler): at the head, `cw = mw`.
pub fn wrr_init(weights: &[i32]) -> WrrMark {
    let (di, mw) = di_mw(weights);
    WrrMark { cl: HEAD, cw: mw, mw, di }
}

/// The mark after a server was added, deleted or edited (`ip_vs_wrr_dest_changed`); `weights`
/// are the weights after the change. Back to the head; `cw` is kept unless it is above the new
/// `mw` or 0 (then `mw`), and with a gcd above 1 it is moved to `k * di + 1`.
pub fn wrr_dest_changed(mark: &mut WrrMark, weights: &[i32]) {
    let (di, mw) = di_mw(weights);
    mark.cl = HEAD;
    mark.di = di;
    mark.mw = mw;
    if mark.cw > mw || mark.cw == 0 {
        mark.cw = mw;
    } else if di > 1 {
        mark.cw = (mark.cw / di) * di + 1;
    }
}

/// Picks the server for a new connection (`ip_vs_wrr_schedule`) from the servers' `(weight,
/// overloaded)` in kernel order, and moves the mark as the kernel does, on failure too.
/// Returns its position. Host-side driver of [`WrrCall`]; the dataplane runs the same two
/// walks under `bpf_loop`.
pub fn wrr_schedule(mark: &mut WrrMark, dests: &[(i32, bool)]) -> Option<usize> {
    wrr_schedule_why(mark, dests).ok()
}

/// [`wrr_schedule`], saying why no server was found.
pub fn wrr_schedule_why(mark: &mut WrrMark, dests: &[(i32, bool)]) -> Result<usize, WrrFail> {
    let n = dests.len().min(u32::MAX as usize) as u32;
    let at = |i: u32| dests.get(i as usize).copied().unwrap_or((0, true));
    let call = WrrCall::new(mark, n)?;
    let mut max_ok = 0;
    for k in 0..n {
        let (pos, in_pass) = call.first_walk_pos(k);
        let (w, ov) = at(pos);
        if !ov && w > max_ok {
            max_ok = w;
        }
        if in_pass && wrr_takes(w, ov, call.cw) {
            mark.cl = pos as i32;
            return Ok(pos as usize);
        }
    }
    let plan = call.plan(max_ok);
    if plan.cw > 0 {
        for i in 0..plan.limit.min(n) {
            let (w, ov) = at(i);
            if wrr_takes(w, ov, plan.cw) {
                mark.cl = i as i32;
                mark.cw = plan.cw;
                return Ok(i as usize);
            }
        }
    }
    mark.cl = plan.fail_cl;
    mark.cw = plan.fail_cw;
    Err(WrrFail::Overloaded)
}

/// The kernel's test for a server during a pass at threshold `cw`.
#[inline(always)]
pub fn wrr_takes(weight: i32, overloaded: bool, cw: i32) -> bool {
    !overloaded && weight >= cw
}

/// One [`wrr_schedule`] call as two plain walks over the list, so that the dataplane can run
/// each as a `bpf_loop` whose callback keeps no counter of its own (the verifier re-checks a
/// callback until its state repeats; a step counter in the shared state never repeats, which
/// is what made a single state-machine callback "too complex").
///
/// Walk 1 reads the `n` servers from the one after `cl` round to `cl`. Those after `cl`
/// ([`first_walk_pos`](WrrCall::first_walk_pos) says which) are the rest of the kernel's
/// current pass, checked at `cw`: the first that [`wrr_takes`] is chosen, the mark keeps `cw`.
/// Every server read adds to `max_ok`, the highest weight of a server not overloaded. Without
/// a hit, [`plan`](WrrCall::plan) replays the kernel's later passes by arithmetic and says
/// which threshold the first pass that can hit has; walk 2 reads positions `0..limit` at it.
/// At most `2 * n` reads, no division by a value that can be 0, no indexing, no overflow.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrrCall {
    /// Servers in the service.
    pub n: u32,
    /// The kernel's `last`: `cl` when the call began ([`HEAD`] if it pointed nowhere valid).
    pub last: i32,
    /// Threshold of walk 1 (the mark's `cw`).
    pub cw: i32,
    pub mw: i32,
    pub di: i32,
}

/// What follows a walk 1 without a hit. 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrrPlan {
    /// Threshold of walk 2; 0 when the kernel gives up without another hit possible.
    pub cw: i32,
    /// Walk 2 reads positions `0..limit` (`n`, or `last + 1` in the kernel's last pass after
    /// a restart, which stops at `last`).
    pub limit: u32,
    /// The mark the kernel leaves when it gives up.
    pub fail_cl: i32,
    pub fail_cw: i32,
}

impl WrrCall {
    /// Starts a call on `n` servers with the service's mark; [`WrrFail::NoDest`] when no
    /// server has a weight (`mw == 0`; the mark is left as it is).
    #[inline(always)]
    pub fn new(mark: &WrrMark, n: u32) -> Result<WrrCall, WrrFail> {
        // mw < 0 and di <= 0 cannot come from wrr_init / wrr_dest_changed; the kernel only
        // tests mw == 0, and would loop for ever on the others.
        if mark.mw <= 0 || mark.di <= 0 {
            return Err(WrrFail::NoDest);
        }
        // A position past the list cannot come from dest_changed (it resets to the head);
        // treat it as the head rather than read past the end.
        let last = if mark.cl >= 0 && (mark.cl as u32) < n { mark.cl } else { HEAD };
        Ok(WrrCall { n, last, cw: mark.cw, mw: mark.mw, di: mark.di })
    }

    /// Position read at step `k` (`0..n`) of walk 1, and whether it lies in the rest of the
    /// current pass (after `last`), where a hit at `cw` counts.
    #[inline(always)]
    pub fn first_walk_pos(&self, k: u32) -> (u32, bool) {
        let i = ((self.last + 1) as u32).wrapping_add(k);
        if i >= self.n {
            (i.wrapping_sub(self.n), false)
        } else {
            (i, true)
        }
    }

    /// Walk 1 found nothing after `last`; `max_ok` is the highest weight of a server not
    /// overloaded it saw (at least 0). Replays the kernel's later passes by arithmetic:
    ///
    /// - `cw - di > 0`: passes at `cw - di`, `cw - 2di`, ... over the whole list; the first one
    ///   at or below `max_ok` hits. After the pass at or below `di` the kernel gives up (its
    ///   `last_pass`), leaving the head and `cw = mw`.
    /// - otherwise, from the head: it gives up at once (head, `cw = mw`).
    /// - otherwise it restarts at `cw = mw`: passes at `mw`, `mw - di`, ...; the last one (at
    ///   or below `di`) stops after `last`, where the kernel gives up and leaves the mark.
    #[inline(always)]
    pub fn plan(&self, max_ok: i32) -> WrrPlan {
        let give_up = WrrPlan { cw: 0, limit: 0, fail_cl: HEAD, fail_cw: self.mw };
        let (cw, di, mw, m) = (self.cw as i64, self.di as i64, self.mw as i64, max_ok as i64);
        let first = cw - di;
        let (from, restarted) = if first > 0 {
            (first, false)
        } else if self.last == HEAD {
            return give_up;
        } else {
            (mw, true)
        };
        match first_reachable(from, di, m) {
            Some(c) if restarted && c <= di => {
                // The kernel's last pass after a restart: it stops on reaching `last` and
                // leaves the mark there, at this threshold.
                WrrPlan { cw: c as i32, limit: (self.last + 1) as u32, fail_cl: self.last, fail_cw: c as i32 }
            }
            Some(c) => WrrPlan { cw: c as i32, limit: self.n, ..give_up },
            None if restarted => {
                // The smallest positive threshold of the run (the kernel's last pass):
                // ((from - 1) mod di) + 1. Unsigned: BPF before ISA v4 has no signed division.
                let lowest = ((from - 1) as u64).checked_rem(di as u64).unwrap_or(0) as i64 + 1;
                WrrPlan { cw: 0, limit: 0, fail_cl: self.last, fail_cw: lowest as i32 }
            }
            None => give_up,
        }
    }
}


/// The first of `from`, `from - di`, `from - 2di`, ... (stopping before 0) that is at most
/// `max_ok`, if any. `from >= 1`, `di >= 1`.
fn first_reachable(from: i64, di: i64, max_ok: i64) -> Option<i64> {
    if max_ok < 1 || di < 1 {
        return None;
    }
    if max_ok >= from {
        return Some(from);
    }
    // ceil((from - max_ok) / di) steps down, in unsigned arithmetic (both are positive; BPF
    // before ISA v4 has no signed division). Values are i32s widened to 64 bits: no overflow.
    let gap = (from - max_ok) as u64;
    let steps = (gap + di as u64 - 1).checked_div(di as u64).unwrap_or(0);
    let c = from - steps as i64 * di;
    (c >= 1).then_some(c)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// The exits of the kernel's loop, counted by [`kernel_schedule_paths`].
    #[derive(Default, Debug)]
    struct Paths {
        no_dest: usize,
        /// Found in the rest of the current pass.
        first_pass: usize,
        /// Found in a later pass, before any restart at `mw`.
        descending: usize,
        /// Found after the restart at `mw`, in a full pass.
        restarted: usize,
        /// Found in the last pass after a restart, which stops at `last`.
        stop_pass: usize,
        /// Gave up at the wrap to `mw` (from the head, or after the last pass).
        fail_wrap: usize,
        /// Gave up on reaching `last` in the last pass.
        fail_stop: usize,
    }

    fn kernel_schedule(mark: &mut WrrMark, d: &[(i32, bool)]) -> Result<usize, WrrFail> {
        kernel_schedule_paths(mark, d, &mut Paths::default())
    }

    /// `ip_vs_wrr_schedule` transcribed line by line, unbounded: the reference.
    fn kernel_schedule_paths(mark: &mut WrrMark, d: &[(i32, bool)], paths: &mut Paths) -> Result<usize, WrrFail> {
        let n = d.len() as i32;
        let mut dest = mark.cl;
        if mark.mw == 0 {
            mark.cl = dest;
            paths.no_dest += 1;
            return Err(WrrFail::NoDest);
        }
        let last = dest;
        let (mut stop, mut last_pass, mut restarted) = (None, false, false);
        let mut passes = 0;
        let mut guard = 0;
        loop {
            // list_for_each_entry_continue: from the entry after `dest` to the head.
            dest += 1;
            while dest < n {
                guard += 1;
                assert!(guard < 10_000_000, "kernel loop does not end");
                let (w, ov) = d[dest as usize];
                if !ov && w >= mark.cw {
                    mark.cl = dest;
                    match (passes, restarted, stop.is_some()) {
                        (0, _, _) => paths.first_pass += 1,
                        (_, false, _) => paths.descending += 1,
                        (_, true, false) => paths.restarted += 1,
                        (_, true, true) => paths.stop_pass += 1,
                    }
                    return Ok(dest as usize);
                }
                if Some(dest) == stop {
                    mark.cl = dest;
                    paths.fail_stop += 1;
                    return Err(WrrFail::Overloaded);
                }
                dest += 1;
            }
            passes += 1;
            dest = HEAD;
            mark.cw -= mark.di;
            if mark.cw <= 0 {
                mark.cw = mark.mw;
                if last_pass || last == HEAD {
                    mark.cl = dest;
                    paths.fail_wrap += 1;
                    return Err(WrrFail::Overloaded);
                }
                restarted = true;
            }
            last_pass = mark.cw <= mark.di;
            if last_pass && restarted && last != HEAD {
                stop = Some(last);
            }
        }
    }

    fn run(mark: &mut WrrMark, dests: &[(i32, bool)], count: usize) -> Vec<Option<usize>> {
        (0..count).map(|_| wrr_schedule(mark, dests)).collect()
    }

    fn names(seq: &[Option<usize>], names: &[char]) -> std::string::String {
        seq.iter().map(|s| s.map_or('-', |i| names[i])).collect()
    }

    fn plain(weights: &[i32]) -> Vec<(i32, bool)> {
        weights.iter().map(|&w| (w, false)).collect()
    }

    /// `ipvsadm -a` of each weight in turn: inserted at the head, mark recomputed.
    fn add_in_order(weights_in_add_order: &[i32]) -> (WrrMark, Vec<i32>) {
        let mut kernel_order = Vec::new();
        let mut mark = wrr_init(&kernel_order);
        for &w in weights_in_add_order {
            kernel_order.insert(0, w);
            wrr_dest_changed(&mut mark, &kernel_order);
        }
        (mark, kernel_order)
    }

    /// Spec §1.2: bound after the servers exist, kernel order A(4), B(3), C(2).
    #[test]
    fn bound_after_adds_cycles_from_the_top() {
        let mut mark = wrr_init(&[4, 3, 2]);
        assert_eq!(mark, WrrMark { cl: HEAD, cw: 4, mw: 4, di: 1 });
        let seq = run(&mut mark, &plain(&[4, 3, 2]), 18);
        assert_eq!(names(&seq, &['A', 'B', 'C']), "AABABCABCAABABCABC");
    }

    /// Spec §1.2, typical usage: `-a A -w4`, `-a B -w3`, `-a C -w2`, kernel order C, B, A.
    #[test]
    fn added_in_order_starts_with_a_pass_at_one() {
        let (mut mark, order) = add_in_order(&[4, 3, 2]);
        assert_eq!(order, [2, 3, 4]);
        assert_eq!(mark, WrrMark { cl: HEAD, cw: 1, mw: 4, di: 1 });
        let seq = run(&mut mark, &plain(&order), 21);
        assert_eq!(names(&seq, &['C', 'B', 'A']), "CBAABACBACBAABACBACBA");
    }

    #[test]
    fn weight_zero_is_never_chosen() {
        let (mut mark, order) = add_in_order(&[2, 0, 1]); // kernel order 1, 0, 2
        let seq = run(&mut mark, &plain(&order), 6);
        assert_eq!(names(&seq, &['x', 'z', 'y']), "xyyxyy");
        let mut mark = wrr_init(&[0, 0]);
        assert_eq!(mark.mw, 0);
        assert_eq!(wrr_schedule_why(&mut mark, &plain(&[0, 0])), Err(WrrFail::NoDest));
    }

    #[test]
    fn gcd_above_one_steps_by_it() {
        // 4, 2, 2: di 2, mw 3; passes at 3 (A) and 1 (A B C).
        let mut mark = wrr_init(&[4, 2, 2]);
        assert_eq!(mark, WrrMark { cl: HEAD, cw: 3, mw: 3, di: 2 });
        let seq = run(&mut mark, &plain(&[4, 2, 2]), 8);
        assert_eq!(names(&seq, &['A', 'B', 'C']), "AABCAABC");
        // 6, 3: di 3, mw 4; passes at 4 (A) and 1 (A B).
        let mut mark = wrr_init(&[6, 3]);
        let seq = run(&mut mark, &plain(&[6, 3]), 6);
        assert_eq!(names(&seq, &['A', 'B']), "AABAAB");
    }

    #[test]
    fn dest_changed_keeps_cw_or_aligns_it() {
        let mut mark = WrrMark { cl: 1, cw: 3, mw: 4, di: 1 };
        wrr_dest_changed(&mut mark, &[4, 1, 2]);
        assert_eq!(mark, WrrMark { cl: HEAD, cw: 3, mw: 4, di: 1 });
        // gcd 2: cw 3 -> (3 / 2) * 2 + 1 = 3; cw 2 -> 3.
        let mut mark = WrrMark { cl: 0, cw: 2, mw: 4, di: 1 };
        wrr_dest_changed(&mut mark, &[6, 4]);
        assert_eq!(mark, WrrMark { cl: HEAD, cw: 3, mw: 5, di: 2 });
        // Above the new mw: down to it.
        let mut mark = WrrMark { cl: 0, cw: 5, mw: 5, di: 2 };
        wrr_dest_changed(&mut mark, &[2, 1]);
        assert_eq!(mark, WrrMark { cl: HEAD, cw: 2, mw: 2, di: 1 });
        // All weights 0: mw 0 and cw 0, then the next add takes cw = mw.
        wrr_dest_changed(&mut mark, &[0, 0]);
        assert_eq!(mark, WrrMark { cl: HEAD, cw: 0, mw: 0, di: 1 });
        wrr_dest_changed(&mut mark, &[3, 0]);
        assert_eq!(mark, WrrMark { cl: HEAD, cw: 1, mw: 1, di: 3 });
    }

    #[test]
    fn edit_mid_cycle_restarts_from_the_head() {
        let mut mark = wrr_init(&[4, 3, 2]);
        let seq = run(&mut mark, &plain(&[4, 3, 2]), 3); // A A B, cw 3, cl B
        assert_eq!(names(&seq, &['A', 'B', 'C']), "AAB");
        wrr_dest_changed(&mut mark, &[4, 1, 2]);
        let seq = run(&mut mark, &plain(&[4, 1, 2]), 7);
        // cw 3 from the head: A; cw 2: A C; cw 1: A B C; cw 4: A.
        assert_eq!(names(&seq, &['A', 'B', 'C']), "AACABCA");
    }

    #[test]
    fn overloaded_servers_are_skipped() {
        let mut mark = wrr_init(&[4, 3, 2]);
        let d = [(4, true), (3, false), (2, false)];
        let seq = run(&mut mark, &d, 10);
        // cw 4: none (empty pass); cw 3: B; cw 2: B C; cw 1: B C; then again.
        assert_eq!(names(&seq, &['A', 'B', 'C']), "BBCBCBBCBC");
    }

    #[test]
    fn all_overloaded_fails_and_leaves_the_kernels_mark() {
        let d = [(4, true), (3, true), (2, true)];
        // From the head: one descent to cw 1, then the kernel gives up at the head, cw = mw.
        let mut mark = wrr_init(&[4, 3, 2]);
        assert_eq!(wrr_schedule_why(&mut mark, &d), Err(WrrFail::Overloaded));
        assert_eq!(mark, WrrMark { cl: HEAD, cw: 4, mw: 4, di: 1 });
        // From B at cw 1: restart at 4, last pass stops at B.
        let mut mark = WrrMark { cl: 1, cw: 1, mw: 4, di: 1 };
        assert_eq!(wrr_schedule_why(&mut mark, &d), Err(WrrFail::Overloaded));
        assert_eq!(mark, WrrMark { cl: 1, cw: 1, mw: 4, di: 1 });
        // From B at cw 3: descend to 1 from B on, full passes, then give up at the head.
        let mut mark = WrrMark { cl: 1, cw: 3, mw: 4, di: 1 };
        assert_eq!(wrr_schedule_why(&mut mark, &d), Err(WrrFail::Overloaded));
        assert_eq!(mark, WrrMark { cl: HEAD, cw: 4, mw: 4, di: 1 });
    }

    #[test]
    fn restart_runs_a_last_pass_up_to_the_old_position() {
        // cl = 0 at cw 1: the rest of the pass (B, C) at 1 takes C.
        let d = [(4, true), (3, true), (1, false)];
        let mut mark = WrrMark { cl: 0, cw: 1, mw: 4, di: 1 };
        assert_eq!(wrr_schedule(&mut mark, &d), Some(2));
        assert_eq!(mark, WrrMark { cl: 2, cw: 1, mw: 4, di: 1 });
        // cl = 2 at cw 1, only A free, at weight 1: restart at 4, empty passes at 4, 3, 2,
        // then the last pass at 1 reaches A before stopping at C.
        let d = [(1, false), (3, true), (4, true)];
        let mut mark = WrrMark { cl: 2, cw: 1, mw: 4, di: 1 };
        assert_eq!(wrr_schedule(&mut mark, &d), Some(0));
        assert_eq!(mark, WrrMark { cl: 0, cw: 1, mw: 4, di: 1 });
    }

    #[test]
    fn scan_never_reads_more_than_two_walks() {
        let mut weights = [0i32; 256];
        for (i, w) in weights.iter_mut().enumerate() {
            *w = 65535 - i as i32;
        }
        let d: Vec<(i32, bool)> = weights.iter().enumerate().map(|(i, &w)| (w, i < 255)).collect();
        let mark = wrr_init(&weights);
        let mut km = mark;
        let call = WrrCall::new(&mark, 256).unwrap();
        // Walk 1 reads all 256 without a hit (only the last is not overloaded, and its weight
        // is below cw); the plan's walk 2 then reads at most 256 more.
        let max_ok = (0..256).map(|k| d[call.first_walk_pos(k).0 as usize]).filter(|x| !x.1).map(|x| x.0).max().unwrap();
        let plan = call.plan(max_ok);
        assert!(plan.cw > 0 && plan.limit <= 256, "{plan:?}");
        let mut m = mark;
        assert_eq!(wrr_schedule(&mut m, &d), kernel_schedule(&mut km, &d).ok());
        assert_eq!(m, km);
    }

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// The bounded walk against the transcription of the kernel's loop: random lists of up to
    /// 7 servers of weight 0..8, random overload flags on every call, random adds (at the
    /// head), deletes and edits, and now and then a re-bind. Result and whole mark must agree
    /// after every call.
    #[test]
    fn bounded_walk_equals_the_kernel_loop() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut calls = 0;
        let mut paths = Paths::default();
        for _case in 0..4000 {
            let mut weights: Vec<i32> = (0..rng.below(5)).map(|_| rng.below(9) as i32).collect();
            let mut mark = wrr_init(&weights);
            let mut km = mark;
            for _ in 0..40 {
                match rng.below(10) {
                    0 if weights.len() < 7 => {
                        weights.insert(0, rng.below(9) as i32);
                        wrr_dest_changed(&mut mark, &weights);
                        km = mark;
                    }
                    1 if !weights.is_empty() => {
                        let i = rng.below(weights.len() as u64) as usize;
                        weights.remove(i);
                        wrr_dest_changed(&mut mark, &weights);
                        km = mark;
                    }
                    2 if !weights.is_empty() => {
                        let i = rng.below(weights.len() as u64) as usize;
                        weights[i] = rng.below(9) as i32;
                        wrr_dest_changed(&mut mark, &weights);
                        km = mark;
                    }
                    3 if rng.below(4) == 0 => {
                        mark = wrr_init(&weights);
                        km = mark;
                    }
                    _ => {}
                }
                let overload_odds = rng.below(4);
                let d: Vec<(i32, bool)> = weights.iter().map(|&w| (w, rng.below(4) < overload_odds)).collect();
                let before = mark;
                let got = wrr_schedule_why(&mut mark, &d);
                let want = kernel_schedule_paths(&mut km, &d, &mut paths);
                assert_eq!(got, want, "from {before:?} over {d:?}");
                assert_eq!(mark, km, "from {before:?} over {d:?}");
                calls += 1;
            }
        }
        assert!(calls > 100_000);
        // Every exit of the kernel's loop was taken, and not just once.
        let p = &paths;
        let counts = [p.no_dest, p.first_pass, p.descending, p.restarted, p.stop_pass, p.fail_wrap, p.fail_stop];
        assert!(counts.iter().all(|&c| c >= 50), "{paths:?}");
    }

    /// Large weights: the kernel's loop would run tens of thousands of empty passes; the
    /// bounded walk must still agree.
    #[test]
    fn bounded_walk_equals_the_kernel_loop_with_large_weights() {
        let mut rng = Rng(7);
        for _case in 0..2000 {
            let n = 1 + rng.below(6) as usize;
            let weights: Vec<i32> = (0..n).map(|_| rng.below(3) as i32 * (1 + rng.below(30000) as i32)).collect();
            let mut mark = wrr_init(&weights);
            let mut km = mark;
            for _ in 0..10 {
                let d: Vec<(i32, bool)> = weights.iter().map(|&w| (w, rng.below(3) == 0)).collect();
                assert_eq!(wrr_schedule_why(&mut mark, &d), kernel_schedule(&mut km, &d), "{d:?}");
                assert_eq!(mark, km);
            }
        }
    }
}
