//! lvsd: loads and attaches the dataplane, applies the config, serves the control socket.

pub mod connlist;
pub mod dataplane;
pub mod reclaim;
pub mod server;
pub mod state;
pub mod tables;
pub mod timeouts;

use std::{
    collections::HashSet,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};

use anyhow::Context;
use tracing::{error, info, warn};


use self::{
    dataplane::Dataplane,
    state::{check_dest_supported, check_service_supported, VirtualServers},
    tables::Tables,
};
use crate::{
    config::{self, Config, ConfigError},
    control::{Errno, Info, Request, Response},
    model::ServiceKey,
};

/// IPVS version reported to ipvsadm: 1.2.1, what current kernels report.
pub const IPVS_VERSION_CODE: u32 = 0x010201;

/// Default pin directory.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/lvs";

/// How lvsd was started.
#[derive(Clone, Debug)]
pub struct Options {
    pub config: PathBuf,
    pub pin_dir: PathBuf,
    pub socket: PathBuf,
    /// Leave the dataplane attached (and its maps pinned) on SIGTERM.
    pub keep_dataplane: bool,
}

/// The live control plane behind the socket.
pub struct Daemon {
    pub vs: VirtualServers,
    pub tables: Tables,
    pub info: Info,
    /// Services the config file declared at the last (re)load: a reload deletes those that
    /// disappear from the file, and leaves services created with ipvsadm alone.
    config_services: HashSet<ServiceKey>,
    /// The timeouts the config file named at the last (re)load (see `timeouts`).
    config_timeouts: timeouts::Named,
    config_path: PathBuf,
}

impl Daemon {
    pub fn handle(&mut self, req: Request) -> Response {
        let t = &mut self.tables;
        let result = match req {
            Request::AddService(s) => self.vs.add_service(t, s),
            Request::EditService(s) => self.vs.edit_service(t, s),
            Request::DelService(k) => self.vs.del_service(t, &k),
            Request::AddDest { service, dest } => self.vs.add_dest(t, &service, dest),
            Request::EditDest { service, dest } => self.vs.edit_dest(t, &service, dest),
            Request::DelDest { service, addr, port } => self.vs.del_dest(t, &service, addr, port),
            Request::Clear => self.vs.clear(t),
            Request::List => return Response::Services(self.vs.list(t)),
            Request::GetService(k) => {
                return match self.vs.get(t, &k) {
                    Ok(s) => Response::Services(vec![s]),
                    Err(e) => Response::Error { errno: e.errno, detail: e.detail },
                }
            }
            Request::GetInfo => return Response::Info(self.info.clone()),
            Request::Counters => {
                return match t.counters() {
                    Ok(c) => Response::Counters(
                        c.into_iter().map(|(k, v)| (k.name().to_string(), v)).collect(),
                    ),
                    Err(e) => Response::Error { errno: Errno::Inval, detail: format!("{e:#}") },
                }
            }
            Request::SetTimeouts(v) => timeouts::set(t, v),
            Request::GetTimeouts => {
                return match timeouts::get(t) {
                    Ok(v) => Response::Timeouts(v),
                    Err(e) => Response::Error { errno: e.errno, detail: e.detail },
                }
            }
            Request::ListConns => return Response::Conns(connlist::list(t)),
        };
        match result {
            Ok(()) => Response::Ok,
            Err(e) => {
                warn!(errno = ?e.errno, detail = %e.detail, "request refused");
                Response::Error { errno: e.errno, detail: e.detail }
            }
        }
    }

    /// SIGHUP: re-reads the config and applies only the difference.
    fn reload(&mut self) -> anyhow::Result<()> {
        let cfg = load_config(&self.config_path)?;
        let wanted: HashSet<ServiceKey> = cfg.services.iter().map(|s| s.spec.key).collect();
        for gone in self.config_services.difference(&wanted) {
            if let Err(e) = self.vs.del_service(&mut self.tables, gone) {
                warn!(service = %gone, detail = %e.detail, "cannot delete service removed from config");
            }
        }
        let named = timeouts::named(&cfg);
        timeouts::apply_config(&mut self.tables, &named, &self.config_timeouts)?;
        self.config_timeouts = named;
        apply_services(&mut self.vs, &mut self.tables, &cfg)?;
        self.config_services = wanted;
        apply_classifier(&mut self.tables, &cfg)?;
        Ok(())
    }
}

