//! A private network namespace shaped like a director, for `BPF_PROG_TEST_RUN`.
//!
//! `bpf_fib_lookup` runs in the namespace of the caller, so test runs happen in a namespace of
//! our own with known interfaces, routes and static neighbours: next hops and MAC addresses are
//! deterministic, and nothing touches the host's network. The namespace is anonymous
//! (`unshare`), so it disappears with the thread that made it, also on a crash.

use std::{io::Write, process::Command};

use anyhow::{bail, Context};

/// MAC of the director's server-side interface `rs`.
pub const DIRECTOR_RS_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xd1];
/// MAC of the director's client-side interface `cl`.
pub const DIRECTOR_CL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xd2];

/// Runs a command; fails with its stderr if it does not succeed.
pub fn sh(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("spawning {}", args[0]))?;
    if !out.status.success() {
        bail!("{:?} failed: {}", args, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Runs `ip -batch -` on `commands` (one `ip` command line each, without the leading `ip`):
/// hundreds of neighbours in one process.
pub fn ip_batch(commands: &[String]) -> anyhow::Result<()> {
    let mut child = Command::new("ip")
        .args(["-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("spawning ip -batch")?;
    {
        let mut stdin = child.stdin.take().expect("piped stdin");
        for c in commands {
            writeln!(stdin, "{c}")?;
        }
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("ip -batch failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Moves the calling thread into a new network namespace shaped like a director: `cl`
/// (198.51.100.1/24, [`DIRECTOR_CL_MAC`]) towards the clients, `rs` (192.0.2.1/24,
/// [`DIRECTOR_RS_MAC`]) towards the real servers, forwarding on, static neighbours for the
/// client 198.51.100.2 (02:00:00:00:00:02) and the real servers 192.0.2.11-14
/// (02:00:00:00:00:11-14). Child processes inherit the namespace.
pub fn enter_private_director() -> anyhow::Result<()> {
    // SAFETY: unshare(CLONE_NEWNET) affects only the calling thread.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        bail!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
    }
    let mut cmds = vec![
        "link set lo up".to_string(),
        "link add cl address 02:00:00:00:00:d2 type veth peer name clp".to_string(),
        "link add rs address 02:00:00:00:00:d1 type veth peer name rsp".to_string(),
    ];
    for dev in ["cl", "clp", "rs", "rsp"] {
        cmds.push(format!("link set {dev} up"));
    }
    cmds.push("addr add 198.51.100.1/24 dev cl".into());
    cmds.push("addr add 192.0.2.1/24 dev rs".into());
    cmds.push("neigh replace 198.51.100.2 lladdr 02:00:00:00:00:02 dev cl nud permanent".into());
    for last in 11..=14 {
        cmds.push(format!(
            "neigh replace 192.0.2.{last} lladdr 02:00:00:00:00:{last} dev rs nud permanent"
        ));
    }
    ip_batch(&cmds)?;
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").context("enabling ip_forward")?;
    Ok(())
}
