//! `cargo xtask oracle build|run|refresh`: a live kernel-IPVS oracle.
//!
//! The kernel here has no IPVS, but Debian's kernel packages do (as modules) and Debian's
//! ipvsadm is the real CLI. So a small VM booted from Debian packages runs the scenarios of
//! `tests/oracle/scenarios/` against kernel IPVS; the same scripts run on the host against lvsd,
//! and the differential runner compares the two transcripts.
//!
//! - The image: `debootstrap --variant=minbase` of Debian bookworm with the 6.1 kernel and the
//!   tools the scenarios use, made into an ext4 file with `mkfs.ext4 -d` (no loop mount), plus the
//!   kernel and initrd beside it. Cached under `$LVS_ORACLE_CACHE` (default
//!   `~/.cache/lvs-oracle`) in a directory named after a hash of its inputs; rebuilt only when
//!   they change (or with `build --rebuild`).
//! - A run: qemu boots the image with `init=/sbin/oracle-init`, the disk opened read-only
//!   (`snapshot=on`), no network device at all, and a 9p share holding a copy of `tests/oracle/`,
//!   the list of scenarios, and an `out/` directory for the transcripts. The init mounts the
//!   share, runs its `guest.sh` and powers off.
//! - Acceleration: TCG by default. `/dev/kvm` exists on these machines but cannot run a stock
//!   kernel; `LVS_ORACLE_ACCEL=kvm` opts in where KVM really works.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lvs_tests::oracle::{compare, AllowList};
use lvs_tests::scenario::run_on_lvsd;

use crate::{is_root, probe, root, run, step, target_dir};

const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
/// What the guest needs: the 6.1 kernel with its IPVS modules, the real ipvsadm, and what
/// `tests/oracle/` uses (ip, ethtool, ss, curl, python3, socat, sysctl, modprobe, and iptables
/// for firewall marks).
const GUEST_PACKAGES: &[&str] =
    &["linux-image-amd64", "ipvsadm", "iproute2", "iptables", "ethtool", "python3", "curl", "socat", "kmod", "procps"];
/// Host packages the oracle itself needs.
const HOST_PACKAGES: &[&str] = &["debootstrap", "qemu-system-x86", "e2fsprogs"];
const IMAGE_SIZE: &str = "2G";
const GUEST_MEM_MB: &str = "1024";
const GUEST_CPUS: &str = "2";
/// A whole boot, every scenario included, must end within this.
const RUN_LIMIT: Duration = Duration::from_secs(45 * 60);

/// PID 1 of the guest. Kept tiny and stable (it is part of the image's hash): everything a run
/// does lives in the share's guest.sh.
const GUEST_INIT: &str = r#"#!/bin/sh
# PID 1 of the oracle VM: mount the basics and the host's share, run its guest.sh, power off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
# The initramfs has moved /proc, /sys and /dev over already.
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sys /sys
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mkdir -p /run/netns /mnt/oracle
modprobe 9pnet_virtio
modprobe 9p
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 oracle /mnt/oracle
if [ -x /mnt/oracle/guest.sh ]; then
    /mnt/oracle/guest.sh >/mnt/oracle/console.log 2>&1
    echo $? >/mnt/oracle/guest.rc
else
    echo "no guest.sh in the share" >/mnt/oracle/console.log
fi
sync
umount /mnt/oracle
echo o >/proc/sysrq-trigger
sleep 30
"#;

pub fn main(args: &[String]) -> Result<()> {
    let (cmd, rest) = args.split_first().map(|(c, r)| (c.as_str(), r)).unwrap_or(("help", &[]));
    match cmd {
        "build" => build(rest.iter().any(|a| a == "--rebuild")).map(|_| ()),
        "run" => run_cmd(rest),
        "refresh" => refresh(rest),
        _ => {
            eprintln!(
                "usage: cargo xtask oracle <command>\n\n\
                 commands:\n  \
                 build [--rebuild]      build (or reuse) the cached VM image from Debian packages\n  \
                 run [SCENARIO...]      run scenarios in the VM (kernel IPVS) and on the host (lvsd),\n                         \
                 print the differences; transcripts in target/oracle/{{kernel,lvsd}}/\n  \
                 refresh [SCENARIO...]  run scenarios in the VM and store the transcripts as the golden\n                         \
                 files in tests/oracle/golden/ (all scenarios when none is named)"
            );
            std::process::exit(2)
        }
    }
}

fn oracle_dir() -> PathBuf {
    root().join("tests/oracle")
}

fn cache_root() -> PathBuf {
    if let Some(d) = std::env::var_os("LVS_ORACLE_CACHE") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/lvs-oracle")
}

/// FNV-1a over everything that goes into the image: a changed input gives a new image directory.
fn image_key() -> String {
    let inputs = format!(
        "v2\n{SUITE}\n{MIRROR}\n{}\n{IMAGE_SIZE}\n{GUEST_INIT}",
        GUEST_PACKAGES.join(",")
    );
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in inputs.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{SUITE}-{h:016x}")
}

