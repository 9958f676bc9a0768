//! `lvs-bench`: per-packet costs of the dataplane through `BPF_PROG_TEST_RUN`.
//!
//! Every case runs `repeat` iterations per run, `runs` times, each iteration on the original
//! frame (the harness restores it, see `lvs_common::bench`). Figures are ns per packet; each is
//! reported beside the floor measured in the same process: the bare `XDP_PASS` program run
//! directly, and the harness tail-calling that same program. A case's cost above the harness
//! floor is what the dataplane adds to a program that does nothing.
//!
//! After every timed run the dataplane's verdict counters must have advanced by exactly one per
//! iteration on the case's path and not at all elsewhere, or the case fails.

pub mod cases;
pub mod harness;
pub mod machine;
pub mod report;
pub mod rig;

use std::{path::PathBuf, time::Instant};

use anyhow::{bail, Context};

use self::{
    cases::{Case, Scenario, TABLE_SIZE, XDP_PASS},
    harness::{Harness, Timing},
    rig::Rig,
};
use crate::{daemon::dataplane::Programs, testkit::netns};

/// Defaults: the benchmark issue asks for at least 1e6 iterations and 5 runs.
pub const DEFAULT_REPEAT: u32 = 1_000_000;
pub const DEFAULT_RUNS: usize = 5;
pub const DEFAULT_WARMUP: u32 = 10_000;

#[derive(Clone, Debug)]
pub struct Options {
    pub repeat: u32,
    pub runs: usize,
    /// Iterations before each timed run (not timed, counted).
    pub warmup: u32,
    pub out_dir: PathBuf,
    /// Only the cases with these names (all when empty); the floors always run.
    pub only: Vec<String>,
}

/// One row of the results: a floor or a case, with every run.
#[derive(Clone, Debug)]
pub struct Measured {
    pub name: String,
    pub what: String,
    /// Name of the row this one is compared with.
    pub baseline: Option<String>,
    pub runs: Vec<Timing>,
    pub target_ns: Option<f64>,
    /// Set when the case did not take the path it claims (or could not run).
    pub error: Option<String>,
    /// Facts about the setup worth keeping with the figures.
    pub notes: Vec<String>,
}

impl Measured {
    fn new(name: &str, what: &str, baseline: Option<&str>) -> Self {
        Measured {
            name: name.into(),
            what: what.into(),
            baseline: baseline.map(Into::into),
            runs: Vec::new(),
            target_ns: None,
            error: None,
            notes: Vec::new(),
        }
    }
}

pub const FLOOR_PASS: &str = "xdp_pass";
pub const FLOOR_HARNESS: &str = "harness_floor";

/// Everything one invocation measured.
pub struct Outcome {
    pub options: Options,
    pub cpu: usize,
    pub frame_len: usize,
    pub rows: Vec<Measured>,
    /// The two floors measured again after the cases, to show drift.
    pub floors_after: Vec<Measured>,
    pub elapsed_s: f64,
}

/// Runs the benchmarks. The calling thread moves into a private network namespace (gone when
/// the process exits) and onto one CPU.
pub fn run(options: Options) -> anyhow::Result<Outcome> {
    let t0 = Instant::now();
    let cpu = pin_to_one_cpu()?;
    netns::enter_private_director()?;
    rig::extend_namespace()?;
    let mut harness = Harness::load()?;

    let mut scenarios = cases::scenarios();
    let mut insert_floors = cases::insert_floors();
    if !options.only.is_empty() {
        for s in &mut scenarios {
            s.cases.retain(|c| options.only.contains(&c.name));
        }
        scenarios.retain(|s| !s.cases.is_empty());
        insert_floors.retain(|f| options.only.contains(&f.case.name));
        if scenarios.is_empty() && insert_floors.is_empty() {
            bail!("no case named {:?}", options.only);
        }
    }
    // The harness copies the frame on every iteration: equal lengths keep its share the same
    // in every case, so subtracting one harness floor is fair.
    let all_cases = || scenarios.iter().flat_map(|s| &s.cases).chain(insert_floors.iter().map(|f| &f.case));
    let frame = all_cases().next().expect("a case is left").frame.clone();
    if let Some(c) = all_cases().find(|c| c.frame.len() != frame.len()) {
        bail!(
            "case {} has a {}-byte frame, the others {} bytes",
            c.name,
            c.frame.len(),
            frame.len()
        );
    }

    eprintln!("floors ({} x {} iterations)", options.runs, options.repeat);
    let mut rows = floors(&mut harness, &frame, &options)?;
    for s in &scenarios {
        rows.extend(scenario(&mut harness, s, &options)?);
    }
    for f in &insert_floors {
        rows.push(insert_floor(&mut harness, f, &options)?);
    }
    eprintln!("floors again");
    let floors_after = floors(&mut harness, &frame, &options)?;
    Ok(Outcome {
        options,
        cpu,
        frame_len: frame.len(),
        rows,
        floors_after,
        elapsed_s: t0.elapsed().as_secs_f64(),
    })
}

