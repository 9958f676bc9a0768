//! lvs-bench: per-packet costs of the dataplane through BPF_PROG_TEST_RUN. See
//! `lvs_userspace::bench`; `cargo xtask bench` builds and runs it.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use lvs_userspace::bench::{self, machine, report};

/// Per-packet benchmarks of the XDP dataplane (needs root).
#[derive(Parser, Debug)]
#[command(name = "lvs-bench")]
struct Args {
    /// Iterations per timed run (the published figures use at least 1000000).
    #[arg(long, default_value_t = bench::DEFAULT_REPEAT)]
    repeat: u32,
    /// Timed runs per case (median and spread are over these).
    #[arg(long, default_value_t = bench::DEFAULT_RUNS)]
    runs: usize,
    /// Untimed iterations before each timed run.
    #[arg(long, default_value_t = bench::DEFAULT_WARMUP)]
    warmup: u32,
    /// Where the JSON results go.
    #[arg(long, value_name = "DIR", default_value = "target/bench")]
    out_dir: PathBuf,
    /// Source tree, for the git revision and Cargo.lock versions in the results.
    #[arg(long, value_name = "DIR", default_value = ".")]
    workspace: PathBuf,
    /// Run only these cases (repeatable); the floors always run.
    #[arg(long = "case", value_name = "NAME")]
    cases: Vec<String>,
}

fn main() -> ExitCode {
    let a = Args::parse();
    if a.runs == 0 || a.repeat == 0 {
        eprintln!("lvs-bench: --runs and --repeat must be at least 1");
        return ExitCode::from(2);
    }
    let options = bench::Options {
        repeat: a.repeat,
        runs: a.runs,
        warmup: a.warmup,
        out_dir: a.out_dir.clone(),
        only: a.cases,
    };
    let (date, stamp) = machine::utc_now();
    let outcome = match bench::run(options) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("lvs-bench: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    println!();
    print!("{}", report::table(&outcome));
    for m in &outcome.floors_after {
        println!("{} again after the cases: {}", m.name, report::summary(m));
    }
    let v = report::json(&outcome, &a.workspace, &date);
    match report::write(&a.out_dir, &stamp, &v) {
        Ok((file, latest)) => println!("\nwritten: {} and {}", file.display(), latest.display()),
        Err(e) => {
            eprintln!("lvs-bench: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    println!("{} in {:.0}s", date, outcome.elapsed_s);
    let failed: Vec<&str> =
        outcome.rows.iter().filter(|m| m.error.is_some()).map(|m| m.name.as_str()).collect();
    if !failed.is_empty() {
        eprintln!("lvs-bench: cases failed their checks: {}", failed.join(", "));
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
