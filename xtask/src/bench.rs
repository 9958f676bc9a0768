//! `cargo xtask bench`: setup, release build, then every benchmark as root. Results print as
//! a table and go to `target/bench/` as JSON (one file per run, and `latest.json`).
//!
//! Benchmarks are not tests: nothing here fails because the machine is slow. It fails only when
//! a benchmark cannot run or a case did not take the path it measures.

use std::{process::Command, time::Instant};

use anyhow::{bail, Result};

use crate::{build_release, is_root, root, run, setup, step, target_dir};

pub fn main(extra: &[String]) -> Result<()> {
    let t0 = Instant::now();
    setup()?;
    build_release()?;
    if !is_root() {
        bail!("cargo xtask bench needs root (BPF_PROG_TEST_RUN, a private network namespace)");
    }
    step("bench: per-packet costs through BPF_PROG_TEST_RUN (target/release/lvs-bench)");
    // ARGS go to lvs-bench (e.g. `--case new_rr_8`, `--repeat N`, `--runs N`).
    run(Command::new(target_dir().join("release").join("lvs-bench"))
        .arg("--out-dir")
        .arg(target_dir().join("bench"))
        .arg("--workspace")
        .arg(root())
        .args(extra)
        .current_dir(root()))?;
    eprintln!("\nxtask bench: done in {:.0}s", t0.elapsed().as_secs_f64());
    Ok(())
}
