//! The results as a table on stdout and as JSON under the output directory.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{json, Value};

use super::{machine, Measured, Outcome, DEFAULT_REPEAT, DEFAULT_RUNS};

/// Median, minimum and maximum of the ns/packet of every run.
pub fn stats(m: &Measured) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = m.runs.iter().map(|t| t.ns as f64).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    Some((median, v[0], v[n - 1]))
}

pub fn summary(m: &Measured) -> String {
    match (stats(m), &m.error) {
        (_, Some(e)) => format!("FAILED: {e}"),
        (Some((med, lo, hi)), None) => {
            format!("{med:.0} ns/pkt ({lo:.0}-{hi:.0}) over {} runs", m.runs.len())
        }
        (None, None) => "no runs".into(),
    }
}

/// A row's comparison with its baseline: (cost above it, ratio to it), from the medians.
fn against_baseline(m: &Measured, rows: &[Measured]) -> Option<(f64, f64)> {
    let base = rows.iter().find(|r| Some(&r.name) == m.baseline.as_ref())?;
    let (b, _, _) = stats(base)?;
    let (v, _, _) = stats(m)?;
    Some((v - b, v / b))
}

fn target_verdict(m: &Measured, above: Option<f64>) -> &'static str {
    match (m.target_ns, above) {
        (Some(t), Some(a)) if a <= t => "met",
        (Some(_), Some(_)) => "MISSED",
        _ => "",
    }
}

/// The results as a Markdown table (it goes into the README as printed).
pub fn table(o: &Outcome) -> String {
    let mut rows = vec![[
        "case".to_string(),
        "ns/pkt median".into(),
        "spread (min-max)".into(),
        "baseline".into(),
        "above baseline".into(),
        "ratio".into(),
        "target (above)".into(),
    ]];
    for m in &o.rows {
        let Some((med, lo, hi)) = stats(m).filter(|_| m.error.is_none()) else {
            let why = format!("FAILED: {}", m.error.as_deref().unwrap_or("no runs"));
            rows.push([
                m.name.clone(),
                why,
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
            continue;
        };
        let cmp = against_baseline(m, &o.rows);
        let (above, ratio) = match cmp {
            Some((a, r)) => (format!("{a:.0}"), format!("{r:.2}x")),
            None => ("-".into(), "-".into()),
        };
        let target = match m.target_ns {
            Some(t) => format!("<= {t:.0} {}", target_verdict(m, cmp.map(|c| c.0))),
            None => "-".into(),
        };
        rows.push([
            m.name.clone(),
            format!("{med:.0}"),
            format!("{lo:.0}-{hi:.0}"),
            m.baseline.clone().unwrap_or_else(|| "-".into()),
            above,
            ratio,
            target,
        ]);
    }
    let widths: Vec<usize> =
        (0..7).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (n, r) in rows.iter().enumerate() {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            // Text columns left-aligned, numbers right-aligned.
            .map(
                |(i, (c, w))| {
                    if i == 0 || i == 3 {
                        format!("{c:<w$}")
                    } else {
                        format!("{c:>w$}")
                    }
                },
            )
            .collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
        if n == 0 {
            let rule: Vec<String> = widths
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    if i == 0 || i == 3 {
                        "-".repeat(w + 2)
                    } else {
                        format!("{}:", "-".repeat(w + 1))
                    }
                })
                .collect();
            out.push_str(&format!("|{}|\n", rule.join("|")));
        }
    }
    out
}

fn row_json(m: &Measured, rows: &[Measured]) -> Value {
    let s = stats(m);
    let cmp = against_baseline(m, rows);
    json!({
        "name": m.name,
        "what": m.what,
        "ns_per_packet": {
            "median": s.map(|s| s.0),
            "min": s.map(|s| s.1),
            "max": s.map(|s| s.2),
            "runs": m.runs.iter().map(|t| t.ns).collect::<Vec<_>>(),
        },
        "baseline": m.baseline,
        "above_baseline_ns": cmp.map(|c| c.0),
        "ratio_to_baseline": cmp.map(|c| c.1),
        "target_above_baseline_ns": m.target_ns,
        "target": target_verdict(m, cmp.map(|c| c.0)),
        "error": m.error,
        "notes": m.notes,
    })
}

pub fn json(o: &Outcome, workspace: &Path, date: &str) -> Value {
    let mut env = machine::describe(workspace);
    env["date"] = json!(date);
    env["benchmark"] = json!("per-packet (BPF_PROG_TEST_RUN)");
    env["command"] = json!("cargo xtask bench");
    env["method"] = json!({
        "repeat": o.options.repeat,
        "runs": o.options.runs,
        "warmup_per_run": o.options.warmup,
        "meets_minimum": o.options.repeat >= DEFAULT_REPEAT && o.options.runs >= DEFAULT_RUNS,
        "cpu": o.cpu,
        "frame_bytes": o.frame_len,
        "timer": "the kernel's BPF_PROG_TEST_RUN duration: loop time / repeat, whole ns rounded down",
        "harness": "bench_harness restores the original frame (8-byte words from a map), varies one port and one address octet from an iteration count, tail-calls the program under test; its cost is harness_floor minus xdp_pass",
        "path_check": "each case's verdict counters advanced by exactly repeat per timed run, all others by zero",
    });
    env["elapsed_s"] = json!(o.elapsed_s);
    env["cases"] = Value::Array(o.rows.iter().map(|m| row_json(m, &o.rows)).collect());
    env["floors_after"] =
        Value::Array(o.floors_after.iter().map(|m| row_json(m, &o.floors_after)).collect());
    env
}

/// Writes `per-packet-<timestamp>.json` and `latest.json` into `dir`.
pub fn write(dir: &Path, stamp: &str, v: &Value) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = serde_json::to_string_pretty(v)? + "\n";
    let file = dir.join(format!("per-packet-{stamp}.json"));
    let latest = dir.join("latest.json");
    std::fs::write(&file, &text).with_context(|| format!("writing {}", file.display()))?;
    std::fs::write(&latest, &text).with_context(|| format!("writing {}", latest.display()))?;
    Ok((file, latest))
}
