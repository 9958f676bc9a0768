//! Connection synchronisation (`ipvsadm --start-daemon master|backup`): a master thread sends
//! the connection table to a multicast group in IPVS's sync v1 format, a backup thread receives
//! such messages and installs the connections in the pinned maps, so that a director taking
//! over keeps the established connections working.

pub mod backup;
pub mod master;
pub mod persist;
pub mod wire;

use std::{
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
};

use tracing::{info, warn};

use super::state::OpError;
use crate::control::{Errno, SyncDaemon, SyncRole};

/// `IP_VS_SYNC_GROUP`.
pub const DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
/// `IP_VS_SYNC_PORT`.
pub const DEFAULT_PORT: u16 = 8848;
/// IPv4 + UDP header: what the kernel takes off the MTU for the message size.
const V4_HEADERS: u16 = 28;

struct Running {
    /// The parameters as asked for (0 and `None` for defaults): what a reload compares with
    /// the file and what a restart starts again.
    request: SyncDaemon,
    /// As running, defaults filled in (`-L --daemon`).
    conf: SyncDaemon,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

/// The master and backup threads, at most one of each (as the kernel's `ipvs->ms`/`backup`).
pub struct Daemons {
    maps_dir: PathBuf,
    master: Option<Running>,
    backup: Option<Running>,
    /// Where the running set is recorded for a restarted lvsd (`None` in tests without pins).
    store: Option<persist::Store>,
}

fn err(errno: Errno, detail: impl Into<String>) -> OpError {
    OpError { errno, detail: detail.into() }
}

/// The interface's index and MTU in lvsd's namespace.
fn interface(name: &str) -> Option<(u32, u32)> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return None;
    }
    // SIOCGIFMTU on any socket of this namespace (sysfs may show another namespace's view).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes().take(libc::IFNAMSIZ - 1)) {
        *d = s as libc::c_char;
    }
    // SAFETY: plain socket and ioctl calls on memory we own; the fd is closed below.
    let mtu = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        let ok = fd >= 0 && libc::ioctl(fd, libc::SIOCGIFMTU, &mut req) == 0;
        if fd >= 0 {
            libc::close(fd);
        }
        if ok {
            req.ifr_ifru.ifru_mtu as u32
        } else {
            1500
        }
    };
    Some((index, mtu))
}

impl Daemons {
    pub fn new(maps_dir: PathBuf) -> Self {
        Daemons { maps_dir, master: None, backup: None, store: None }
    }

    /// Opens (or creates) the pinned record of running daemons in the maps directory and
    /// starts again the daemons it holds: those of an lvsd that was killed or restarted with
    /// `--keep-dataplane`. A daemon that cannot start again (its interface is gone) is
    /// dropped from the record with a warning.
    pub fn restore(&mut self) -> anyhow::Result<()> {
        let store = persist::Store::open(&self.maps_dir.join(lvs_common::map_names::SYNC_DAEMONS))?;
        let saved = store.load()?;
        self.store = Some(store);
        for d in saved {
            let role = d.role;
            match self.start(d) {
                Ok(()) => info!(role = role.name(), "sync daemon restored from the previous lvsd"),
                Err(e) => {
                    warn!(role = role.name(), error = %e.detail, "cannot restore the sync daemon of the previous lvsd");
                    if let Some(s) = &self.store {
                        let _ = s.clear(role);
                    }
                }
            }
        }
        Ok(())
    }

    /// The running daemons' parameters as they were asked for, master first.
    pub fn requests(&self) -> Vec<SyncDaemon> {
        self.master.iter().chain(self.backup.iter()).map(|r| r.request.clone()).collect()
    }

    fn slot(&mut self, role: SyncRole) -> &mut Option<Running> {
        match role {
            SyncRole::Master => &mut self.master,
            SyncRole::Backup => &mut self.backup,
        }
    }

    /// `start_sync_thread`: fills in the defaults as the kernel does, then starts the thread.
    pub fn start(&mut self, c: SyncDaemon) -> Result<(), OpError> {
        let request = c.clone();
        let mut c = c;
        let group = c.mcast_group.unwrap_or(IpAddr::V4(DEFAULT_GROUP));
        if !group.is_multicast() {
            return Err(err(Errno::Inval, format!("{group} is not a multicast group")));
        }
        let IpAddr::V4(group4) = group else {
            return Err(err(Errno::NotImplemented, "IPv6 multicast groups for connection sync are not supported by lvsd yet"));
        };
        c.mcast_group = Some(group);
        if c.mcast_port == 0 {
            c.mcast_port = DEFAULT_PORT;
        }
        if c.mcast_ttl == 0 {
            c.mcast_ttl = 1;
        }
        let Some((ifindex, dev_mtu)) = interface(&c.mcast_ifn) else {
            return Err(err(Errno::NoDev, format!("no interface {}", c.mcast_ifn)));
        };
        // The master builds messages for a 1500-byte path; the backup accepts what its own
        // interface can carry.
        let (mtu, min) = match c.role {
            SyncRole::Master => (1500, 1),
            SyncRole::Backup => (dev_mtu.clamp(1500, 65535), 1024),
        };
        c.sync_maxlen = if c.sync_maxlen != 0 {
            c.sync_maxlen.clamp(min, 65535 - V4_HEADERS)
        } else {
            (mtu - u32::from(V4_HEADERS)) as u16
        };
        if self.slot(c.role).is_some() {
            return Err(err(Errno::Exist, format!("a {} sync daemon runs already", c.role.name())));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let handle = match c.role {
            SyncRole::Master => master::spawn(&self.maps_dir, &c, group4, ifindex, stop.clone()),
            SyncRole::Backup => backup::spawn(&self.maps_dir, &c, group4, ifindex, stop.clone()),
        }
        .map_err(|e| err(Errno::Inval, format!("{e:#}")))?;
        info!(role = c.role.name(), interface = %c.mcast_ifn, syncid = c.syncid, group = %group, port = c.mcast_port, "sync daemon started");
        let role = c.role;
        if let Some(s) = &self.store {
            if let Err(e) = s.save(&request) {
                warn!(error = %format!("{e:#}"), "the sync daemon will not be restarted with lvsd");
            }
        }
        *self.slot(role) = Some(Running { request, conf: c, stop, handle });
        Ok(())
    }

    pub fn stop(&mut self, role: SyncRole) -> Result<(), OpError> {
        self.halt(role)?;
        if let Some(s) = &self.store {
            if let Err(e) = s.clear(role) {
                warn!(error = %format!("{e:#}"), "the stopped sync daemon may be restarted with lvsd");
            }
        }
        Ok(())
    }

    /// Stops the thread, leaving the record alone.
    fn halt(&mut self, role: SyncRole) -> Result<(), OpError> {
        let Some(r) = self.slot(role).take() else {
            return Err(err(Errno::Srch, format!("no {} sync daemon runs", role.name())));
        };
        r.stop.store(true, Ordering::Relaxed);
        let _ = r.handle.join();
        info!(role = role.name(), "sync daemon stopped");
        Ok(())
    }

    /// Master first, as the kernel answers.
    pub fn list(&self) -> Vec<SyncDaemon> {
        self.master.iter().chain(self.backup.iter()).map(|r| r.conf.clone()).collect()
    }

    /// Stops both threads (lvsd's shutdown). The record stays: with `--keep-dataplane` the
    /// next lvsd starts them again, as it keeps the services; otherwise it is unpinned with
    /// the maps.
    pub fn stop_all(&mut self) {
        let _ = self.halt(SyncRole::Master);
        let _ = self.halt(SyncRole::Backup);
    }
}
