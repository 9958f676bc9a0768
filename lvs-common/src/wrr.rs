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
//! overloaded that is many empty passes (weights go up to 65535). [`WrrScan`] gets the same
//! answer in at most two walks of the list: the first looks for a hit in the rest of the
//! current pass and notes the highest weight of a server not overloaded; from it, the threshold
//! of the first pass that can hit, and whether the kernel gives up first, follow by arithmetic;
//! the second walk finds the server in that pass. The dataplane drives it from a `bpf_loop`
//! callback, one server per call.

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
/// Returns its position. Host-side driver of [`WrrScan`]; the dataplane runs the same steps.
pub fn wrr_schedule(mark: &mut WrrMark, dests: &[(i32, bool)]) -> Option<usize> {
    wrr_schedule_why(mark, dests).ok()
}

/// [`wrr_schedule`], saying why no server was found.
pub fn wrr_schedule_why(mark: &mut WrrMark, dests: &[(i32, bool)]) -> Result<usize, WrrFail> {
    let n = dests.len().min(u32::MAX as usize) as u32;
    let mut scan = WrrScan::new(mark, n);
    while let Some(i) = scan.next_index() {
        let (w, ov) = dests.get(i as usize).copied().unwrap_or((0, true));
        scan.step(w, ov);
    }
    scan.finish(mark).map(|i| i as usize)
}

/// What a [`WrrScan::step`] concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrrStep {
    /// Feed the server at the next [`WrrScan::next_index`].
    Continue,
    /// Chosen: the server at this position.
    Found(u32),
    /// No server.
    Fail(WrrFail),
}

const WALK_FIRST: u32 = 0;
const WALK_TARGET: u32 = 1;
const DONE: u32 = 2;

/// One [`wrr_schedule`] call as a walk the caller feeds, server by server: ask
/// [`next_index`](WrrScan::next_index) which position to read, pass its weight and OVERLOAD
/// flag to [`step`](WrrScan::step), repeat until `next_index` returns `None`, then
/// [`finish`](WrrScan::finish). At most `2 * n + 1` calls of `next_index`; no recursion, no
/// division by a value that can be 0, no indexing, no overflow (everything that can grow is
/// 64-bit). `#[repr(C)]` so the dataplane can keep it on the `bpf_loop` caller's stack.
///
/// Walk 1 goes from the server after `cl` round to `cl`: the servers after `cl` are the rest
/// of the kernel's current pass, checked at `cw`; all of them add to `max_ok`, the highest
/// weight of a server not overloaded. Walk 2, if needed, checks every server (or, in the
/// kernel's last pass after a restart, only up to the old `cl`) at the threshold of the first
/// later pass that `max_ok` reaches.
///
/// Driven from `bpf_loop` (checked: the verifier accepts this shape, and it agrees with
/// [`wrr_schedule`] under `BPF_PROG_TEST_RUN`):
///
/// ```ignore
/// extern "C" fn wrr_step(_: u64, ctx: *mut c_void) -> i64 {
///     let scan = unsafe { &mut *(ctx as *mut WrrScan) };
///     let Some(i) = scan.next_index() else { return 1 };
///     let (weight, overloaded) = dest_at(i); // weight 0 / overloaded if the slot is gone
///     scan.step(weight, overloaded);
///     0
/// }
/// let mut scan = WrrScan::new(&mark, count);
/// bpf_loop(2 * MAX_DESTS_PER_SVC as u32 + 1, wrr_step as *mut c_void, &mut scan as *mut _ as *mut c_void, 0);
/// let pos = scan.finish(&mut mark); // then write the mark back
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrrScan {
    /// Servers in the service.
    n: u32,
    /// `WALK_FIRST`, `WALK_TARGET` or `DONE`.
    phase: u32,
    /// Servers read in the current walk.
    k: u32,
    /// Servers walk 2 may read (`n`, or `last + 1` when the kernel would stop at `last`).
    limit: u32,
    /// The kernel's `last`: `cl` when the call began ([`HEAD`] if it pointed nowhere valid).
    last: i32,
    /// Threshold of the current walk.
    cw: i32,
    mw: i32,
    di: i32,
    /// Highest weight of a server not overloaded seen in walk 1, at least 0.
    max_ok: i32,
    /// Mark to store when done.
    out_cl: i32,
    out_cw: i32,
    /// Position found, or -1.
    found: i32,
    /// 0 none, 1 [`WrrFail::NoDest`], 2 [`WrrFail::Overloaded`].
    fail: u32,
    /// 1 when walk 2 is the kernel's last pass after a restart, which stops at `last`.
    stop_at_last: u32,
}

impl WrrScan {
    /// Starts a call on `n` servers with the service's mark.
    pub fn new(mark: &WrrMark, n: u32) -> WrrScan {
        // A position past the list cannot come from dest_changed (it resets to the head);
        // treat it as the head rather than read past the end.
        let last = if mark.cl >= 0 && (mark.cl as u32) < n { mark.cl } else { HEAD };
        let mut s = WrrScan {
            n,
            phase: WALK_FIRST,
            k: 0,
            limit: n,
            last,
            cw: mark.cw,
            mw: mark.mw,
            di: mark.di,
            max_ok: 0,
            out_cl: mark.cl,
            out_cw: mark.cw,
            found: -1,
            fail: 0,
            stop_at_last: 0,
        };
        // mw <= 0 and di <= 0 cannot come from wrr_init / wrr_dest_changed; the kernel only
        // tests mw == 0, and would loop for ever on the others.
        if mark.mw <= 0 || mark.di <= 0 {
            s.fail = 1;
            s.phase = DONE;
        }
        s
    }

