//! lvsd: loads and attaches the dataplane, applies the config, serves the control socket.

pub mod connlist;
pub mod dataplane;
pub mod metrics;
pub mod neigh;
pub mod plan;
pub mod reclaim;
pub mod routewatch;
pub mod server;
pub mod state;
pub mod sync;
pub mod tables;
pub mod timeouts;
pub mod xdp_mode;

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
    control::{self, Errno, Info, Request, Response},
    model::{DestSpec, ServiceKey},
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
    /// Take over the interfaces of a dataplane pinned with another map layout, discarding
    /// its state (see `dataplane::adopt_links`). Without it such pins stop lvsd.
    pub replace_incompatible: bool,
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
    /// Where /metrics is served (bound at start; a reload does not move it).
    metrics_address: std::net::SocketAddr,
    /// Counters and state for the health metrics.
    pub health: metrics::Health,
    /// The connection sync threads (`--start-daemon`).
    pub sync: sync::Daemons,
    /// The sync daemon roles the config file declared at the last (re)load.
    config_sync: Vec<control::SyncRole>,
}

impl Daemon {
    pub fn handle(&mut self, req: Request) -> Response {
        let resp = self.answer(req);
        match resp {
            Response::Error { .. } => self.health.requests_failed += 1,
            _ => self.health.requests_ok += 1,
        }
        resp
    }

    fn answer(&mut self, req: Request) -> Response {
        let t = &mut self.tables;
        let result = match req {
            Request::AddService(s) => self.vs.add_service(t, s),
            Request::EditService(s) => self.vs.edit_service(t, s),
            Request::DelService(k) => self.vs.del_service(t, &k),
            Request::AddDest { service, dest } => mixed_family_sync(&self.vs, &self.sync, &service, &dest)
                .and_then(|()| self.vs.add_dest(t, &service, dest)),
            Request::EditDest { service, dest } => mixed_family_sync(&self.vs, &self.sync, &service, &dest)
                .and_then(|()| self.vs.edit_dest(t, &service, dest)),
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
            Request::Zero(k) => self.vs.zero(t, k.as_ref()),
            // ip_vs_genl_new_daemon: the sync protocol cannot carry a connection whose real
            // server is of another family than its service, so no daemon starts while one exists.
            Request::StartDaemon(_) if self.vs.has_mixed_family() => Err(state::OpError {
                errno: Errno::Inval,
                detail: "a sync daemon cannot run while a service has a real server of the other address family"
                    .into(),
            }),
            Request::StartDaemon(c) => self.sync.start(c),
            Request::StopDaemon(role) => self.sync.stop(role),
            Request::GetDaemons => return Response::Daemons(self.sync.list()),
            Request::Reload { dry_run, path } => {
                let r = if dry_run { self.plan_reload(path.as_deref()) } else { self.reload() };
                return match r {
                    Ok(changes) => Response::Changes(changes.iter().map(|c| c.to_string()).collect()),
                    Err(e) => Response::Error { errno: Errno::Inval, detail: format!("{e:#}") },
                };
            }
        };
        match result {
            Ok(()) => Response::Ok,
            Err(e) => {
                warn!(errno = ?e.errno, detail = %e.detail, "request refused");
                Response::Error { errno: e.errno, detail: e.detail }
            }
        }
    }

    /// SIGHUP and `lvsd --reload`: re-reads the config and applies only the difference
    /// ([`plan`]); returns what changed. A file that fails validation changes nothing.
    fn reload(&mut self) -> anyhow::Result<Vec<plan::Change>> {
        let r = self.apply_reload();
        let h = &mut self.health;
        h.last_reload_time = metrics::unix_now();
        h.last_reload_ok = r.is_ok();
        if r.is_ok() {
            h.reloads_ok += 1;
        } else {
            h.reloads_failed += 1;
        }
        r
    }

    /// What the plan compares the file's settings with.
    fn settings(&self) -> anyhow::Result<plan::Settings> {
        let t = &self.tables;
        let mut timeouts = lvs_common::tcp_state::DEFAULT_TIMEOUTS;
        for (slot, v) in timeouts.iter_mut().enumerate() {
            let set = t.timeouts.get(&(slot as u32), 0).context("reading the TIMEOUTS map")?;
            if set != 0 {
                *v = set;
            }
        }
        let rules = t.classifier_rules()?;
        Ok(plan::Settings {
            timeouts,
            timeouts_named: self.config_timeouts,
            sysctls: t.sysctls.get(&0, 0).context("reading the SYSCTLS map")?,
            classifier: rules.rules[..(rules.count as usize).min(rules.rules.len())].to_vec(),
            sync: self.sync.requests(),
            sync_owned: self.config_sync.clone(),
        })
    }

