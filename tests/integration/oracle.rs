//! Differential tests against kernel IPVS. Each golden transcript in `tests/oracle/golden/` was
//! recorded by running a scenario in the oracle VM (kernel IPVS + Debian's ipvsadm, `cargo xtask
//! oracle refresh`); here the same scenario runs against lvsd and the two transcripts are
//! compared under the allow-list (`tests/oracle/allow-list.txt`).
//!
//! Scenarios whose behaviour lvsd does not have yet are listed in `tests/oracle/pending.txt` with
//! the exact number of items that differ today and the issue that closes the gap. That number is
//! checked both ways: more differences is a regression; fewer means the list must be updated (and
//! a scenario that matches must leave the list). So every golden file is compared on every run.

use anyhow::{bail, Context, Result};
use lvs_tests::oracle::{compare, AllowList};
use lvs_tests::scenario::{oracle_dir, run_on_lvsd};
use lvs_tests::require_root;
use std::collections::BTreeMap;

/// A line of pending.txt: `<scenario> <differing items> <issue> # what is missing`.
struct Pending {
    differing: usize,
    issue: String,
}

fn pending() -> Result<BTreeMap<String, Pending>> {
    let path = oracle_dir().join("pending.txt");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut map = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(name), Some(n), Some(issue), 3) = (f.first(), f.get(1), f.get(2), f.len()) else {
            bail!("{}:{}: expected `<scenario> <differing items> <issue> # reason`", path.display(), i + 1);
        };
        let differing = n.parse().with_context(|| format!("{}:{}: bad count {n:?}", path.display(), i + 1))?;
        map.insert(name.to_string(), Pending { differing, issue: issue.to_string() });
    }
    Ok(map)
}

fn check(name: &str) {
    if !require_root() {
        return;
    }
    // Expiry is compared within ±1 s: no load test may run meanwhile.
    let _timing = lvs_tests::timing_shared();
    let golden_path = oracle_dir().join(format!("golden/{name}.txt"));
    let golden = std::fs::read_to_string(&golden_path).unwrap_or_else(|e| panic!("{}: {e}", golden_path.display()));
    let allow = AllowList::load(&oracle_dir().join("allow-list.txt")).expect("allow-list");
    let pending = pending().expect("pending list");
    let run = run_on_lvsd(name).expect("running the scenario against lvsd");
    let cmp = compare(name, &golden, &run.transcript, &allow);
    let differing = cmp.mismatches.len();
    match pending.get(name) {
        None => assert!(
            differing == 0 && run.completed,
            "scenario {name} differs from kernel IPVS (script completed: {}):\n{cmp}\nscenario stderr:\n{}",
            run.completed,
            run.stderr
        ),
        Some(p) => {
            assert!(
                differing != 0,
                "scenario {name} now matches kernel IPVS: remove it from tests/oracle/pending.txt"
            );
            assert_eq!(
                differing, p.differing,
                "scenario {name} (pending on issue {}): {differing} items differ, pending.txt says {}; \
                 update the count if the change is an improvement.\n{cmp}\nscenario stderr:\n{}",
                p.issue, p.differing, run.stderr
            );
            eprintln!("scenario {name}: {differing} items differ, as recorded (pending on issue {})", p.issue);
        }
    }
}

macro_rules! scenarios {
    ($($test:ident => $name:literal,)*) => {
        $(#[test] fn $test() { check($name) })*
        /// Every scenario with a test above.
        const SCENARIOS: &[&str] = &[$($name),*];
    };
}

scenarios! {
    conncount_dr => "conncount-dr",
    conncount_nat => "conncount-nat",
    errors => "errors",
    listings => "listings",
    persist => "persist",
    sched_dh => "sched-dh",
    sched_fo_ovf => "sched-fo-ovf",
    sched_lblc_lblcr => "sched-lblc-lblcr",
    sched_lc_wlc => "sched-lc-wlc",
    sched_mh => "sched-mh",
    sched_ops => "sched-ops",
    sched_rr => "sched-rr",
    sched_sed_nq => "sched-sed-nq",
    sched_sh => "sched-sh",
    sched_twos => "sched-twos",
    sched_wrr => "sched-wrr",
    thresholds => "thresholds",
    timeouts => "timeouts",
}

fn stems(dir: &str, ext: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(oracle_dir().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(ext)).map(str::to_string))
        .collect();
    v.sort();
    v
}

/// No golden file goes unchecked, no scenario lacks its golden file, and pending.txt names only
/// real scenarios.
#[test]
fn every_golden_file_is_compared() {
    let goldens = stems("golden", ".txt");
    let scenarios = stems("scenarios", ".sh");
    let mut tested: Vec<String> = SCENARIOS.iter().map(|s| s.to_string()).collect();
    tested.sort();
    assert_eq!(goldens, scenarios, "every scenario needs a golden file (cargo xtask oracle refresh NAME) and vice versa");
    assert_eq!(goldens, tested, "every golden file needs an entry in the scenarios! list of tests/integration/oracle.rs");
    for name in pending().expect("pending list").keys() {
        assert!(goldens.contains(name), "pending.txt names {name}, which has no golden file");
    }
}
