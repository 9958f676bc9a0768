//! Guarded child processes, and the lvsd daemon wrapper.

use anyhow::{bail, Context, Result};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::netns::{run_with_timeout, CmdOutput, Netns, CMD_TIMEOUT};
use crate::util::{lvs_bin, unique_name, wait_for, TempDir};

/// Grace period between SIGTERM and SIGKILL when a guard drops.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// A child process that is stopped when the guard drops: SIGTERM, up to [`STOP_GRACE`], then
/// SIGKILL, and always reaped. Only this child is signalled, by PID.
///
/// stdout and stderr go to files in a private temp dir ([`Spawned::stderr`]); if the guard
/// drops while the thread is panicking (a failed test), stderr is printed.
/// The child gets its own process group so a terminal Ctrl-C reaches only the harness, which
/// then shuts the child down in order.
pub struct Spawned {
    label: String,
    child: Child,
    reaped: Option<ExitStatus>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    _dir: TempDir,
}

impl Spawned {
    /// Starts `cmd` (stdin null). Build `cmd` with [`Netns::command`] to run it in a namespace.
    pub fn spawn(label: &str, mut cmd: Command) -> Result<Spawned> {
        let dir = TempDir::new("proc")?;
        let stdout_path = dir.join("stdout");
        let stderr_path = dir.join("stderr");
        let out = std::fs::File::create(&stdout_path)?;
        let err = std::fs::File::create(&stderr_path)?;
        // SAFETY: prctl is async-signal-safe. If the harness process dies without running its
        // guards (SIGKILL, abort), the child still gets SIGTERM, so lvsd detaches and unpins
        // instead of living on in a deleted namespace. The signal fires when the *thread* that
        // spawned the child exits, so keep a Spawned on the thread that created it.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {label}: {cmd:?}"))?;
        Ok(Spawned { label: label.to_string(), child, reaped: None, stdout_path, stderr_path, _dir: dir })
    }

    pub fn label(&self) -> &str {
        &self.label
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// Everything the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stderr_path).unwrap_or_default()).into_owned()
    }
    /// Everything the child wrote to stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stdout_path).unwrap_or_default()).into_owned()
    }

    /// `Some(status)` once the child has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.reaped.is_none() {
            self.reaped = self.child.try_wait()?;
        }
        Ok(self.reaped)
    }

    /// Fails (with the child's stderr) if it has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(st) = self.try_wait()? {
            bail!("{} exited unexpectedly ({st}); stderr:\n{}", self.label, self.stderr());
        }
        Ok(())
    }

    /// Polls `check` until it returns true; fails on timeout or if the child exits meanwhile.
    pub fn wait_until(&mut self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.ensure_running()?;
            if check() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("{}: timed out after {timeout:?} waiting for {what}; stderr:\n{}", self.label, self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal to the child (only if it has not been reaped).
    pub fn signal(&mut self, sig: libc::c_int) -> Result<()> {
        if self.try_wait()?.is_some() {
            return Ok(());
        }
        // SAFETY: kill on our own unreaped child's PID.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, sig) } != 0 {
            return Err(std::io::Error::last_os_error()).context("kill");
        }
        Ok(())
    }

    /// Waits up to `timeout` for the child to exit on its own.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait()? {
                return Ok(Some(st));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; returns the exit status. Fails if SIGKILL was
    /// needed (the child ignored SIGTERM) so tests notice unclean shutdowns.
    pub fn stop_timeout(&mut self, grace: Duration) -> Result<ExitStatus> {
        if let Some(st) = self.try_wait()? {
            return Ok(st);
        }
        self.signal(libc::SIGTERM)?;
        if let Some(st) = self.wait_timeout(grace)? {
            return Ok(st);
        }
        let _ = self.child.kill();
        let st = self.child.wait()?;
        self.reaped = Some(st);
        bail!("{} did not exit within {grace:?} of SIGTERM; killed. stderr:\n{}", self.label, self.stderr())
    }

    /// [`Spawned::stop_timeout`] with [`STOP_GRACE`].
    pub fn stop(&mut self) -> Result<ExitStatus> {
        self.stop_timeout(STOP_GRACE)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("lvs-tests: {e:#}");
        }
        if std::thread::panicking() {
            eprintln!("----- {} (pid {}) stderr -----\n{}----- end of {} stderr -----",
                self.label, self.child.id(), self.stderr(), self.label);
        }
    }
}

