//! `cargo xtask bench`: setup, release build, then every benchmark as root. Results print as
//! a table and go to `target/bench/` as JSON (one file per run, and `latest.json`).
//!
//! Benchmarks are not tests: nothing here fails because the machine is slow. It fails only when
//! a benchmark cannot run or a case did not take the path it measures.
//!
//! Suites: `per-packet` (lvs-bench), `e2e` and `scale` (lvs-bench-e2e); `--only SUITE` picks.

use std::{process::Command, time::Instant};

use anyhow::{bail, Result};

use crate::{build_release, is_root, root, run, setup, step, target_dir};

/// The suites, in the order they run.
const SUITES: [&str; 3] = ["per-packet", "e2e", "scale"];

pub fn main(extra: &[String]) -> Result<()> {
    let t0 = Instant::now();
    // `--only SUITE` (repeatable) picks suites; every other argument goes to lvs-bench.
    let mut only: Vec<String> = Vec::new();
    let mut rest: Vec<String> = Vec::new();
    let mut it = extra.iter();
    while let Some(a) = it.next() {
        let suite = if a == "--only" {
            Some(it.next().cloned().unwrap_or_default())
        } else {
            a.strip_prefix("--only=").map(String::from)
        };
        match suite {
            Some(s) if SUITES.contains(&s.as_str()) => only.push(s),
            Some(s) => bail!("--only {s:?}: expected one of {}", SUITES.join(", ")),
            None => rest.push(a.clone()),
        }
    }
    let wanted = |s: &str| only.is_empty() || only.iter().any(|o| o == s);
    if !rest.is_empty() && !wanted("per-packet") {
        bail!("arguments {rest:?} are for the per-packet suite, which --only leaves out");
    }
    setup()?;
    build_release()?;
    if !is_root() {
        bail!("cargo xtask bench needs root (BPF_PROG_TEST_RUN, network namespaces)");
    }
    let release = target_dir().join("release");
    // Every chosen suite runs even if an earlier one fails; the failures are reported at the end.
    let mut failed: Vec<String> = Vec::new();
    if wanted("per-packet") {
        step("bench: per-packet costs through BPF_PROG_TEST_RUN (target/release/lvs-bench)");
        // ARGS go to lvs-bench (e.g. `--case new_rr_8`, `--repeat N`, `--runs N`).
        if let Err(e) = run(Command::new(release.join("lvs-bench"))
            .arg("--out-dir")
            .arg(target_dir().join("bench"))
            .arg("--workspace")
            .arg(root())
            .args(&rest)
            .current_dir(root()))
        {
            failed.push(format!("per-packet: {e:#}"));
        }
    }
    for suite in ["e2e", "scale"] {
        if !wanted(suite) {
            continue;
        }
        step(&format!("bench: {suite} (target/release/lvs-bench-e2e --only {suite})"));
        if let Err(e) = run(Command::new(release.join("lvs-bench-e2e"))
            .args(["--only", suite])
            .arg("--bin-dir")
            .arg(&release)
            .arg("--out-dir")
            .arg(target_dir().join("bench"))
            .arg("--workspace")
            .arg(root())
            .current_dir(root()))
        {
            failed.push(format!("{suite}: {e:#}"));
        }
    }
    eprintln!("\nxtask bench: done in {:.0}s", t0.elapsed().as_secs_f64());
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(())
}