    /// Every change a reload to `cfg` makes: services, then the other settings.
    fn full_plan(&self, cfg: &Config) -> anyhow::Result<Vec<plan::Change>> {
        check_sync_interfaces(cfg)?;
        let mut changes = plan::plan(&self.vs.specs(), &self.config_services, cfg);
        changes.extend(plan::settings(&self.settings()?, cfg));
        Ok(changes)
    }

    fn apply_reload(&mut self) -> anyhow::Result<Vec<plan::Change>> {
        let cfg = load_config(&self.config_path)?;
        if cfg.metrics_address != self.metrics_address {
            warn!(
                serving = %self.metrics_address,
                configured = %cfg.metrics_address,
                "metrics_address changed; it takes effect when lvsd is restarted"
            );
        }
        let changes = self.full_plan(&cfg)?;
        let named = timeouts::named(&cfg);
        timeouts::apply_config(&mut self.tables, &named, &self.config_timeouts)?;
        self.config_timeouts = named;
        self.tables.sysctls.set(0, cfg.sysctls, 0)?;
        apply(&mut self.vs, &mut self.tables, &changes)?;
        self.config_services = cfg.services.iter().map(|s| s.spec.key).collect();
        apply_classifier(&mut self.tables, &cfg)?;
        apply_sync(&mut self.sync, &changes)?;
        self.config_sync = cfg.sync.iter().map(|s| s.daemon.role).collect();
        for c in &changes {
            info!(change = %c, "reload");
        }
        Ok(changes)
    }

    /// What a reload from `path` (default: the running config file) would change, touching
    /// nothing (`lvsd --check-config` against a running lvsd).
    fn plan_reload(&self, path: Option<&std::path::Path>) -> anyhow::Result<Vec<plan::Change>> {
        let cfg = load_config(path.unwrap_or(&self.config_path))?;
        self.full_plan(&cfg)
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
            // As the kernel: the sync protocol cannot carry a connection to a real server of
            // the other family, so the two do not go together.
            if d.addr.is_ipv6() != sc.spec.key.is_ipv6() && !cfg.sync.is_empty() {
                let detail = format!(
                    "real server {} is of the other address family than its service, which a sync daemon cannot carry (the config starts one)",
                    d.addr
                );
                anyhow::bail!("{}", ConfigError::at(&cfg.source, *loc, &detail));
            }
        }
    }
    Ok(cfg)
}

/// The kernel's check before `-a`/`-e` of a real server of the other address family than its
/// service (do_ip_vs_set_ctl / ip_vs_genl_set_cmd): refused with EINVAL while a sync daemon
/// runs, as the sync protocol cannot carry such connections. An unknown service is left to
/// the operation itself (ESRCH comes first in the kernel too).
fn mixed_family_sync(
    vs: &VirtualServers,
    sync: &sync::Daemons,
    key: &ServiceKey,
    d: &DestSpec,
) -> Result<(), state::OpError> {
    if d.addr.is_ipv6() != key.is_ipv6() && vs.exists(key) && !sync.list().is_empty() {
        return Err(state::OpError {
            errno: Errno::Inval,
            detail: "a real server of the other address family cannot be added while a sync daemon runs".into(),
        });
    }
    Ok(())
}

/// Applies a plan in order; the first failure stops it (validation has already refused what
/// the dataplane cannot run, so what remains are resource limits such as a full table).
fn apply(vs: &mut VirtualServers, t: &mut Tables, changes: &[plan::Change]) -> anyhow::Result<()> {
    use plan::Change;
    for c in changes {
        let r = match c {
            Change::AddService(s) => vs.add_service(t, s.clone()),
            Change::EditService(s) => vs.edit_service(t, s.clone()),
            Change::DelService(k) => vs.del_service(t, k),
            Change::AddDest(k, d) => vs.add_dest(t, k, d.clone()),
            Change::EditDest(k, d) => vs.edit_dest(t, k, d.clone()),
            Change::DelDest(k, a, p) => vs.del_dest(t, k, *a, *p),
            // Applied as a whole by their own steps (timeouts::apply_config, the sysctl map,
            // apply_classifier, apply_sync), from the same file.
            Change::SetTimeouts(_)
            | Change::StateTimeout(..)
            | Change::Sysctl(..)
            | Change::ClassifierAppend(_)
            | Change::ClassifierReplace(..)
            | Change::ClassifierDelete(_)
            | Change::StopDaemon(_)
            | Change::StartDaemon(_) => Ok(()),
        };
        r.map_err(|e| anyhow::anyhow!("{c}: {} ({:?})", e.detail, e.errno))?;
    }
    Ok(())
}

