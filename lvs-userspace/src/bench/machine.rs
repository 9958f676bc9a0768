//! What a result was measured on: machine, kernel, toolchain versions, source revision, date.

use std::{path::Path, process::Command};

use serde_json::{json, Value};

/// Trimmed stdout of a command, or `None` if it cannot run or fails.
fn probe(program: &str, args: &[&str], dir: &Path) -> Option<String> {
    let out = Command::new(program).args(args).current_dir(dir).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn memory_gib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: f64 =
        s.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some((kib / 1024.0 / 1024.0 * 10.0).round() / 10.0)
}

/// The version of `name` recorded in the workspace's Cargo.lock.
fn locked_version(workspace: &Path, name: &str) -> Option<String> {
    let lock = std::fs::read_to_string(workspace.join("Cargo.lock")).ok()?;
    let needle = format!("name = \"{name}\"\n");
    let at = lock.find(&needle)? + needle.len();
    let line = lock[at..].lines().next()?;
    Some(line.strip_prefix("version = ")?.trim_matches('"').to_string())
}

/// The environment of this run, as JSON. `workspace` is the source tree (for git and
/// Cargo.lock).
pub fn describe(workspace: &Path) -> Value {
    let unknown = || "unknown".to_string();
    let commit = probe("git", &["rev-parse", "HEAD"], workspace);
    // Tracked files only: untracked files do not change what was built from the commit.
    let dirty = probe("git", &["status", "--porcelain", "--untracked-files=no"], workspace)
        .map(|s| !s.is_empty());
    json!({
        "machine": {
            "cpu": cpu_model(),
            // Online CPUs, not this thread's affinity (the benchmark pins itself to one).
            // SAFETY: sysconf has no preconditions.
            "cores": unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) },
            "memory_gib": memory_gib(),
        },
        // Other work on the machine shows in the figures (caches, the hypervisor), not in the
        // kernel's timer, which leaves out only the time other tasks ran on the CPU.
        "loadavg": std::fs::read_to_string("/proc/loadavg").ok().map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_else(|_| unknown()),
        "versions": {
            "rustc": probe("rustc", &["--version"], workspace).unwrap_or_else(unknown),
            "nightly": probe("rustc", &["+nightly", "--version"], workspace).unwrap_or_else(unknown),
            "bpf_linker": probe("bpf-linker", &["--version"], workspace).unwrap_or_else(unknown),
            "aya": locked_version(workspace, "aya").unwrap_or_else(unknown),
            "aya_ebpf": locked_version(workspace, "aya-ebpf").unwrap_or_else(unknown),
        },
        "git": { "commit": commit.unwrap_or_else(unknown), "dirty": dirty },
    })
}

/// Now in UTC as (`2025-01-31T12:34:56Z`, `20250131T123456Z` for file names).
pub fn utc_now() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let (h, mi, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    (
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
        format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z"),
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn calendar_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }
}
