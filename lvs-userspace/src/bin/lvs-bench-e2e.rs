//! lvs-bench-e2e: end-to-end and control-plane benchmarks in network namespaces. See
//! `lvs_userspace::sysbench`; `cargo xtask bench --only e2e|scale` builds and runs it.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, ValueEnum};
use lvs_userspace::{bench::machine, sysbench};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Suite {
    E2e,
    Scale,
}

/// End-to-end (lvs vs kernel forwarding vs HAProxy) and scale benchmarks (needs root).
#[derive(Parser, Debug)]
#[command(name = "lvs-bench-e2e")]
struct Args {
    /// Which suites (repeatable; both when absent).
    #[arg(long = "only", value_enum)]
    only: Vec<Suite>,
    /// Seconds per end-to-end measurement.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=60))]
    seconds: u32,
    /// Rounds of every measurement (the median is reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// Where lvsd and ipvsadm are (default: beside this program).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Where the JSON results go.
    #[arg(long, value_name = "DIR", default_value = "target/bench")]
    out_dir: PathBuf,
    /// Source tree, for the git revision and Cargo.lock versions in the results.
    #[arg(long, value_name = "DIR", default_value = ".")]
    workspace: PathBuf,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let bin_dir = match a
        .bin_dir
        .clone()
        .or_else(|| std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.to_path_buf())))
    {
        Some(d) => d,
        None => {
            eprintln!("lvs-bench-e2e: cannot tell where lvsd is; pass --bin-dir");
            return ExitCode::from(2);
        }
    };
    for prog in ["lvsd", "ipvsadm"] {
        if !bin_dir.join(prog).is_file() {
            eprintln!("lvs-bench-e2e: no {prog} in {} (--bin-dir)", bin_dir.display());
            return ExitCode::from(2);
        }
    }
    let suites = if a.only.is_empty() { vec![Suite::E2e, Suite::Scale] } else { a.only.clone() };
    let work = std::env::temp_dir().join(format!("lvs-bench-e2e-{}", std::process::id()));
    let mut failed = false;
    for suite in suites {
        let (date, stamp) = machine::utc_now();
        let r = match suite {
            Suite::E2e => sysbench::e2e::run_all(sysbench::e2e::Options {
                seconds: a.seconds,
                rounds: a.rounds,
                bin_dir: bin_dir.clone(),
                work: work.join("e2e"),
            })
            .and_then(|o| {
                println!("\nend to end ({} s x {} rounds, {:.0} s):\n", a.seconds, a.rounds, o.elapsed_s);
                print!("{}", sysbench::e2e::table(&o));
                let f =
                    sysbench::write(&a.out_dir, "e2e", &a.workspace, &date, &stamp, sysbench::e2e::json(&o))?;
                println!("\nwritten: {}", f.display());
                let bad = o.failed();
                if !bad.is_empty() {
                    anyhow::bail!("measurements failed: {}", bad.join("; "));
                }
                Ok(())
            }),
            Suite::Scale => sysbench::scale::run_all(sysbench::scale::Options {
                bin_dir: bin_dir.clone(),
                work: work.join("scale"),
                rounds: a.rounds,
            })
            .and_then(|o| {
                println!("\nscale and control plane ({:.0} s):\n", o.elapsed_s);
                print!("{}", sysbench::scale::table(&o));
                let f = sysbench::write(
                    &a.out_dir,
                    "scale",
                    &a.workspace,
                    &date,
                    &stamp,
                    sysbench::scale::json(&o),
                )?;
                println!("\nwritten: {}", f.display());
                Ok(())
            }),
        };
        if let Err(e) = r {
            eprintln!("lvs-bench-e2e: {suite:?}: {e:#}");
            failed = true;
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
