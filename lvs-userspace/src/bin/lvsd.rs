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
    /// Print the dataplane's verdict counters of a running lvsd and exit.
    #[arg(long, conflicts_with_all = ["config", "check_config"])]
    counters: bool,
    /// Check a configuration file (syntax, values, and what this lvsd can run), print the
    /// verdict and exit: 0 if lvsd would accept it, 1 if not. Changes nothing.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// On a real server of -i (tunnel) services: attach the IP-in-IP decapsulation program to
    /// an interface's ingress (pinned, so it stays after this command exits), for hosts
    /// without the ipip module. Again on an attached interface: replace its addresses.
    Decap {
        /// Interface the tunnelled packets arrive on.
        #[arg(long, value_name = "IF")]
        interface: String,
        /// Also decapsulate packets whose outer destination is this address (repeatable);
        /// the interface's own IPv4 addresses always are.
        #[arg(long, value_name = "ADDR")]
        address: Vec<std::net::Ipv4Addr>,
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
    } else if let Some(file) = args.check_config {
        daemon::load_config(&file).map(|cfg| {
            let dests: usize = cfg.services.iter().map(|s| s.dests.len()).sum();
            println!(
                "{}: OK: {} interface(s), {} service(s), {} real server(s)",
                file.display(),
                cfg.interfaces.len(),
                cfg.services.len(),
                dests
            );
        })
    } else if let Some(config) = args.config {
        daemon::run(daemon::Options {
            config,
            pin_dir: args.pin_dir,
            socket: args.socket,
            keep_dataplane: args.keep_dataplane,
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
