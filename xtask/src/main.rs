//! `cargo xtask setup|test|demo`: project orchestration. Depends only on std + anyhow so it
//! builds before anything else is installed.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

mod bench;
mod oracle;

const APT_PACKAGES: &[&str] = &[
    "iproute2",   // ip, bridge: namespaces, veths
    "ethtool",    // GRO / checksum offload on veths
    "curl",       // HTTP client in tests and the demo
    "util-linux", // nsenter: enter a netns without hiding /sys/fs/bpf
    "procps",     // sysctl
    "socat",
    "python3",
    "iperf3",
    "bpftool",
    "gcc", // linker for cargo install bpf-linker
    "libc6-dev",
    "prometheus", // promtool and a real server scraping lvsd's /metrics in the tests
    // `cargo xtask bench --only e2e`: HTTP load, the HAProxy baseline, the real server, and
    // small-packet load (trafgen). Where a service manager runs, Debian starts nginx and
    // haproxy on install; the benchmark runs its own copies in namespaces either way.
    "wrk",
    "haproxy",
    "nginx",
    "netsniff-ng",
];
const BPF_LINKER_VERSION: &str = "0.13.0";
const DEFAULT_TEST_THREADS: &str = "2";

fn usage() -> ! {
    eprintln!(
        "usage: cargo xtask <command>\n\n\
         commands:\n  \
         setup          install what the build and the tests need (idempotent)\n  \
         test [ARGS]    setup, cargo build --release, cargo test --release (ARGS go to the test\n                 \
         binaries, e.g. a name filter; LVS_TEST_THREADS overrides --test-threads={DEFAULT_TEST_THREADS})\n  \
         demo           setup, build, run the demo director in network namespaces\n  \
         bench [ARGS]   setup, build, run the benchmarks as root; results in target/bench/\n                 \
         (--only per-packet|e2e|scale, repeatable; other ARGS go to lvs-bench, e.g. --case new_rr_8)\n  \
         oracle ...     the kernel-IPVS oracle VM (`cargo xtask oracle help`)"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else { usage() };
    let rest = &args[1..];
    let r = match cmd.as_str() {
        "setup" => setup(),
        "test" => test(rest),
        "demo" => demo(rest),
        "bench" => bench::main(rest),
        "oracle" => oracle::main(rest),
        "-h" | "--help" | "help" => usage(),
        other => {
            eprintln!("unknown command `{other}`");
            usage()
        }
    };
    if let Err(e) = r {
        eprintln!("\nxtask {cmd}: FAILED: {e:#}");
        std::process::exit(1);
    }
}

fn step(msg: &str) {
    eprintln!("\n==> {msg}");
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is inside the workspace").to_path_buf()
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d),
        Some(d) => root().join(d),
        None => root().join("target"),
    }
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

fn is_root() -> bool {
    // /proc/self/status "Uid: real effective ..." avoids a libc dependency.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// Runs a command with inherited stdio; fails on non-zero exit.
fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {}", show(cmd));
    let st = cmd.stdin(Stdio::null()).status().with_context(|| format!("starting {}", show(cmd)))?;
    if !st.success() {
        bail!("`{}` failed ({st})", show(cmd));
    }
    Ok(())
}

/// Runs a command quietly; Some(stdout) on success.
fn probe(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

// ---------------------------------------------------------------------------------------------

fn setup() -> Result<()> {
    let t0 = Instant::now();
    step("setup: system packages");
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            probe("dpkg-query", &["-W", "-f=${db:Status-Abbrev}", p]).is_none_or(|s| !s.starts_with("ii"))
        })
        .collect();
    if missing.is_empty() {
        eprintln!("all present: {}", APT_PACKAGES.join(" "));
    } else {
        if !is_root() {
            bail!("missing packages {missing:?}; run `cargo xtask setup` as root");
        }
        run(Command::new("apt-get").args(["update", "-q"]).env("DEBIAN_FRONTEND", "noninteractive"))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }

    step("setup: nightly toolchain with rust-src (builds the eBPF object)");
    let installed = probe("rustup", &["component", "list", "--toolchain", "nightly", "--installed"]);
    match installed {
        Some(list) if list.lines().any(|l| l.starts_with("rust-src")) => eprintln!("nightly rust-src present"),
        Some(_) => run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))?,
        None => run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?,
    }

    step("setup: bpf-linker");
    // XTASK_FORCE_BPF_LINKER_INSTALL=1 (with CARGO_INSTALL_ROOT=/tmp/x) exercises the build recipe.
    match probe("bpf-linker", &["--version"]) {
        Some(v) if std::env::var_os("XTASK_FORCE_BPF_LINKER_INSTALL").is_none() => eprintln!("{} present", v.trim()),
        _ => install_bpf_linker()?,
    }

    step("setup: bpffs on /sys/fs/bpf");
    if bpffs_mounted() {
        eprintln!("mounted");
    } else {
        if !is_root() {
            bail!("bpffs is not mounted on /sys/fs/bpf; run `cargo xtask setup` as root");
        }
        run(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))?;
    }
    eprintln!("setup done in {:.1}s", t0.elapsed().as_secs_f64());
    Ok(())
}

fn bpffs_mounted() -> bool {
    std::fs::read_to_string("/proc/mounts").unwrap_or_default().lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 2 && f[1] == "/sys/fs/bpf" && f[2] == "bpf"
    })
}

