//! `lvs-bench-e2e`: the system-level benchmarks, beside the per-packet ones of [`crate::bench`].
//!
//! - [`e2e`]: TCP throughput, short-connection rate, keep-alive request rate and small-packet
//!   rate through the director, lvs against plain kernel forwarding and HAProxy in the same run.
//! - [`scale`]: 10 000 services x 10 real servers through `ipvsadm -R` and YAML, listing, a 1 %
//!   reload, and the memory per tracked connection at 2^20 connections.
//!
//! Results print as Markdown tables and go to `<out-dir>/<suite>-<UTC time>.json` and
//! `<out-dir>/<suite>-latest.json` with the machine, kernel, versions and git commit.

pub mod e2e;
pub mod scale;
pub mod sys;

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use crate::bench::machine;

/// Tool versions worth keeping with the end-to-end figures.
pub fn tool_versions() -> Value {
    let v = |prog: &str, args: &[&str]| -> Option<String> {
        let out = std::process::Command::new(prog).args(args).output().ok()?;
        let text = if out.stdout.is_empty() { out.stderr } else { out.stdout };
        String::from_utf8_lossy(&text).lines().next().map(|l| l.trim().to_string())
    };
    serde_json::json!({
        "iperf3": v("iperf3", &["--version"]),
        "wrk": v("wrk", &["--version"]),
        "haproxy": v("haproxy", &["-v"]),
        "nginx": v("nginx", &["-v"]),
        "trafgen": v("trafgen", &["--version"]),
        "bpftool": v("bpftool", &["--version"]),
    })
}

/// Writes `<suite>-<stamp>.json` and `<suite>-latest.json` into `dir`: the environment of
/// [`machine::describe`] plus `body`'s fields.
pub fn write(
    dir: &Path,
    suite: &str,
    workspace: &Path,
    date: &str,
    stamp: &str,
    body: Value,
) -> anyhow::Result<PathBuf> {
    let mut env = machine::describe(workspace);
    env["date"] = date.into();
    env["benchmark"] = suite.into();
    env["command"] = format!("cargo xtask bench --only {suite}").into();
    env["tools"] = tool_versions();
    if let (Some(e), Value::Object(b)) = (env.as_object_mut(), body) {
        e.extend(b);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = serde_json::to_string_pretty(&env)? + "\n";
    let file = dir.join(format!("{suite}-{stamp}.json"));
    std::fs::write(&file, &text).with_context(|| format!("writing {}", file.display()))?;
    std::fs::write(dir.join(format!("{suite}-latest.json")), &text)?;
    Ok(file)
}
