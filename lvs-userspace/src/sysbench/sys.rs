//! Named network namespaces and child processes that clean up after themselves.
//!
//! The end-to-end and scale benchmarks run real programs (lvsd, nginx, HAProxy, iperf3, wrk,
//! trafgen) in namespaces of their own. Every namespace and every process started here is a
//! guard: dropping it (also when a benchmark fails half-way and the error unwinds) kills the
//! process by its PID and deletes the namespace, so nothing is left behind.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

/// Runs a command to completion; fails with its stderr when it exits non-zero.
pub fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

/// Fails loudly when a program a benchmark needs is missing: a benchmark that cannot run must
/// not be skipped silently.
pub fn require(programs: &[&str]) -> anyhow::Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| !std::env::split_paths(&path).any(|d| d.join(p).is_file()))
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing programs {missing:?}: `cargo xtask setup` installs them (Debian packages \
             iperf3, wrk, haproxy, nginx, netsniff-ng for trafgen)"
        );
    }
    Ok(())
}

/// A named network namespace (`/run/netns/NAME`), deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> anyhow::Result<Netns> {
        // A namespace left by an earlier run that was killed: ours by name (pid-tagged), so
        // removing it is safe.
        let _ = Command::new("ip").args(["netns", "del", name]).stderr(Stdio::null()).status();
        run(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Netns { name: name.to_string() };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A command run inside the namespace. `nsenter --net` rather than `ip netns exec`, which
    /// remounts /sys and hides /sys/fs/bpf (lvsd pins there).
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.name)).arg(program);
        c
    }

    pub fn ip(&self, args: &[&str]) -> anyhow::Result<()> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args)).map(|_| ())
    }

    pub fn sysctl(&self, key: &str, value: &str) -> anyhow::Result<()> {
        run(self.cmd("sysctl").args(["-q", "-w", &format!("{key}={value}")])).map(|_| ())
    }

    pub fn ethtool_k(&self, dev: &str, settings: &[(&str, &str)]) -> anyhow::Result<()> {
        let mut c = self.cmd("ethtool");
        c.args(["-K", dev]);
        for (k, v) in settings {
            c.args([k, v]);
        }
        run(&mut c).map(|_| ())
    }

    /// Packet counters of `dev` in the namespace, `dir` = "rx" or "tx". From `ip -s -j`: /sys
    /// under `nsenter --net` still shows the host's interfaces.
    pub fn link_packets(&self, dev: &str, dir: &str) -> anyhow::Result<u64> {
        let out = run(Command::new("ip").args(["-n", &self.name, "-s", "-j", "link", "show", "dev", dev]))?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("ip -s -j link show")?;
        v[0]["stats64"][dir]["packets"]
            .as_u64()
            .with_context(|| format!("no {dir} packets for {dev} in {}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).stderr(Stdio::null()).status();
    }
}

/// Connects `a:dev_a` and `b:dev_b` with a veth pair, with fixed MAC addresses.
pub fn veth(a: &Netns, dev_a: &str, mac_a: &str, b: &Netns, dev_b: &str, mac_b: &str) -> anyhow::Result<()> {
    run(Command::new("ip").args([
        "-n", &a.name, "link", "add", dev_a, "address", mac_a, "type", "veth", "peer", "name", dev_b,
        "address", mac_b, "netns", &b.name,
    ]))?;
    a.ip(&["link", "set", dev_a, "up"])?;
    b.ip(&["link", "set", dev_b, "up"])?;
    Ok(())
}

/// A child process killed (by PID, SIGTERM then SIGKILL) and reaped on drop.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    log: Option<PathBuf>,
    /// What stops it cleanly on drop (trafgen wants SIGINT to stop its workers).
    stop_signal: i32,
    /// Started as the leader of its own process group: stopped as a group, and every process
    /// of the group is reaped (trafgen forks its workers, which outlive a killed parent).
    group: bool,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr going to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> anyhow::Result<Proc> {
        let f = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        Ok(Proc {
            name: name.into(),
            child: Some(child),
            log: Some(log.to_path_buf()),
            stop_signal: libc::SIGTERM,
            group: false,
        })
    }

    /// Like [`Proc::spawn`], the process leading a new process group (see `group`).
    pub fn spawn_group(name: &str, cmd: &mut Command, log: &Path) -> anyhow::Result<Proc> {
        use std::os::unix::process::CommandExt;
        let mut p = Self::spawn(name, cmd.process_group(0), log)?;
        p.group = true;
        Ok(p)
    }

    pub fn stop_signal(mut self, sig: i32) -> Proc {
        self.stop_signal = sig;
        self
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Fails (with the end of its log) if the process has already exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(c) = self.child.as_mut() {
            if let Some(st) = c.try_wait()? {
                bail!("{} exited early ({st}): {}", self.name, self.log_tail());
            }
        }
        Ok(())
    }

    pub fn log_tail(&self) -> String {
        let text = self.log.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// Sends `sig` and waits up to `wait` for the process to exit; SIGKILL after that.
    pub fn stop_with(&mut self, sig: i32, wait: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let pid = c.id() as i32;
        // The group's id is the leader's PID; signal it even if the leader is gone.
        let target = if self.group { -pid } else { pid };
        let mut status = c.try_wait().ok().flatten();
        if status.is_none() || self.group {
            // SAFETY: kill(2) on our own child (not yet reaped, so not reused) or its group.
            unsafe { libc::kill(target, sig) };
        }
        let t = Instant::now();
        while status.is_none() && t.elapsed() < wait {
            status = c.try_wait().ok().flatten();
            std::thread::sleep(Duration::from_millis(20));
        }
        if status.is_none() {
            let _ = c.kill();
            status = c.wait().ok();
        }
        if self.group {
            reap_group(pid, wait);
        }
        status
    }
}

/// Reaps every process of group `pgid` (orphans come to us as subreaper), SIGKILLing the group
/// if some are still running after `wait`.
fn reap_group(pgid: i32, wait: Duration) {
    let t = Instant::now();
    loop {
        let mut st = 0;
        // SAFETY: waitpid with a valid out-pointer.
        let r = unsafe { libc::waitpid(-pgid, &mut st, libc::WNOHANG) };
        if r < 0 {
            return; // ECHILD: none left
        }
        if r == 0 {
            if t.elapsed() > wait {
                // SAFETY: kill(2) on a process group whose members are our (unreaped) children.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop_with(self.stop_signal, Duration::from_secs(5));
        reap_orphans();
    }
}

/// Makes this process the reaper of its orphaned descendants: a program that forks workers
/// (trafgen) and exits first leaves them to us rather than to PID 1, which may never reap them.
pub fn become_subreaper() -> anyhow::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        bail!("prctl(PR_SET_CHILD_SUBREAPER): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reaps orphaned descendants that have exited (see [`become_subreaper`]).
pub fn reap_orphans() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid out-pointer; WNOHANG never blocks.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            break;
        }
    }
}

/// Polls `ready` every 50 ms for up to `limit`; fails with `what` if it never holds.
pub fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) -> anyhow::Result<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if ready() {
            return Ok(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what}: not ready after {:.0}s", limit.as_secs_f64())
}

/// Median of a sample (the mean of the middle two for an even count).
pub fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}