/// Parses the config and checks it against what this dataplane supports, so a config that
/// cannot be applied entirely is refused before anything changes.
pub fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    let cfg = config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    for sc in &cfg.services {
        check_service_supported(&sc.spec)
            .map_err(|e| anyhow::anyhow!("{}", ConfigError::at(&cfg.source, sc.location, &e.detail)))?;
        for (d, loc) in sc.dests.iter().zip(sc.dest_locations.iter()) {
            check_dest_supported(&sc.spec.key, d)
                .map_err(|e| anyhow::anyhow!("{}", ConfigError::at(&cfg.source, *loc, &e.detail)))?;
        }
    }
    Ok(cfg)
}

/// Makes every service of the config exist exactly as written (real servers added in file
/// order, so kernel order is the reverse, as with a sequence of `ipvsadm -a`). Services not in
/// the config are left alone.
fn apply_services(vs: &mut VirtualServers, t: &mut Tables, cfg: &Config) -> anyhow::Result<()> {
    let current = vs.specs();
    let op = |r: Result<(), state::OpError>, what: &str| {
        r.map_err(|e| anyhow::anyhow!("{what}: {} ({:?})", e.detail, e.errno))
    };
    for sc in &cfg.services {
        let key = sc.spec.key;
        match current.iter().find(|(s, _)| s.key == key) {
            None => {
                op(vs.add_service(t, sc.spec.clone()), "adding service")?;
                for d in &sc.dests {
                    op(vs.add_dest(t, &key, d.clone()), "adding real server")?;
                }
            }
            Some((spec, dests)) => {
                if *spec != sc.spec {
                    op(vs.edit_service(t, sc.spec.clone()), "editing service")?;
                }
                for old in dests {
                    if !sc.dests.iter().any(|d| d.addr == old.addr && d.port == old.port) {
                        op(vs.del_dest(t, &key, old.addr, old.port), "deleting real server")?;
                    }
                }
                for d in &sc.dests {
                    match dests.iter().find(|o| o.addr == d.addr && o.port == d.port) {
                        None => op(vs.add_dest(t, &key, d.clone()), "adding real server")?,
                        Some(o) if o != d => op(vs.edit_dest(t, &key, d.clone()), "editing real server")?,
                        Some(_) => {}
                    }
                }
            }
        }
    }
    Ok(())
}

/// Replaces the dataplane's classifier rules with the config's, in one step for packets (see
/// `Tables::write_classifier`). The file is the only source of rules: a file without any
/// turns the classifier off.
fn apply_classifier(t: &mut Tables, cfg: &Config) -> anyhow::Result<()> {
    let set = config::rule_set(&cfg.classifier);
    t.write_classifier(&set).context("writing the classifier rules")?;
    if !cfg.classifier.is_empty() {
        info!(rules = cfg.classifier.len(), "classifier rules applied");
    }
    // Only the classifier marks packets, so such a service would never see one.
    for sc in &cfg.services {
        if let ServiceKey::Fwmark { mark, ipv6: false } = sc.spec.key {
            if !cfg.classifier.iter().any(|r| r.mark == mark && r.addr.is_ipv4()) {
                warn!(service = %sc.spec.key, "no IPv4 classifier rule gives this mark: the service gets no traffic");
            }
        }
    }
    Ok(())
}

