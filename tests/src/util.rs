//! Small shared helpers: root check, binary lookup, temp dirs, bounded waiting.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static TEMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// True when the process can run privileged tests (euid 0).
///
/// Not root: with `CI` set this panics, because privileged tests must never be silently skipped
/// in CI; otherwise it prints why and returns false so the test can `return` early.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("this test needs root (network namespaces, XDP, bpffs) and CI is set: refusing to skip");
    }
    eprintln!("skipping: this test needs root (network namespaces, XDP, bpffs)");
    false
}

/// Path of a release binary of the workspace (`lvsd`, `ipvsadm`).
///
/// Looks in `$LVS_BIN_DIR` if set, else in the `release` directory of the target dir this
/// test binary was built into, `$CARGO_TARGET_DIR/release`, and `<workspace>/target/release`.
/// Panics with a clear message when it is missing.
pub fn lvs_bin(name: &str) -> PathBuf {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("LVS_BIN_DIR") {
        let p = Path::new(&dir).join(name);
        if p.is_file() {
            return p;
        }
        panic!(
            "LVS_BIN_DIR is set but {} does not exist: run `cargo build --release` first",
            p.display()
        );
    }
    if let Ok(exe) = std::env::current_exe() {
        // Test binaries live in <target>/<profile>/deps, bins in <target>/<profile>.
        for anc in exe.ancestors().skip(1).take(3) {
            if anc.file_name().is_some_and(|n| n == "release" || n == "debug") {
                if let Some(target) = anc.parent() {
                    candidates.push(target.join("release").join(name));
                }
                break;
            }
        }
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(Path::new(&t).join("release").join(name));
    }
    candidates.push(workspace_root().join("target").join("release").join(name));
    for c in &candidates {
        if c.is_file() {
            return c.clone();
        }
    }
    panic!(
        "binary `{name}` not found (looked at {}): run `cargo build --release` first, \
         or set LVS_BIN_DIR",
        candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", ")
    );
}

/// The workspace root (parent of the `tests` crate), as known at compile time.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests crate has a parent").to_path_buf()
}

/// Unique `lvs-<pid>-<counter>-<tag>` name; keep `tag` short.
pub(crate) fn unique_name(tag: &str) -> String {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("lvs-{}-{}-{}", std::process::id(), n, tag)
}

/// A uniquely named directory under the system temp dir, removed (recursively) on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

static STALE_TEMP: std::sync::Once = std::sync::Once::new();

/// PID of the harness process that created `lvs-<pid>-<counter>-<tag>`, if `name` has that form.
pub(crate) fn owner_pid(name: &str) -> Option<u32> {
    let mut parts = name.splitn(4, '-');
    if parts.next() != Some("lvs") {
        return None;
    }
    let pid = parts.next()?.parse::<u32>().ok()?;
    parts.next()?.parse::<u64>().ok()?;
    parts.next()?;
    Some(pid)
}

/// True for names made by a harness process that has exited (its guards never ran).
pub(crate) fn is_stale(name: &str) -> bool {
    owner_pid(name).is_some_and(|pid| pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists())
}

fn cleanup_stale_temp_dirs() {
    let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in rd.flatten() {
        if is_stale(&e.file_name().to_string_lossy()) && e.path().is_dir() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl TempDir {
    pub fn new(tag: &str) -> Result<TempDir> {
        STALE_TEMP.call_once(cleanup_stale_temp_dirs);
        for _ in 0..100 {
            let path = std::env::temp_dir().join(unique_name(tag));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
        bail!("could not create a unique temp dir for {tag}")
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
    /// Writes `contents` to `<dir>/<name>` and returns the path (e.g. a test's lvsd config).
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> Result<PathBuf> {
        let p = self.join(name);
        std::fs::write(&p, contents).with_context(|| format!("writing {}", p.display()))?;
        Ok(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Polls `check` every 50 ms until it returns `Ok(Some(v))` or `timeout` passes. The error
/// names `what` and the last error `check` returned.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match check() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() >= deadline {
            match last_err {
                Some(e) => bail!("timed out after {timeout:?} waiting for {what}: {e:#}"),
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Separates tests that compare timing with the kernel's from tests that load the machine.
///
/// The oracle scenarios compare connection expiry with kernel IPVS's within ±1 s; on a 2-core
/// machine a test pushing thousands of connections or megabytes at the same moment delays a
/// scenario's clients by seconds. Timing-sensitive tests hold [`timing_shared`] (they may run
/// together), load tests hold [`timing_exclusive`] (they never overlap one of them).
static TIMING: std::sync::RwLock<()> = std::sync::RwLock::new(());

pub fn timing_shared() -> std::sync::RwLockReadGuard<'static, ()> {
    TIMING.read().unwrap_or_else(|e| e.into_inner())
}

pub fn timing_exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    TIMING.write().unwrap_or_else(|e| e.into_inner())
}
