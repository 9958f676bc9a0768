//! `lvs-oracle-diff [--allow FILE] [--scenario NAME] GOLDEN OURS`
//!
//! Compares a scenario transcript recorded against kernel IPVS (GOLDEN) with one recorded
//! against lvsd (OURS) and prints the report. Exit status: 0 when they match, 1 when they
//! differ, 2 on a usage or I/O error. Without `--allow` every line is compared exactly.

use anyhow::{bail, Context, Result};
use lvs_tests::oracle::{compare, AllowList};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
usage: lvs-oracle-diff [--allow FILE] [--scenario NAME] GOLDEN OURS
  --allow FILE      allow-list of intended differences (default: none, exact comparison)
  --scenario NAME   scenario name for scoped allow-list rules (default: GOLDEN's file stem)
exit status: 0 match, 1 differ, 2 usage or I/O error";

struct Args {
    allow: Option<PathBuf>,
    scenario: Option<String>,
    golden: PathBuf,
    ours: PathBuf,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>> {
    let (mut allow, mut scenario, mut files) = (None, None, Vec::new());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--allow" => allow = Some(PathBuf::from(args.next().context("--allow needs a file")?)),
            "--scenario" => scenario = Some(args.next().context("--scenario needs a name")?),
            s if s.starts_with('-') && s != "-" => bail!("unknown option `{s}`"),
            _ => files.push(PathBuf::from(arg)),
        }
    }
    let Ok([golden, ours]) = <[PathBuf; 2]>::try_from(files) else {
        bail!("expected two transcripts, GOLDEN and OURS");
    };
    Ok(Some(Args { allow, scenario, golden, ours }))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn run(args: Args) -> Result<bool> {
    let allow = match &args.allow {
        Some(path) => AllowList::load(path)?,
        None => AllowList::default(),
    };
    let scenario = match args.scenario {
        Some(name) => name,
        None => args
            .golden
            .file_stem()
            .with_context(|| format!("{} has no file name to name the scenario", args.golden.display()))?
            .to_string_lossy()
            .into_owned(),
    };
    let (golden, ours) = (read(&args.golden)?, read(&args.ours)?);
    let cmp = compare(&scenario, &golden, &ours, &allow);
    if !cmp.matches() {
        println!("golden: {}\nours:   {}", args.golden.display(), args.ours.display());
    }
    print!("{cmp}");
    Ok(cmp.matches())
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("lvs-oracle-diff: {e:#}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("lvs-oracle-diff: {e:#}");
            ExitCode::from(2)
        }
    }
}