/// Stops and starts the sync daemons as the plan says (stops come first in it).
fn apply_sync(sync: &mut sync::Daemons, changes: &[plan::Change]) -> anyhow::Result<()> {
    for c in changes {
        let r = match c {
            plan::Change::StopDaemon(role) => sync.stop(*role),
            plan::Change::StartDaemon(d) => sync.start(d.clone()),
            _ => continue,
        };
        r.map_err(|e| anyhow::anyhow!("{c}: {} ({:?})", e.detail, e.errno))?;
    }
    Ok(())
}

/// A sync daemon's interface must exist in lvsd's namespace; checked before anything
/// changes, so that a reload naming a missing one is refused whole.
fn check_sync_interfaces(cfg: &Config) -> anyhow::Result<()> {
    for s in &cfg.sync {
        let name = std::ffi::CString::new(s.daemon.mcast_ifn.as_str())?;
        // SAFETY: a NUL-terminated name.
        if unsafe { libc::if_nametoindex(name.as_ptr()) } == 0 {
            anyhow::bail!(
                "{}",
                cfg.error_at(
                    s.location,
                    format!("the {} sync daemon's interface {} does not exist", s.daemon.role.name(), s.daemon.mcast_ifn)
                )
            );
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
        if let ServiceKey::Fwmark { mark, ipv6 } = sc.spec.key {
            if !cfg.classifier.iter().any(|r| r.mark == mark && r.addr.is_ipv6() == ipv6) {
                let family = if ipv6 { "IPv6" } else { "IPv4" };
                warn!(service = %sc.spec.key, "no {family} classifier rule gives this mark: the service gets no traffic");
            }
        }
    }
    Ok(())
}

/// Runs lvsd until SIGTERM/SIGINT.
pub fn run(opts: Options) -> anyhow::Result<()> {
    let cfg = load_config(&opts.config)?;
    // Bound before anything is attached, so a busy port changes nothing.
    let metrics_listener = metrics::bind(cfg.metrics_address)?;
    let pins = dataplane::PinLayout::new(&opts.pin_dir);
    let incompatible = dataplane::other_layouts(&opts.pin_dir);
    if let (Some(old), false) = (incompatible.first(), opts.replace_incompatible) {
        anyhow::bail!(
            "{} holds a dataplane pinned by an lvsd with another map layout (this lvsd uses {}); \
             its maps cannot be read safely, so it is left as it is (still forwarding). Stop it with \
             the lvsd that made it (SIGTERM detaches and unpins), or start this lvsd with \
             --replace-incompatible-dataplane to take over its interfaces without a gap; the \
             connections it tracks and the services it was given with ipvsadm are then lost",
            old.display(),
            pins.root.display()
        );
    }
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
    serve(opts, dp, daemon, metrics_listener)
}

/// Loads, attaches and applies the config: everything before the control socket opens.
fn start_dataplane(opts: &Options, cfg: &Config) -> anyhow::Result<(Dataplane, Arc<Mutex<Daemon>>)> {
    let mut dp = Dataplane::load(&opts.pin_dir, cfg.connection_table_size)?;
    let pins = dp.pins.clone();
    // Only once our program has passed the verifier: a failure before leaves the old one alone.
    if opts.replace_incompatible {
        for old in dataplane::other_layouts(&opts.pin_dir) {
            dataplane::adopt_links(&old, &pins)?;
        }
    }
    let mut attachments = Vec::new();
    for iface in &cfg.interfaces {
        let a = dp.attach(iface, cfg.xdp_mode)?;
        // A taken-over link does not know its mode; the interface does.
        let mode = xdp_mode::query(iface).unwrap_or(a.mode);
        if a.mode == "kept" {
            info!(interface = %iface, mode, "XDP mode of the kept link");
        }
        attachments.push((a.interface, mode));
    }
    dataplane::detach_except(&pins, &cfg.interfaces);

    let mut tables = Tables::open(&pins.maps())?;
    // Nothing is known of an earlier file: states it named keep their pinned values.
    timeouts::apply_config(&mut tables, &timeouts::named(cfg), &[None; 12])?;
    tables.sysctls.set(0, cfg.sysctls, 0)?;
    let mut vs = VirtualServers::recover(&tables)?;
    vs.rebuild_filter(&mut tables)?;
    if !vs.is_empty() {
        info!(services = vs.len(), "recovered services from the pinned maps");
    }
    // At start nothing is known of an earlier file: services it declared that this one drops
    // are left alone (they may be ipvsadm's).
    let changes = plan::plan(&vs.specs(), &HashSet::new(), cfg);
    apply(&mut vs, &mut tables, &changes).context("applying the config")?;
    apply_classifier(&mut tables, cfg)?;
    // Sync daemons: those the previous lvsd ran come back first, then the file's (which win
    // for the roles the file declares, as its services do).
    check_sync_interfaces(cfg)?;
    let mut sync = sync::Daemons::new(pins.maps());
    sync.restore().context("restoring the sync daemons")?;
    let mut cur = plan::Settings::fresh();
    cur.sync = sync.requests();
    let sync_changes: Vec<plan::Change> = plan::settings(&cur, cfg)
        .into_iter()
        .filter(|c| matches!(c, plan::Change::StopDaemon(_) | plan::Change::StartDaemon(_)))
        .collect();
    apply_sync(&mut sync, &sync_changes).context("starting the sync daemons")?;
    for c in &sync_changes {
        info!(change = %c, "start");
    }
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
        metrics_address: cfg.metrics_address,
        health: metrics::Health {
            attachments,
            last_reload_time: metrics::unix_now(),
            last_reload_ok: true,
            ..Default::default()
        },
        sync,
        config_sync: cfg.sync.iter().map(|s| s.daemon.role).collect(),
    }));
    Ok((dp, daemon))
}