/// A running `lvsd` in a namespace (normally the director), with a unique pin dir under
/// /sys/fs/bpf and a unique control socket. Dropping it stops lvsd (SIGTERM) and removes the
/// pin dir.
pub struct Lvsd {
    process: Spawned,
    netns_path: PathBuf,
    pin_dir: PathBuf,
    socket: PathBuf,
    _dir: TempDir,
}

static STALE_PINS: std::sync::Once = std::sync::Once::new();

/// Removes `/sys/fs/bpf/lvs-<pid>-<n>-pin` dirs of harness processes that no longer exist.
fn cleanup_stale_pin_dirs() {
    let Ok(rd) = std::fs::read_dir("/sys/fs/bpf") else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with("-pin") || !crate::util::is_stale(&name) {
            continue;
        }
        let pid = crate::util::owner_pid(&name).unwrap_or(0);
        eprintln!("lvs-tests: removing stale pin dir /sys/fs/bpf/{name} (owner pid {pid} is gone)");
        let _ = std::fs::remove_dir_all(e.path());
    }
}

/// How long lvsd may take to load, attach and open its socket.
pub const LVSD_READY_TIMEOUT: Duration = Duration::from_secs(30);

impl Lvsd {
    /// `lvsd --config CONFIG --pin-dir /sys/fs/bpf/lvs-<pid>-<n>-pin --socket <tmp>/lvsd.sock`
    /// in `ns`, waiting until the socket accepts connections.
    pub fn start(ns: &Netns, config: &Path) -> Result<Lvsd> {
        Self::start_with(ns, config, &[])
    }

    /// Like [`Lvsd::start`] with extra arguments (e.g. `--keep-dataplane`).
    pub fn start_with(ns: &Netns, config: &Path, extra: &[&str]) -> Result<Lvsd> {
        STALE_PINS.call_once(cleanup_stale_pin_dirs);
        let pin_dir = PathBuf::from("/sys/fs/bpf").join(unique_name("pin"));
        let dir = TempDir::new("lvsd")?;
        let socket = dir.join("lvsd.sock");
        Self::start_at(ns, config, &pin_dir, &socket, extra, dir)
    }