/// A built image: the root file system and the kernel and initrd to boot it with.
pub struct Image {
    pub rootfs: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

impl Image {
    fn at(dir: &Path) -> Image {
        Image { rootfs: dir.join("rootfs.img"), kernel: dir.join("vmlinuz"), initrd: dir.join("initrd.img") }
    }
}

fn ensure_host_packages() -> Result<()> {
    let missing: Vec<&str> = HOST_PACKAGES
        .iter()
        .copied()
        .filter(|p| probe("dpkg-query", &["-W", "-f=${db:Status-Abbrev}", p]).is_none_or(|s| !s.starts_with("ii")))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!("missing packages {missing:?}; run as root");
    }
    run(Command::new("apt-get").args(["update", "-q"]).env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Builds the image unless a complete one with the same inputs is cached.
pub fn build(rebuild: bool) -> Result<Image> {
    step("oracle: VM image");
    ensure_host_packages()?;
    let key = image_key();
    let dir = cache_root().join(&key);
    std::fs::create_dir_all(cache_root())?;
    // Runs started side by side wait here rather than debootstrap into the same directory.
    let _lock = CacheLock::take()?;
    if dir.join("complete").exists() && !rebuild {
        eprintln!("cached: {}", dir.display());
        return Ok(Image::at(&dir));
    }
    if !is_root() {
        bail!("building the oracle image needs root (debootstrap)");
    }
    let t0 = Instant::now();
    let work = cache_root().join(format!("{key}.partial"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let tree = work.join("root");
    run(Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={}", GUEST_PACKAGES.join(",")))
        .args([SUITE, &tree.to_string_lossy(), MIRROR]))?;

    std::fs::create_dir_all(tree.join("mnt/oracle"))?;
    let init = tree.join("sbin/oracle-init");
    std::fs::write(&init, GUEST_INIT)?;
    run(Command::new("chmod").arg("755").arg(&init))?;
    let boot = tree.join("boot");
    let pick = |prefix: &str| -> Result<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&boot)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
            .collect();
        found.sort();
        found.pop().with_context(|| format!("no {prefix}* in {}", boot.display()))
    };
    std::fs::copy(pick("vmlinuz-")?, work.join("vmlinuz"))?;
    std::fs::copy(pick("initrd.img-")?, work.join("initrd.img"))?;

    let img = work.join("rootfs.img");
    run(Command::new("truncate").args(["-s", IMAGE_SIZE]).arg(&img))?;
    run(Command::new("mkfs.ext4").args(["-q", "-F", "-L", "oracle", "-d"]).arg(&tree).arg(&img))?;
    std::fs::remove_dir_all(&tree)?;
    std::fs::write(work.join("complete"), format!("built in {:.0}s\n", t0.elapsed().as_secs_f64()))?;

    // Older images (other inputs) go; the new one takes its final name last, so a build that
    // dies half way is never mistaken for a complete image.
    if let Ok(rd) = std::fs::read_dir(cache_root()) {
        for e in rd.flatten() {
            if e.path() != work && e.file_name() != "lock" {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    std::fs::rename(&work, &dir)?;
    eprintln!("built {} in {:.0}s", dir.display(), t0.elapsed().as_secs_f64());
    Ok(Image::at(&dir))
}

/// An exclusive flock on `<cache>/lock`, released when dropped (or when the process dies).
struct CacheLock(std::fs::File);

impl CacheLock {
    fn take() -> Result<CacheLock> {
        use std::os::fd::AsRawFd;
        let path = cache_root().join("lock");
        let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!("locking {}: {}", path.display(), std::io::Error::last_os_error());
        }
        Ok(CacheLock(f))
    }
}

impl Drop for CacheLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: unlocking a descriptor we own.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Every scenario (file stem of tests/oracle/scenarios/*.sh), sorted.
fn all_scenarios() -> Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(oracle_dir().join("scenarios"))?
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".sh")).map(str::to_string))
        .collect();
    v.sort();
    Ok(v)
}

fn chosen(args: &[String]) -> Result<Vec<String>> {
    let all = all_scenarios()?;
    if args.is_empty() {
        return Ok(all);
    }
    for a in args {
        if !all.contains(a) {
            bail!("no scenario `{a}` (known: {})", all.join(" "));
        }
    }
    Ok(args.to_vec())
}

/// Boots the VM once, runs `scenarios` against kernel IPVS, and returns the directory holding
/// `<scenario>.txt` transcripts (plus `.err`, `timing.txt`, `versions.txt`, `console.log`).
fn run_in_vm(scenarios: &[String]) -> Result<PathBuf> {
    let image = build(false)?;
    step(&format!("oracle: booting the VM for {}", scenarios.join(" ")));
    // One share per run, so that runs started side by side don't mix their outputs.
    let share = target_dir().join(format!("oracle/share-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&share);
    std::fs::create_dir_all(share.join("out"))?;
    run(Command::new("cp").arg("-r").arg(oracle_dir()).arg(share.join("tree")))?;
    // Stale outputs of host runs or goldens are not the guest's business.
    let _ = std::fs::remove_dir_all(share.join("tree/golden"));
    std::fs::copy(oracle_dir().join("guest.sh"), share.join("guest.sh"))?;
    std::fs::write(share.join("scenarios.list"), scenarios.join("\n") + "\n")?;

    let accel = std::env::var("LVS_ORACLE_ACCEL").unwrap_or_else(|_| "tcg".into());
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-accel", &accel, "-smp", GUEST_CPUS, "-m", GUEST_MEM_MB])
        .args(["-nographic", "-no-reboot", "-nic", "none", "-serial", "stdio", "-monitor", "none"])
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&image.initrd)
        .args(["-append", "root=/dev/vda rw console=ttyS0 init=/sbin/oracle-init quiet panic=-1"])
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=raw,snapshot=on", image.rootfs.display()))
        .arg("-virtfs")
        .arg(format!("local,path={},mount_tag=oracle,security_model=none", share.display()));
    let serial = std::fs::File::create(share.join("serial.log"))?;
    let t0 = Instant::now();
    let mut child = qemu
        .stdin(Stdio::null())
        .stdout(serial.try_clone()?)
        .stderr(serial)
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if t0.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the VM ran over {}s; see {}", RUN_LIMIT.as_secs(), share.join("serial.log").display());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("VM ran {:.0}s ({status})", t0.elapsed().as_secs_f64());
    let rc = std::fs::read_to_string(share.join("guest.rc")).unwrap_or_default();
    if rc.trim() != "0" {
        bail!(
            "the guest did not finish (guest.rc {:?}); see {} and {}",
            rc.trim(),
            share.join("console.log").display(),
            share.join("serial.log").display()
        );
    }
    let timing = std::fs::read_to_string(share.join("out/timing.txt")).unwrap_or_default();
    eprint!("{timing}");
    let failed: Vec<&str> = timing.lines().filter(|l| !l.contains(" rc=0 ")).collect();
    if !failed.is_empty() {
        bail!("scenarios failed in the VM: {failed:?}; see the .err files in {}", share.join("out").display());
    }
    Ok(share.join("out"))
}

/// The share of a successful run is not needed once its transcripts are copied out (a failed
/// run's share stays for its logs).
fn remove_share(out: &Path) {
    if let Some(share) = out.parent() {
        let _ = std::fs::remove_dir_all(share);
    }
}

fn run_cmd(args: &[String]) -> Result<()> {
    let scenarios = chosen(args)?;
    let kernel_out = run_in_vm(&scenarios)?;
    crate::build_release()?;
    let allow = AllowList::load(oracle_dir().join("allow-list.txt"))?;
    let results = target_dir().join("oracle");
    std::fs::create_dir_all(results.join("kernel"))?;
    std::fs::create_dir_all(results.join("lvsd"))?;
    // The host side is the same runner the integration tests use.
    std::env::set_var("LVS_BIN_DIR", target_dir().join("release"));
    let mut differ = Vec::new();
    for s in &scenarios {
        step(&format!("oracle: {s} on the host (lvsd)"));
        let kernel = std::fs::read_to_string(kernel_out.join(format!("{s}.txt")))?;
        std::fs::write(results.join(format!("kernel/{s}.txt")), &kernel)?;
        let ours = run_on_lvsd(s)?;
        std::fs::write(results.join(format!("lvsd/{s}.txt")), &ours.transcript)?;
        if !ours.completed {
            eprintln!("{s}: the scenario stopped early on the host:\n{}", ours.stderr);
        }
        let cmp = compare(s, &kernel, &ours.transcript, &allow);
        eprintln!("{}", cmp.report());
        if !cmp.matches() || !ours.completed {
            differ.push(s.clone());
        }
    }
    remove_share(&kernel_out);
    eprintln!("transcripts: {}/{{kernel,lvsd}}/", results.display());
    if differ.is_empty() {
        eprintln!("\noracle: every scenario matches kernel IPVS");
        Ok(())
    } else {
        bail!("differences from kernel IPVS in: {}", differ.join(" "))
    }
}

fn refresh(args: &[String]) -> Result<()> {
    let scenarios = chosen(args)?;
    let out = run_in_vm(&scenarios)?;
    let golden = oracle_dir().join("golden");
    std::fs::create_dir_all(&golden)?;
    for s in &scenarios {
        std::fs::copy(out.join(format!("{s}.txt")), golden.join(format!("{s}.txt")))?;
        eprintln!("golden/{s}.txt");
    }
    let versions = std::fs::read_to_string(out.join("versions.txt")).unwrap_or_default();
    std::fs::write(golden.join("VERSIONS"), versions)?;
    remove_share(&out);
    eprintln!("\noracle: {} golden file(s) refreshed; review with `git diff tests/oracle/golden`", scenarios.len());
    Ok(())
}