/// Serves the control socket until SIGTERM/SIGINT, then detaches unless told to keep running.
fn serve(
    opts: Options,
    dp: Dataplane,
    daemon: Arc<Mutex<Daemon>>,
    metrics_listener: std::net::TcpListener,
) -> anyhow::Result<()> {
    let pins = dp.pins.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let reclaimer = reclaim::spawn(pins.maps(), stop.clone())?;
    let estimator = spawn_estimator(daemon.clone(), stop.clone())?;
    let metrics_server = metrics::spawn(metrics_listener, daemon.clone(), stop.clone())?;
    let resolver = neigh::spawn(pins.maps(), stop.clone())?;
    let route_watch = routewatch::spawn(pins.maps(), stop.clone())?;

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
    daemon.lock().expect("daemon lock").sync.stop_all();
    stop.store(true, Ordering::Relaxed);
    let _ = reclaimer.join();
    let _ = estimator.join();
    let _ = metrics_server.join();
    let _ = resolver.join();
    let _ = route_watch.join();
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

/// The rate estimator's clock: every 2 s, as the kernel's estimation timer.
fn spawn_estimator(daemon: Arc<Mutex<Daemon>>, stop: Arc<AtomicBool>) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let period = std::time::Duration::from_secs(lvs_common::stats::ESTIMATOR_PERIOD_SECS);
    Ok(std::thread::Builder::new().name("estimator".into()).spawn(move || {
        let mut next = std::time::Instant::now() + period;
        while !stop.load(Ordering::Relaxed) {
            let now = std::time::Instant::now();
            if now < next {
                // Short sleeps so that shutdown is not held up.
                std::thread::sleep((next - now).min(std::time::Duration::from_millis(100)));
                continue;
            }
            next += period;
            let mut d = daemon.lock().expect("daemon lock");
            let Daemon { vs, tables, .. } = &mut *d;
            vs.tick_rates(tables);
        }
    })?)
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
                    Ok(changes) => info!(changes = changes.len(), "configuration reloaded"),
                    Err(e) => error!(error = %format!("{e:#}"), "reload refused; running configuration unchanged"),
                }
            }
        }
    }
}
