//! Runs an oracle scenario (`tests/oracle/scenarios/NAME.sh`) on this host against lvsd and
//! returns its transcript, for comparison with the kernel's golden transcript.
//!
//! The scenario runs in `bash tests/oracle/run-scenario.sh lvsd ...` in a process group of its
//! own, with namespaces named `lvs-<pid>-<n>-o-*`. Its own EXIT trap tears everything down; the
//! guard here covers what a trap cannot: a scenario killed for overrunning its time limit. It
//! signals the whole group (bash, the servers, curl, lvsd) and deletes any namespace and pin dir
//! left with the scenario's prefix.

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::run_with_timeout;
use crate::util::{unique_name, workspace_root};

/// A scenario that runs longer than this on the host is killed and fails.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(300);

/// `tests/oracle/`.
pub fn oracle_dir() -> PathBuf {
    workspace_root().join("tests/oracle")
}

/// Kills the scenario's process group and removes its namespaces and pin dir on drop.
struct ScenarioGuard {
    pgid: i32,
    prefix: String,
}

impl Drop for ScenarioGuard {
    fn drop(&mut self) {
        // SIGTERM first so that bash's trap and lvsd's own shutdown run, then SIGKILL.
        // SAFETY: signalling a process group this guard created (negative pid = group).
        unsafe { libc::kill(-self.pgid, libc::SIGTERM) };
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: as above.
        unsafe { libc::kill(-self.pgid, libc::SIGKILL) };
        if let Ok(rd) = std::fs::read_dir("/run/netns") {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&self.prefix) {
                    eprintln!("lvs-tests: removing namespace {name} left by the scenario");
                    let _ = run_with_timeout(Command::new("ip").args(["netns", "del", &name]), Duration::from_secs(10));
                }
            }
        }
        let pins = PathBuf::from("/sys/fs/bpf").join(format!("{}pin", self.prefix));
        if pins.exists() {
            let _ = std::fs::remove_dir_all(&pins);
        }
    }
}

/// What a scenario run produced.
#[derive(Debug)]
pub struct ScenarioRun {
    /// The transcript (stdout), complete or up to where the script stopped.
    pub transcript: String,
    /// The script's stderr (lvsd's log when it failed to start, `die` messages, bash errors).
    pub stderr: String,
    /// The script ran to its end (exit 0). A scenario stops early with `die` when a step it
    /// depends on is refused, e.g. a feature lvsd does not have yet.
    pub completed: bool,
}

/// Runs scenario `name` against lvsd (binaries from [`crate::lvs_bin`]'s directory). Fails only
/// if it cannot start or overruns [`SCENARIO_TIMEOUT`].
pub fn run_on_lvsd(name: &str) -> Result<ScenarioRun> {
    let dir = oracle_dir();
    let script = dir.join(format!("scenarios/{name}.sh"));
    if !script.exists() {
        bail!("no scenario {}", script.display());
    }
    let prefix = format!("{}-", unique_name("o"));
    let bin_dir = crate::lvs_bin("lvsd").parent().context("lvsd path has no parent")?.to_path_buf();
    let mut child = Command::new("bash")
        .arg(dir.join("run-scenario.sh"))
        .arg("lvsd")
        .arg(&script)
        .env("LVS_BIN_DIR", bin_dir)
        .env("ORACLE_NS", &prefix)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting bash run-scenario.sh")?;
    let _guard = ScenarioGuard { pgid: child.id() as i32, prefix };
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    // Readers on threads: a scenario writes more than a pipe buffer.
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if t0.elapsed() > SCENARIO_TIMEOUT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let Some(status) = status else {
        drop(_guard);
        let _ = child.wait();
        let stderr = t_err.join().unwrap_or_default();
        bail!("scenario {name} ran over {SCENARIO_TIMEOUT:?}; stderr:\n{}", String::from_utf8_lossy(&stderr));
    };
    // Background jobs of the scenario hold the pipes open until the guard kills the group.
    drop(_guard);
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
    Ok(ScenarioRun { transcript: stdout, stderr, completed: status.success() })
}