/// The bare `XDP_PASS` program run directly, and through the harness; alternated run by run so
/// both see the same conditions.
fn floors(harness: &mut Harness, frame: &[u8], o: &Options) -> anyhow::Result<Vec<Measured>> {
    let mut pass = Measured::new(FLOOR_PASS, "bare XDP_PASS program, run directly", None);
    let mut floor = Measured::new(
        FLOOR_HARNESS,
        "harness (restore frame, vary, tail call) into the bare XDP_PASS program",
        Some(FLOOR_PASS),
    );
    harness.target_pass()?;
    harness.set_frame(frame, rig::vary_client_src(0))?;
    harness::time(harness.pass()?, frame, o.warmup.max(1))?;
    harness.run(frame, o.warmup.max(1))?;
    for _ in 0..o.runs {
        let t = harness::time(harness.pass()?, frame, o.repeat)?;
        check_verdict(&mut pass, t, XDP_PASS);
        pass.runs.push(t);
        let t = harness.run(frame, o.repeat)?;
        // XDP_ABORTED here would mean the tail call did not happen.
        check_verdict(&mut floor, t, XDP_PASS);
        floor.runs.push(t);
    }
    Ok(vec![pass, floor])
}

fn check_verdict(m: &mut Measured, t: Timing, want: u32) {
    if t.verdict != want && m.error.is_none() {
        m.error = Some(format!("verdict {} (expected {want})", t.verdict));
    }
}

/// Runs a scenario's cases, `runs` times each, interleaved run by run.
fn scenario(harness: &mut Harness, s: &Scenario, o: &Options) -> anyhow::Result<Vec<Measured>> {
    let mut rows: Vec<Measured> = s
        .cases
        .iter()
        .map(|c| {
            let mut m = Measured::new(&c.name, &c.what, Some(FLOOR_HARNESS));
            m.target_ns = c.target_ns;
            m
        })
        .collect();
    let mut rig: Option<Rig> = None;
    for run in 0..o.runs {
        if rig.is_none() || s.fresh_per_run {
            // Release the previous tables before allocating new ones.
            drop(rig.take());
            let t = Instant::now();
            // The fresh-per-run scenarios are IPv4 TCP through `lvs_xdp` alone: loading the
            // programs it tail-calls, five times per case, was most of the suite's time.
            let programs = if s.fresh_per_run { Programs::EntryOnly } else { Programs::All };
            let mut r = Rig::load(TABLE_SIZE, programs).context("loading the dataplane")?;
            (s.setup)(&mut r).with_context(|| format!("setting up {}", s.name))?;
            if run == 0 {
                eprintln!(
                    "{}: dataplane loaded and set up in {:.1}s",
                    s.name,
                    t.elapsed().as_secs_f64()
                );
            }
            rig = Some(r);
        }
        let r = rig.as_ref().expect("loaded above");
        harness.set_target(r.program_fd()?)?;
        for (case, row) in s.cases.iter().zip(rows.iter_mut()) {
            if row.error.is_some() {
                continue;
            }
            if let Err(e) = timed_run(harness, r, case, row, o) {
                row.error = Some(format!("{e:#}"));
                eprintln!("{}: FAILED: {e:#}", case.name);
            }
        }
    }
    for (case, row) in s.cases.iter().zip(rows.iter_mut()) {
        row.notes.push(format!("connection table capacity {}", TABLE_SIZE));
        if s.fresh_per_run {
            row.notes.push(format!(
                "fresh dataplane (empty tables) for each run: a run creates {} connections, never a full table",
                o.warmup as u64 + o.repeat as u64
            ));
        }
        if case.vary.mask != 0 {
            row.notes.push(format!("iteration i is client number i & {:#x}", case.vary.mask));
        }
        eprintln!("{}: {}", case.name, report::summary(row));
    }
    Ok(rows)
}