/// Runs lvsd until SIGTERM/SIGINT.
pub fn run(opts: Options) -> anyhow::Result<()> {
    let cfg = load_config(&opts.config)?;
    let pins = dataplane::PinLayout::new(&opts.pin_dir);
    let fresh = !pins.has_state();
    let (dp, daemon) = match start_dataplane(&opts, &cfg) {
        Ok(v) => v,
        Err(e) => {
            // A failed first start leaves nothing behind; a failed restart leaves the previous
            // dataplane as it was (it is still forwarding).
            if fresh {
                dataplane::detach_all(&pins);
                dataplane::unpin_all(&pins);
            }
            return Err(e);
        }
    };
    serve(opts, dp, daemon)
}

/// Loads, attaches and applies the config: everything before the control socket opens.
fn start_dataplane(opts: &Options, cfg: &Config) -> anyhow::Result<(Dataplane, Arc<Mutex<Daemon>>)> {
    let mut dp = Dataplane::load(&opts.pin_dir, cfg.connection_table_size)?;
    let pins = dp.pins.clone();
    for iface in &cfg.interfaces {
        dp.attach(iface, cfg.xdp_mode)?;
    }
    dataplane::detach_except(&pins, &cfg.interfaces);

    let mut tables = Tables::open(&pins.maps())?;
    // Nothing is known of an earlier file: states it named keep their pinned values.
    timeouts::apply_config(&mut tables, &timeouts::named(cfg), &[None; 12])?;
    let mut vs = VirtualServers::recover(&tables)?;
    if !vs.is_empty() {
        info!(services = vs.len(), "recovered services from the pinned maps");
    }
    apply_services(&mut vs, &mut tables, cfg).context("applying the config")?;
    apply_classifier(&mut tables, cfg)?;
    let conn_table_size = Tables::conn_capacity(&pins.maps())?;
    if conn_table_size != cfg.connection_table_size {
        warn!(
            pinned = conn_table_size,
            configured = cfg.connection_table_size,
            "the pinned connection table keeps its size until the dataplane is restarted without --keep-dataplane"
        );
    }
    let daemon = Arc::new(Mutex::new(Daemon {
        vs,
        tables,
        info: Info { version_code: IPVS_VERSION_CODE, conn_table_size },
        config_services: cfg.services.iter().map(|s| s.spec.key).collect(),
        config_timeouts: timeouts::named(cfg),
        config_path: opts.config.clone(),
    }));
    Ok((dp, daemon))
}

/// Serves the control socket until SIGTERM/SIGINT, then detaches unless told to keep running.
fn serve(opts: Options, dp: Dataplane, daemon: Arc<Mutex<Daemon>>) -> anyhow::Result<()> {
    let pins = dp.pins.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let reclaimer = reclaim::spawn(pins.maps(), stop.clone())?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let listener = server::bind(&opts.socket)?;
        info!(socket = %opts.socket.display(), "lvsd ready");
        let srv = tokio::spawn(server::serve(listener, daemon.clone()));
        wait_for_signals(daemon.clone()).await?;
        srv.abort();
        anyhow::Ok(())
    });
    let _ = std::fs::remove_file(&opts.socket);
    stop.store(true, Ordering::Relaxed);
    let _ = reclaimer.join();
    // Keep the program object alive until here: the links now own their program anyway.
    drop(dp);
    if opts.keep_dataplane {
        info!("leaving the dataplane attached (--keep-dataplane)");
    } else {
        dataplane::detach_all(&pins);
        dataplane::unpin_all(&pins);
        info!("dataplane detached and unpinned");
    }
    result
}

async fn wait_for_signals(daemon: Arc<Mutex<Daemon>>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM"); return Ok(()) }
            _ = int.recv() => { info!("SIGINT"); return Ok(()) }
            _ = hup.recv() => {
                let d = daemon.clone();
                let r = tokio::task::spawn_blocking(move || d.lock().expect("daemon lock").reload()).await?;
                match r {
                    Ok(()) => info!("configuration reloaded"),
                    Err(e) => error!(error = %format!("{e:#}"), "reload refused; running configuration unchanged"),
                }
            }
        }
    }
}
