//! The demo (`cargo xtask demo`): a NAT director in network namespaces in front of two real
//! servers, driven by configs/demo.yaml. Builds the rig, starts lvsd, sends HTTP and UDP
//! through the VIP, shows `ipvsadm -L -n` and `--stats`, and tears everything down (also on Ctrl-C or error).
//! Writes nothing into the repository.

use anyhow::{bail, Context, Result};
use lvs_tests::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
const PIN_DIR: &str = "/sys/fs/bpf/lvs-demo";
const HTTP_REQUESTS: usize = 6;
const UDP_DATAGRAMS: usize = 4;

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

fn main() {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let mut config = lvs_tests::util::workspace_root().join("configs/demo.yaml");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" => config = PathBuf::from(args.next().expect("--config needs a path")),
            "-h" | "--help" => {
                println!("usage: lvs-demo [--config FILE]   (run as root; `cargo xtask demo` builds and runs it)");
                return;
            }
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    // All guards live inside run(); they are dropped (namespaces deleted, lvsd stopped) before
    // the exit status is decided.
    let code = match run(&config) {
        Ok(true) => {
            println!("\nDemo finished: everything was torn down.");
            0
        }
        Ok(false) => {
            println!("\nDemo finished WITH ERRORS (see above); everything was torn down.");
            1
        }
        Err(e) => {
            eprintln!("\ndemo failed: {e:#}\nEverything the demo created was torn down.");
            1
        }
    };
    std::process::exit(code);
}

fn run(config: &Path) -> Result<bool> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo needs root (network namespaces, XDP, bpffs): run `sudo cargo xtask demo`");
    }
    let config = config.canonicalize().with_context(|| format!("config {}", config.display()))?;
    let mut ok = true;

    println!("== Building the demo network (namespaces, veths, a bridge) ==");
    println!(
        "  client {CLIENT_IP} --- {DIRECTOR_CLIENT_IF} [director, VIP {VIP}] {DIRECTOR_SERVER_IF} --- br0 --- rs1 {}\n\
         \x20                                                                              \\-- rs2 {}",
        rs_ip(1),
        rs_ip(2)
    );
    let topo = Topology::builder().real_servers(2).with_servers().build()?;
    println!("  namespaces: {} {} {} {} {}", topo.client.name(), topo.director.name(), topo.lan.name(), topo.rs(1).name(), topo.rs(2).name());
    println!("  real servers: HTTP on :{RS_HTTP_PORT} (answers its name), UDP echo on :{RS_UDP_PORT}");
    check_interrupt()?;

    println!("\n== Starting lvsd in the director namespace ==");
    if Path::new(PIN_DIR).exists() {
        println!("  removing stale {PIN_DIR} left by an earlier run");
        std::fs::remove_dir_all(PIN_DIR).with_context(|| format!("removing stale {PIN_DIR}"))?;
    }
    let tmp = TempDir::new("demo")?;
    let socket = tmp.join("lvsd.sock");
    println!("  lvsd --config {} --pin-dir {PIN_DIR} --socket {}", config.display(), socket.display());
    let mut lvsd = Lvsd::start_at(&topo.director, &config, Path::new(PIN_DIR), &socket, &[], tmp)?;
    println!("  lvsd is ready (pid {})", lvsd.pid());
    check_interrupt()?;

    println!("\n== {HTTP_REQUESTS} HTTP requests from the client to http://{VIP}/ ==");
    for i in 1..=HTTP_REQUESTS {
        check_interrupt()?;
        match topo.client.curl(&format!("http://{VIP}/"), &["--max-time", "5"]) {
            Ok(r) if r.status == 200 => println!("  request {i}: 200, answered by {}", r.text()),
            Ok(r) => {
                ok = false;
                println!("  request {i}: HTTP {} {:?}", r.status, r.text());
            }
            Err(e) => {
                ok = false;
                println!("  request {i}: FAILED: {}", first_line(&e));
            }
        }
    }

    println!("\n== {UDP_DATAGRAMS} UDP datagrams from the client to {VIP}:{RS_UDP_PORT} ==");
    for i in 1..=UDP_DATAGRAMS {
        check_interrupt()?;
        let payload = format!("hello-{i}");
        match topo.client.udp_request(vip(RS_UDP_PORT), payload.as_bytes(), Duration::from_secs(2)) {
            Ok(reply) => println!("  datagram {i} {payload:?}: reply {:?}", String::from_utf8_lossy(&reply)),
            Err(e) => {
                ok = false;
                println!("  datagram {i} {payload:?}: FAILED: {}", first_line(&e));
            }
        }
    }

    println!("\n== Traffic to the director's own address (not a VIP) still works ==");
    match topo.client.curl(&format!("http://{DIRECTOR_CLIENT_IP}:{DIRECTOR_HTTP_PORT}/"), &["--max-time", "5"]) {
        Ok(r) => println!("  http://{DIRECTOR_CLIENT_IP}:{DIRECTOR_HTTP_PORT}/: {} {}", r.status, r.text()),
        Err(e) => {
            ok = false;
            println!("  http://{DIRECTOR_CLIENT_IP}:{DIRECTOR_HTTP_PORT}/: FAILED: {}", first_line(&e));
        }
    }
    println!("  real servers counted HTTP {:?}, UDP {:?} (rs1, rs2)", topo.rs_http_hits(), topo.rs_udp_hits());
    check_interrupt()?;

    for args in [&["-L", "-n"][..], &["-L", "-n", "--stats"][..]] {
        println!("\n== ipvsadm {} (LVS_SOCKET={}) ==", args.join(" "), lvsd.socket().display());
        match lvsd.ipvsadm(args) {
            Ok(o) if o.success() => print!("{}", indent(&o.stdout_str())),
            Ok(o) => {
                ok = false;
                println!("  ipvsadm failed ({}):\n{}", o.status, indent(&o.stderr_str()));
            }
            Err(e) => {
                ok = false;
                println!("  ipvsadm: {e:#}");
            }
        }
    }

    if !ok {
        println!("\n== lvsd log (last 30 lines) ==");
        let log = lvsd.stderr();
        let lines: Vec<&str> = log.lines().collect();
        for l in &lines[lines.len().saturating_sub(30)..] {
            println!("  {l}");
        }
    }

    println!("\n== Tearing down ==");
    match lvsd.stop() {
        Ok(st) if st.success() => println!("  lvsd stopped cleanly (SIGTERM, exit 0)"),
        Ok(st) => {
            ok = false;
            println!("  lvsd exited with {st}");
        }
        Err(e) => {
            ok = false;
            println!("  stopping lvsd: {}", first_line(&e));
        }
    }
    drop(lvsd);
    drop(topo);
    println!("  namespaces deleted; {PIN_DIR} {}", if Path::new(PIN_DIR).exists() { "STILL PRESENT" } else { "removed" });
    Ok(ok)
}

fn first_line(e: &anyhow::Error) -> String {
    format!("{e:#}").lines().next().unwrap_or("").to_string()
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}