/// An insert-floor case: `runs` timed runs, each on a fresh table (`harness::InsertFloor`).
/// Its check: every iteration's insert succeeded, and the harness ran them all.
fn insert_floor(
    harness: &mut Harness,
    f: &cases::InsertFloorCase,
    o: &Options,
) -> anyhow::Result<Measured> {
    let case = &f.case;
    let mut row = Measured::new(&case.name, &case.what, Some(FLOOR_HARNESS));
    for _ in 0..o.runs {
        // Release the previous table before allocating the next.
        let table = harness::InsertFloor::load(f.entries)?;
        harness.set_target(table.program_fd()?)?;
        let r = (|| -> anyhow::Result<()> {
            harness.set_frame(&case.frame, case.vary)?;
            if o.warmup > 0 {
                harness.run(&case.frame, o.warmup)?;
            }
            let (ok0, failed0) = table.counts()?;
            let t = harness.run(&case.frame, o.repeat)?;
            let (ok, failed) = table.counts()?;
            let iterations = harness.iterations()?;
            if iterations != o.warmup as u64 + o.repeat as u64 {
                bail!("the harness ran {iterations} iterations, expected {}", o.warmup as u64 + o.repeat as u64);
            }
            if t.verdict != case.verdict {
                bail!("verdict {} (expected {})", t.verdict, case.verdict);
            }
            if ok - ok0 != o.repeat as u64 || failed != failed0 || failed0 != 0 {
                bail!(
                    "{} inserts succeeded and {} failed in {} iterations (warm-up: {failed0} failed)",
                    ok - ok0,
                    failed - failed0,
                    o.repeat
                );
            }
            row.runs.push(t);
            Ok(())
        })();
        if let Err(e) = r {
            row.error = Some(format!("{e:#}"));
            eprintln!("{}: FAILED: {e:#}", case.name);
            break;
        }
    }
    row.notes.push(format!("table of {} entries, fresh for each run", f.entries));
    if case.vary.mask != 0 {
        row.notes.push(format!("iteration i inserts client number i & {:#x}", case.vary.mask));
    }
    eprintln!("{}: {}", case.name, report::summary(&row));
    Ok(row)
}

/// Warm-up, then one timed run of `case` with the counter and verdict checks.
fn timed_run(
    h: &mut Harness,
    r: &Rig,
    case: &Case,
    row: &mut Measured,
    o: &Options,
) -> anyhow::Result<()> {
    h.set_frame(&case.frame, case.vary)?;
    if o.warmup > 0 {
        h.run(&case.frame, o.warmup)?;
    }
    let before = r.counters()?;
    let t = h.run(&case.frame, o.repeat)?;
    let after = r.counters()?;
    let iterations = h.iterations()?;
    if iterations != o.warmup as u64 + o.repeat as u64 {
        bail!(
            "the harness ran {iterations} iterations, expected {}",
            o.warmup as u64 + o.repeat as u64
        );
    }
    if t.verdict != case.verdict {
        bail!("verdict {} (expected {})", t.verdict, case.verdict);
    }
    if let Some(m) = rig::counter_mismatch(&before, &after, case.expect, o.repeat as u64) {
        bail!("not the path this case measures: {m}");
    }
    row.runs.push(t);
    Ok(())
}

/// Pins the thread (and everything it spawns) to the last CPU it may use: caches and the
/// per-CPU maps stay put between runs.
fn pin_to_one_cpu() -> anyhow::Result<usize> {
    // SAFETY: cpu_set_t is plain data; sched_{get,set}affinity write/read the set we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            bail!("sched_getaffinity: {}", std::io::Error::last_os_error());
        }
        let cpu = (0..libc::CPU_SETSIZE as usize)
            .rev()
            .find(|&c| libc::CPU_ISSET(c, &set))
            .context("no CPU in the affinity mask")?;
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) != 0 {
            bail!("sched_setaffinity: {}", std::io::Error::last_os_error());
        }
        Ok(cpu)
    }
}
