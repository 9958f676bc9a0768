//! lvsd: the director daemon. See `lvs_userspace::daemon`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use lvs_userspace::{control, daemon, decap};

/// XDP/eBPF Linux Virtual Server director.
#[derive(Parser, Debug)]
#[command(name = "lvsd", version)]
struct Args {
    /// YAML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// bpffs directory for pinned maps and links (two directors on one host need two).
    #[arg(long, value_name = "DIR", default_value = daemon::DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
    /// Control socket path.
    #[arg(long, value_name = "PATH", default_value = control::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// On SIGTERM leave the XDP program attached and the maps pinned (forwarding continues).
    #[arg(long)]
    keep_dataplane: bool,
    /// Take over the interfaces of a dataplane pinned under --pin-dir by an lvsd with another
    /// map layout (an upgrade that changed the maps), discarding its connections.
    #[arg(long)]
    replace_incompatible_dataplane: bool,
    /// Print the dataplane's verdict counters of a running lvsd and exit.
    #[arg(long, conflicts_with_all = ["config", "check_config"])]
    counters: bool,
    /// Check a configuration file (syntax, values, and what this lvsd can run), print the
    /// verdict and the changes it would make (to the lvsd on --socket if one runs, else to an
    /// empty director), and exit: 0 if lvsd would accept it, 1 if not. Changes nothing.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    /// Make the lvsd on --socket re-read its config file and apply the difference (as SIGHUP
    /// does); print each change as an ipvsadm rule. Exit 1 if the file is refused.
    #[arg(long, conflicts_with_all = ["config", "check_config", "counters"])]
    reload: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// On a real server of -i (tunnel) services: attach the IP-in-IP (and IPv6-in-IPv6)
    /// decapsulation program to an interface's ingress (pinned, so it stays after this
    /// command exits), for hosts without the ipip / ip6_tunnel modules. Again on an attached interface: replace its addresses.
    Decap {
        /// Interface the tunnelled packets arrive on.
        #[arg(long, value_name = "IF")]
        interface: String,
        /// Also decapsulate packets whose outer destination is this address, IPv4 or IPv6
        /// (repeatable); the interface's own addresses always are (IPv6 link-local ones not).
        #[arg(long, value_name = "ADDR")]
        address: Vec<std::net::IpAddr>,
        /// bpffs directory of the decapsulation pins.
        #[arg(long, value_name = "DIR", default_value = decap::DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        /// Detach the program from the interface and remove its pins.
        #[arg(long, conflicts_with = "counters")]
        detach: bool,
        /// Print the program's counters on this interface.
        #[arg(long)]
        counters: bool,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let result = if let Some(Command::Decap { interface, address, pin_dir, detach, counters }) = args.command {
        decap::run(&decap::DecapOptions { interface, pin_dir, addresses: address, detach, counters })
    } else if args.counters {
        print_counters(&args.socket)
    } else if args.reload {
        reload(&args.socket)
    } else if let Some(file) = args.check_config {
        check_config(&file, &args.socket)
    } else if let Some(config) = args.config {
        daemon::run(daemon::Options {
            config,
            pin_dir: args.pin_dir,
            socket: args.socket,
            keep_dataplane: args.keep_dataplane,
            replace_incompatible: args.replace_incompatible_dataplane,
        })
    } else {
        Err(anyhow::anyhow!("--config FILE is required"))
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lvsd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn print_counters(socket: &std::path::Path) -> anyhow::Result<()> {
    let mut c = control::Client::connect(socket)?;
    match c.call(&control::Request::Counters)? {
        control::Response::Counters(v) => {
            for (name, value) in v {
                println!("{name} {value}");
            }
            Ok(())
        }
        other => Err(anyhow::anyhow!("unexpected answer: {other:?}")),
    }
}

/// `--check-config`: the verdict, then the plan.
fn check_config(file: &std::path::Path, socket: &std::path::Path) -> anyhow::Result<()> {
    let cfg = daemon::load_config(file)?;
    let dests: usize = cfg.services.iter().map(|s| s.dests.len()).sum();
    println!(
        "{}: OK: {} interface(s), {} service(s), {} real server(s)",
        file.display(),
        cfg.interfaces.len(),
        cfg.services.len(),
        dests
    );
    let changes = match control::Client::connect(socket) {
        Ok(mut c) => {
            let path = std::fs::canonicalize(file)?;
            match c.call(&control::Request::Reload { dry_run: true, path: Some(path) })? {
                control::Response::Changes(v) => {
                    println!("a reload of the lvsd at {} would make {} change(s):", socket.display(), v.len());
                    v
                }
                control::Response::Error { detail, .. } => anyhow::bail!("{detail}"),
                other => anyhow::bail!("unexpected answer: {other:?}"),
            }
        }
        Err(_) => {
            let mut plan = daemon::plan::plan(&[], &Default::default(), &cfg);
            plan.extend(daemon::plan::settings(&daemon::plan::Settings::fresh(), &cfg));
            let v: Vec<String> = plan.iter().map(|c| c.to_string()).collect();
            println!("no lvsd answers at {}; starting one would make {} change(s):", socket.display(), v.len());
            v
        }
    };
    for c in changes {
        println!("  {c}");
    }
    Ok(())
}

/// `--reload`.
fn reload(socket: &std::path::Path) -> anyhow::Result<()> {
    let mut c = control::Client::connect(socket)?;
    match c.call(&control::Request::Reload { dry_run: false, path: None })? {
        control::Response::Changes(v) => {
            println!("reloaded: {} change(s)", v.len());
            for l in v {
                println!("  {l}");
            }
            Ok(())
        }
        control::Response::Error { detail, .. } => Err(anyhow::anyhow!("reload refused, nothing changed: {detail}")),
        other => Err(anyhow::anyhow!("unexpected answer: {other:?}")),
    }
}