    /// Position (kernel order) of the server to feed to [`step`](WrrScan::step) next, or
    /// `None` when the call is decided.
    pub fn next_index(&mut self) -> Option<u32> {
        if self.phase == WALK_FIRST && self.k >= self.n {
            self.plan_second_walk();
        }
        if self.phase == WALK_TARGET && self.k >= self.limit {
            // Walk 2 always hits before its end unless a flag changed between the walks.
            self.give_up(self.fail_cl(), self.fail_cw());
        }
        match self.phase {
            WALK_FIRST => {
                // From the server after `last`, round to `last`.
                let start = (self.last + 1) as u32;
                let i = start.wrapping_add(self.k);
                Some(if i >= self.n { i.wrapping_sub(self.n) } else { i })
            }
            WALK_TARGET => Some(self.k),
            _ => None,
        }
    }

    /// Feeds the server at the position [`next_index`](WrrScan::next_index) returned: its
    /// weight and whether it has the OVERLOAD flag.
    pub fn step(&mut self, weight: i32, overloaded: bool) -> WrrStep {
        let i = match self.phase {
            WALK_FIRST => {
                let start = (self.last + 1) as u32;
                let i = start.wrapping_add(self.k);
                let in_pass = i < self.n;
                if !overloaded && weight > self.max_ok {
                    self.max_ok = weight;
                }
                self.k = self.k.saturating_add(1);
                if !in_pass {
                    return WrrStep::Continue;
                }
                i
            }
            WALK_TARGET => {
                let i = self.k;
                self.k = self.k.saturating_add(1);
                i
            }
            _ => return self.outcome(),
        };
        if !overloaded && weight >= self.cw {
            self.found = i as i32;
            self.out_cl = i as i32;
            self.out_cw = self.cw;
            self.phase = DONE;
        }
        self.outcome()
    }

    /// The result so far: [`WrrStep::Continue`] until decided.
    pub fn outcome(&self) -> WrrStep {
        if self.phase != DONE {
            WrrStep::Continue
        } else if self.found >= 0 {
            WrrStep::Found(self.found as u32)
        } else if self.fail == 1 {
            WrrStep::Fail(WrrFail::NoDest)
        } else {
            WrrStep::Fail(WrrFail::Overloaded)
        }
    }

    /// Stores the mark as the kernel leaves it and returns the chosen position. Call once
    /// [`next_index`](WrrScan::next_index) has returned `None`.
    pub fn finish(&self, mark: &mut WrrMark) -> Result<u32, WrrFail> {
        if self.phase == DONE {
            mark.cl = self.out_cl;
            mark.cw = self.out_cw;
        }
        match self.outcome() {
            WrrStep::Found(i) => Ok(i),
            WrrStep::Fail(f) => Err(f),
            WrrStep::Continue => Err(WrrFail::Overloaded),
        }
    }

    fn give_up(&mut self, cl: i32, cw: i32) {
        self.out_cl = cl;
        self.out_cw = cw;
        self.fail = 2;
        self.phase = DONE;
    }

    /// Where the kernel leaves the mark when it gives up in walk 2's pass: at `last` in the
    /// stop-limited last pass, else at the head with `cw = mw`.
    fn fail_cl(&self) -> i32 {
        if self.stop_at_last != 0 {
            self.last
        } else {
            HEAD
        }
    }

    fn fail_cw(&self) -> i32 {
        if self.stop_at_last != 0 {
            self.cw
        } else {
            self.mw
        }
    }

    /// Walk 1 found nothing after `last`. Replays the kernel's later passes by arithmetic:
    ///
    /// - `cw - di > 0`: passes at `cw - di`, `cw - 2di`, ... over the whole list; the first one
    ///   at or below `max_ok` hits. After the pass at or below `di` the kernel gives up (its
    ///   `last_pass`), leaving the head and `cw = mw`.
    /// - otherwise, from the head: it gives up at once (head, `cw = mw`).
    /// - otherwise it restarts at `cw = mw`: passes at `mw`, `mw - di`, ...; the last one (at
    ///   or below `di`) stops after `last`, where the kernel gives up and leaves the mark.
    fn plan_second_walk(&mut self) {
        let (cw, di, mw, m) = (self.cw as i64, self.di as i64, self.mw as i64, self.max_ok as i64);
        let first = cw - di;
        let (from, restarted) = if first > 0 {
            (first, false)
        } else if self.last == HEAD {
            self.give_up(HEAD, self.mw);
            return;
        } else {
            (mw, true)
        };
        // The smallest positive threshold of the run (the kernel's last pass):
        // ((from - 1) mod di) + 1. Unsigned: BPF before ISA v4 has no signed division.
        let lowest = ((from - 1) as u64).checked_rem(di as u64).unwrap_or(0) as i64 + 1;
        let target = first_reachable(from, di, m);
        match target {
            Some(c) => {
                self.phase = WALK_TARGET;
                self.k = 0;
                self.cw = c as i32;
                if restarted && c <= di {
                    self.stop_at_last = 1;
                    self.limit = (self.last + 1) as u32;
                }
            }
            None if restarted => self.give_up(self.last, lowest as i32),
            None => self.give_up(HEAD, self.mw),
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
        let mut mark = wrr_init(&weights);
        let mut km = mark;
        let mut scan = WrrScan::new(&mark, 256);
        let mut calls = 0;
        while let Some(i) = scan.next_index() {
            calls += 1;
            let (w, ov) = d[i as usize];
            scan.step(w, ov);
        }
        assert!(calls <= 2 * 256, "{calls} steps");
        assert_eq!(scan.finish(&mut mark).map(|i| i as usize), kernel_schedule(&mut km, &d));
        assert_eq!(mark, km);
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