    /// Starts lvsd with an explicit pin dir and socket (the demo uses /sys/fs/bpf/lvs-demo).
    /// `dir` is kept alive as long as the daemon (pass the temp dir holding the socket).
    pub fn start_at(ns: &Netns, config: &Path, pin_dir: &Path, socket: &Path, extra: &[&str], dir: TempDir) -> Result<Lvsd> {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        if !mounts.lines().any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf") && l.split_whitespace().nth(2) == Some("bpf")) {
            bail!("bpffs is not mounted on /sys/fs/bpf; run `cargo xtask setup`");
        }
        let mut cmd = ns.command(lvs_bin("lvsd"));
        cmd.arg("--config").arg(config).arg("--pin-dir").arg(pin_dir).arg("--socket").arg(socket).args(extra);
        cmd.env("RUST_BACKTRACE", "1");
        let process = Spawned::spawn("lvsd", cmd)?;
        let mut l = Lvsd {
            process,
            netns_path: ns.path(),
            pin_dir: pin_dir.to_path_buf(),
            socket: socket.to_path_buf(),
            _dir: dir,
        };
        let sock = l.socket.clone();
        l.process.wait_until("lvsd control socket", LVSD_READY_TIMEOUT, || UnixStream::connect(&sock).is_ok())?;
        Ok(l)
    }

    /// Runs lvsd in `ns` on `config` with a pin dir of its own (`tag` names it) and a socket in
    /// `dir`, expecting it to refuse to start: returns its output, and whether it left anything
    /// in the pin dir (which is removed either way).
    pub fn refusing(ns: &Netns, config: &Path, dir: &TempDir, tag: &str) -> Result<(CmdOutput, bool)> {
        let pin_dir = PathBuf::from("/sys/fs/bpf").join(unique_name(tag));
        let socket = dir.join(&format!("{tag}.sock"));
        let out = ns.output_timeout(
            lvs_bin("lvsd").to_str().expect("utf-8 path"),
            [
                "--config",
                config.to_str().expect("utf-8 path"),
                "--pin-dir",
                pin_dir.to_str().expect("utf-8 path"),
                "--socket",
                socket.to_str().expect("utf-8 path"),
            ],
            Duration::from_secs(20),
        )?;
        let pins_left = pin_dir.exists();
        let _ = std::fs::remove_dir_all(&pin_dir);
        if out.success() {
            bail!("lvsd accepted {}", config.display());
        }
        Ok((out, pins_left))
    }

    /// The dataplane's verdict counters (`lvsd --counters`), by name.
    pub fn counters(&self) -> Result<std::collections::HashMap<String, u64>> {
        let out = Command::new(lvs_bin("lvsd")).arg("--counters").arg("--socket").arg(&self.socket).output()?;
        if !out.status.success() {
            bail!("lvsd --counters: {}", String::from_utf8_lossy(&out.stderr));
        }
        String::from_utf8(out.stdout)?
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| Ok((k.to_string(), v.trim().parse().with_context(|| format!("counter line {k} {v}"))?)))
            .collect()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }
    /// `<pin dir>/v<N>`: lvsd pins under a directory named after its map-layout version. The
    /// tests find it rather than hard-code N, which changes with every layout change.
    pub fn layout_dir(&self) -> PathBuf {
        let found = std::fs::read_dir(&self.pin_dir).ok().and_then(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| n.len() > 1 && n.starts_with('v') && n[1..].bytes().all(|b| b.is_ascii_digit()))
        });
        self.pin_dir.join(found.unwrap_or_else(|| "v?".into()))
    }
    pub fn socket(&self) -> &Path {
        &self.socket
    }
    /// lvsd's log (stderr) so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }
    pub fn process(&mut self) -> &mut Spawned {
        &mut self.process
    }

    /// A `Command` for `ipvsadm` run in lvsd's namespace with `LVS_SOCKET` pointing at it.
    pub fn ipvsadm_command(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.netns_path.display()))
            .arg("--")
            .arg(lvs_bin("ipvsadm"))
            .env("LVS_SOCKET", &self.socket);
        c
    }

    /// Runs `ipvsadm ARGS`; returns the output whatever the exit status.
    pub fn ipvsadm(&self, args: &[&str]) -> Result<CmdOutput> {
        let mut c = self.ipvsadm_command();
        c.args(args);
        run_with_timeout(&mut c, CMD_TIMEOUT)
    }

    /// Runs `ipvsadm ARGS`, fails on non-zero exit, returns stdout.
    pub fn ipvsadm_ok(&self, args: &[&str]) -> Result<String> {
        Ok(self.ipvsadm(args)?.check()?.stdout_str())
    }

    /// SIGTERM and wait (up to 10 s); returns lvsd's exit status. The pin dir is removed when
    /// the guard drops.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        self.process.stop_timeout(Duration::from_secs(10))
    }

    /// Waits until the pin dir has disappeared (lvsd unpins on SIGTERM unless --keep-dataplane).
    pub fn wait_unpinned(&self, timeout: Duration) -> Result<()> {
        let p = self.pin_dir.clone();
        wait_for("pin dir removal", timeout, || Ok((!p.exists()).then_some(())))
    }
}

impl Drop for Lvsd {
    fn drop(&mut self) {
        if let Err(e) = self.process.stop_timeout(Duration::from_secs(10)) {
            eprintln!("lvs-tests: {e:#}");
        }
        // Tests must leave nothing in bpffs, also after --keep-dataplane or a crash.
        if self.pin_dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.pin_dir) {
                eprintln!("lvs-tests: removing {}: {e}", self.pin_dir.display());
            }
        }
    }
}