/// bpf-linker's prebuilt binaries can't be fetched here, and it must link the very libLLVM the
/// nightly rustc uses (same LLVM major, or the bitcode it reads is rejected). So build it against
/// the toolchain's libLLVM: LLVM_PREFIX points at a temp dir whose lib/libLLVM.so links to it,
/// and an rpath into the toolchain keeps the binary working after the temp dir is gone.
fn install_bpf_linker() -> Result<()> {
    let sysroot = probe("rustc", &["+nightly", "--print", "sysroot"]).context("rustc +nightly --print sysroot")?;
    let libdir = PathBuf::from(sysroot.trim()).join("lib");
    let vv = probe("rustc", &["+nightly", "-vV"]).context("rustc +nightly -vV")?;
    let major = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("no LLVM version in `rustc +nightly -vV`")?
        .trim()
        .to_string();
    let mut libs: Vec<String> = std::fs::read_dir(&libdir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("libLLVM") && n.contains(".so"))
        .collect();
    // Prefer the fully versioned name (libLLVM.so.22.1-rust-...), as the recipe does.
    libs.sort_by_key(|n| (!n.starts_with("libLLVM.so."), n.clone()));
    let lib = libs.first().with_context(|| format!("no libLLVM*.so in {}", libdir.display()))?;
    eprintln!("building bpf-linker {BPF_LINKER_VERSION} against {}/{lib} (llvm-{major})", libdir.display());

    let tmp = std::env::temp_dir().join(format!("xtask-bpf-linker-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("lib"))?;
    std::os::unix::fs::symlink(libdir.join(lib), tmp.join("lib").join("libLLVM.so"))?;
    let r = run(Command::new("cargo")
        .args(["install", &format!("bpf-linker@{BPF_LINKER_VERSION}"), "--no-default-features", "--features"])
        .arg(format!("llvm-{major}"))
        .env("LLVM_PREFIX", &tmp)
        .env("RUSTFLAGS", format!("-C link-arg=-Wl,-rpath,{}", libdir.display()))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTUP_TOOLCHAIN"));
    let _ = std::fs::remove_dir_all(&tmp);
    r?;
    if probe("bpf-linker", &["--version"]).is_none() {
        bail!("bpf-linker installed but `bpf-linker --version` fails; is ~/.cargo/bin on PATH?");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

fn build_release() -> Result<()> {
    step("build: cargo build --release");
    run(cargo().args(["build", "--release"]))
}

fn test(extra: &[String]) -> Result<()> {
    let t0 = Instant::now();
    setup()?;
    build_release()?;
    let threads = std::env::var("LVS_TEST_THREADS").unwrap_or_else(|_| DEFAULT_TEST_THREADS.to_string());
    step(&format!("test: cargo test --release (default members), --test-threads={threads}"));
    // LVS_BIN_DIR: the integration tests run the lvsd/ipvsadm built by the step above.
    let mut cmd = cargo();
    cmd.args(["test", "--release", "--no-fail-fast", "--", &format!("--test-threads={threads}")])
        .args(extra)
        .env("LVS_BIN_DIR", target_dir().join("release"));
    let (status, totals) = run_counting(cmd)?;
    leftover_report();
    // One closing line over every test binary: cargo's own last line belongs to whichever
    // binary ran last (often doc tests with nothing in them).
    println!("{} passed, {} failed, {} skipped", totals.passed, totals.failed, totals.ignored);
    if !status.success() {
        bail!("cargo test failed ({status})");
    }
    if totals.passed == 0 {
        bail!("no test ran");
    }
    eprintln!("\nxtask test: all passed in {:.0}s", t0.elapsed().as_secs_f64());
    Ok(())
}

#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

/// Runs cargo test, echoing its stdout while adding up its `test result:` lines.
fn run_counting(mut cmd: Command) -> Result<(std::process::ExitStatus, Totals)> {
    use std::io::{BufRead, BufReader, Write};
    let mut child = cmd.stdout(Stdio::piped()).spawn().context("spawning cargo test")?;
    let mut totals = Totals::default();
    let out = child.stdout.take().expect("piped stdout");
    let mut echo = std::io::stdout().lock();
    for line in BufReader::new(out).lines() {
        let line = line?;
        let _ = writeln!(echo, "{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let count = |word: &str| -> u64 {
                rest.split(';')
                    .filter_map(|part| part.trim().trim_start_matches("ok. ").trim_start_matches("FAILED. ").strip_suffix(word))
                    .filter_map(|n| n.trim().parse::<u64>().ok())
                    .sum()
            };
            totals.passed += count(" passed");
            totals.failed += count(" failed");
            totals.ignored += count(" ignored");
        }
    }
    let _ = echo.flush();
    Ok((child.wait()?, totals))
}

/// Warns about harness namespaces still present after the run (there should be none).
fn leftover_report() {
    let Ok(rd) = std::fs::read_dir("/run/netns") else { return };
    let left: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("lvs-"))
        .collect();
    if !left.is_empty() {
        eprintln!("warning: network namespaces left behind: {}", left.join(" "));
    }
}

fn demo(extra: &[String]) -> Result<()> {
    setup()?;
    build_release()?;
    step("demo: target/release/lvs-demo");
    let bin = target_dir().join("release");
    // Ctrl-C reaches the whole foreground group; the demo handles it and tears its namespaces
    // down, so xtask must outlive it instead of dying first and returning the prompt early.
    // SAFETY: setting a signal disposition; the demo installs its own handler.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    run(Command::new(bin.join("lvs-demo"))
        .arg("--config")
        .arg(root().join("configs/demo.yaml"))
        .args(extra)
        .env("LVS_BIN_DIR", &bin))
}
