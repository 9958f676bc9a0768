//! Network namespaces and commands run inside them.

use anyhow::{anyhow, bail, Context, Result};
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use crate::process::Spawned;
use crate::util::unique_name;

/// Default time limit for one helper command (`ip`, `ethtool`, `sysctl`, ...).
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// Captured result of a finished command.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// Human-readable command line, for messages.
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// Ok(self) on exit status 0, else an error carrying the command line, status and output.
    pub fn check(self) -> Result<CmdOutput> {
        if self.success() {
            Ok(self)
        } else {
            bail!(
                "`{}` failed ({}):\n--- stdout ---\n{}--- stderr ---\n{}",
                self.cmdline,
                self.status,
                self.stdout_str(),
                self.stderr_str()
            )
        }
    }
}

fn cmdline(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion (stdin null, output captured), killing it after `timeout`.
/// Does not fail on a non-zero exit status; use [`CmdOutput::check`].
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<CmdOutput> {
    let line = cmdline(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{line}`"))?;
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
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
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = t_err.join().unwrap_or_default();
            bail!(
                "`{line}` did not finish within {timeout:?} (killed); stderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(CmdOutput {
        cmdline: line,
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    })
}

/// Runs a command in the root namespace and fails on non-zero exit.
pub fn host_run<I, S>(program: &str, args: I) -> Result<CmdOutput>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_with_timeout(Command::new(program).args(args), CMD_TIMEOUT)?.check()
}

/// Moves the calling thread into the network namespace at `path`. Only the calling thread
/// changes namespace (CLONE_NEWNET may be entered per thread), and sockets it creates stay in
/// that namespace wherever they are used later.
pub fn enter_netns_on_this_thread(path: &std::path::Path) -> Result<()> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: plain syscall on a valid fd.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("setns into {}", path.display()));
    }
    Ok(())
}

/// A network namespace `lvs-<pid>-<counter>-<role>` with `lo` up; deleted on drop.
///
/// Commands run through `nsenter --net=/run/netns/NAME` (not `ip netns exec`, which remounts
/// /sys and so hides /sys/fs/bpf from anything that pins or opens pins).
#[derive(Debug)]
pub struct Netns {
    name: String,
    role: String,
}

static STALE_CLEANUP: Once = Once::new();

/// Deletes `lvs-<pid>-*` namespaces left behind by harness processes that no longer exist
/// (a test binary killed with SIGKILL cannot run its guards).
fn cleanup_stale_namespaces() {
    let Ok(rd) = std::fs::read_dir("/run/netns") else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !crate::util::is_stale(&name) {
            continue;
        }
        let pid = crate::util::owner_pid(&name).unwrap_or(0);
        eprintln!("lvs-tests: removing stale namespace {name} (owner pid {pid} is gone)");
        let _ = run_with_timeout(Command::new("ip").args(["netns", "del", &name]), CMD_TIMEOUT);
    }
}

impl Netns {
    /// Creates the namespace and brings up `lo`. `role` should be short (e.g. "client", "rs1").
    pub fn new(role: &str) -> Result<Netns> {
        STALE_CLEANUP.call_once(cleanup_stale_namespaces);
        let name = unique_name(role);
        host_run("ip", ["netns", "add", &name]).with_context(|| format!("creating netns {name}"))?;
        let ns = Netns { name, role: role.to_string() };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn role(&self) -> &str {
        &self.role
    }
    /// `/run/netns/NAME`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// A `Command` that runs `program` inside this namespace (via nsenter; bpffs stays visible).
    /// nsenter execs the program, so the child's PID is the program's PID.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display())).arg("--").arg(program);
        c
    }

    /// Runs a command in the namespace; returns its output whatever the exit status.
    pub fn output<I, S>(&self, program: &str, args: I) -> Result<CmdOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.output_timeout(program, args, CMD_TIMEOUT)
    }

    pub fn output_timeout<I, S>(&self, program: &str, args: I, timeout: Duration) -> Result<CmdOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.command(program);
        c.args(args);
        run_with_timeout(&mut c, timeout).with_context(|| format!("in netns {}", self.name))
    }

    /// Runs a command in the namespace and fails (with its output) on non-zero exit.
    pub fn run<I, S>(&self, program: &str, args: I) -> Result<CmdOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.output(program, args)?.check().with_context(|| format!("in netns {}", self.name))
    }

    /// `ip -n NAME ARGS...`, failing on error.
    pub fn ip(&self, args: &[&str]) -> Result<CmdOutput> {
        host_run("ip", std::iter::once("-n").chain(std::iter::once(self.name.as_str())).chain(args.iter().copied()))
    }

    /// Sets one sysctl inside the namespace (`net.ipv4.ip_forward`, `1`).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.sysctls(&[(key, value)])
    }

    /// Sets several sysctls in one `sysctl -w` call.
    pub fn sysctls(&self, kv: &[(&str, &str)]) -> Result<()> {
        let mut args = vec!["-q".to_string(), "-w".to_string()];
        args.extend(kv.iter().map(|(k, v)| format!("{k}={v}")));
        self.run("sysctl", &args)?;
        Ok(())
    }

    /// Reads a sysctl value (trimmed).
    pub fn sysctl_get(&self, key: &str) -> Result<String> {
        Ok(self.run("sysctl", ["-n", key])?.stdout_str().trim().to_string())
    }

    /// `ip addr add CIDR dev DEV`.
    pub fn addr_add(&self, dev: &str, cidr: &str) -> Result<()> {
        self.ip(&["addr", "add", cidr, "dev", dev])?;
        Ok(())
    }
    /// `ip link set DEV up`.
    pub fn link_up(&self, dev: &str) -> Result<()> {
        self.ip(&["link", "set", dev, "up"])?;
        Ok(())
    }
    /// `ip link set DEV mtu MTU`.
    pub fn set_mtu(&self, dev: &str, mtu: u32) -> Result<()> {
        self.ip(&["link", "set", dev, "mtu", &mtu.to_string()])?;
        Ok(())
    }
    /// `ip route add default via GW`.
    pub fn default_route(&self, gw: &str) -> Result<()> {
        self.ip(&["route", "add", "default", "via", gw])?;
        Ok(())
    }

    /// `ethtool -K DEV feature on|off ...`.
    pub fn ethtool_k(&self, dev: &str, features: &[(&str, bool)]) -> Result<()> {
        let mut args = vec!["-K".to_string(), dev.to_string()];
        for (f, on) in features {
            args.push(f.to_string());
            args.push(if *on { "on" } else { "off" }.to_string());
        }
        self.run("ethtool", &args)?;
        Ok(())
    }
    /// GRO on: gives a veth NAPI so native-XDP redirects *into its peer* are delivered
    /// (without it frames vanish while the XDP program counts a successful redirect).
    pub fn gro_on(&self, dev: &str) -> Result<()> {
        self.ethtool_k(dev, &[("gro", true)])
    }
    /// TX checksum offload off: locally generated packets otherwise carry partial checksums
    /// that become bad checksums after an XDP rewrite + redirect.
    pub fn tx_off(&self, dev: &str) -> Result<()> {
        self.ethtool_k(dev, &[("tx", false)])
    }

    /// True when an XDP program (native or generic) is attached to `dev`.
    pub fn xdp_attached(&self, dev: &str) -> Result<bool> {
        let out = self.ip(&["-d", "link", "show", "dev", dev])?.stdout_str();
        Ok(out.contains("prog/xdp"))
    }

    /// Runs `f` on a fresh thread that has entered this namespace, and returns its result.
    /// Sockets created by `f` belong to this namespace and may be returned and used anywhere.
    /// A panic in `f` is propagated.
    pub fn enter<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let path = self.path();
        std::thread::scope(|s| {
            let h = s.spawn(move || -> Result<R> {
                enter_netns_on_this_thread(&path)?;
                Ok(f())
            });
            match h.join() {
                Ok(r) => r,
                Err(p) => std::panic::resume_unwind(p),
            }
        })
    }

    /// Starts a guarded long-running process in this namespace (see [`Spawned`]).
    pub fn spawn<I, S>(&self, label: &str, program: &str, args: I) -> Result<Spawned>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.command(program);
        c.args(args);
        Spawned::spawn(label, c)
    }
}

impl Netns {
    /// Packets received so far on `dev` (`ip -j -s link`).
    pub fn rx_packets(&self, dev: &str) -> Result<u64> {
        let out = self.run("ip", ["-j", "-s", "link", "show", "dev", dev])?.stdout_str();
        let rx = out.split("\"rx\":{").nth(1).context("no rx statistics")?;
        let p = rx.split("\"packets\":").nth(1).context("no rx packets")?;
        Ok(p.split(|c: char| !c.is_ascii_digit()).next().unwrap_or("").parse()?)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        match run_with_timeout(Command::new("ip").args(["netns", "del", &self.name]), CMD_TIMEOUT) {
            Ok(o) if o.success() => {}
            Ok(o) => eprintln!("lvs-tests: deleting netns {} failed: {}", self.name, o.stderr_str()),
            Err(e) => eprintln!("lvs-tests: deleting netns {}: {e:#}", self.name),
        }
    }
}

/// Creates a veth pair with each end directly inside its namespace (never in the root
/// namespace, so parallel tests cannot collide on interface names). Both ends stay down.
pub fn veth_pair(a: &Netns, a_dev: &str, b: &Netns, b_dev: &str) -> Result<()> {
    a.ip(&["link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", b.name()])
        .map(|_| ())
        .map_err(|e| anyhow!("veth {}:{a_dev} <-> {}:{b_dev}: {e:#}", a.role(), b.role()))
}
