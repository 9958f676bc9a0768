//! The backup: joins the group on its interface and installs what masters send
//! (`ip_vs_process_message`, `ip_vs_proc_conn`).
//!
//! A connection is installed as the dataplane would have created it: in `CONNS` with its
//! service and real server slots, a `CONNS_OUT` twin for NAT, counted in its server's
//! ActiveConn or InActConn (by the received INACTIVE flag) through the mapped counter memory,
//! and expiring after the received timeout. The real server is found by (service, daddr,
//! dport) as the kernel's `ip_vs_find_dest` does; an entry for a service or server this
//! director does not have is dropped. Templates go to `TEMPLATES` and count in PersistConn.

use std::{
    net::{Ipv4Addr, UdpSocket},
    os::fd::FromRawFd,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use aya::maps::{Array, HashMap, MapData};
use lvs_common::{
    flow::{conn_flags, ConnEntry, ConnRef, FlowKey},
    map_names,
    persist::{scope_of, template_flags, Template, SVC_F_PERSISTENT},
    service::{dest_flags, DestConf, ServiceConf, SvcKey},
    tcp_state,
};
use tracing::{debug, warn};

use super::{
    master::setsockopt,
    wire::{decode, flags, SyncConn},
};
use crate::{
    control::SyncDaemon,
    daemon::tables::{addr_words, monotonic_ns, out_key, CounterMemory},
};

const NSEC_PER_SEC: u64 = 1_000_000_000;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// A template received with timeout 0 lives 3 minutes (`ip_vs_proc_conn`).
const TEMPLATE_DEFAULT_SECS: u32 = 180;

pub struct Maps {
    conns: HashMap<MapData, FlowKey, ConnEntry>,
    out: HashMap<MapData, FlowKey, ConnRef>,
    templates: HashMap<MapData, FlowKey, Template>,
    svc_index: HashMap<MapData, SvcKey, u32>,
    services: Array<MapData, ServiceConf>,
    dests: Array<MapData, DestConf>,
    timeouts: Array<MapData, u32>,
    counters: CounterMemory,
}

pub fn open(dir: &Path) -> anyhow::Result<Maps> {
    let m = |n: &str| crate::daemon::tables::open_pinned(dir, n);
    Ok(Maps {
        conns: HashMap::try_from(m(map_names::CONNS)?)?,
        out: HashMap::try_from(m(map_names::CONNS_OUT)?)?,
        templates: HashMap::try_from(m(map_names::TEMPLATES)?)?,
        svc_index: HashMap::try_from(m(map_names::SVC_INDEX)?)?,
        services: Array::try_from(m(map_names::SERVICES)?)?,
        dests: Array::try_from(m(map_names::DESTS)?)?,
        timeouts: Array::try_from(m(map_names::TIMEOUTS)?)?,
        counters: CounterMemory::map(&MapData::from_pin(dir.join(map_names::DEST_COUNTERS))?)?,
    })
}

/// A socket bound to group:port on the interface, member of the group there.
fn socket(group: Ipv4Addr, port: u16, ifindex: u32, ifname: &str) -> anyhow::Result<UdpSocket> {
    // SAFETY: a new socket; ownership passes to the UdpSocket.
    let s = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        anyhow::ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        UdpSocket::from_raw_fd(fd)
    };
    setsockopt(&s, libc::SOL_SOCKET, libc::SO_REUSEADDR, &1i32)?;
    let mut dev = [0u8; libc::IFNAMSIZ];
    for (d, b) in dev.iter_mut().zip(ifname.bytes().take(libc::IFNAMSIZ - 1)) {
        *d = b;
    }
    setsockopt(&s, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, &dev)?;
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(group.octets()) },
        sin_zero: [0; 8],
    };
    use std::os::fd::AsRawFd;
    // SAFETY: a sockaddr_in of the size given.
    let r = unsafe {
        libc::bind(s.as_raw_fd(), (&addr as *const libc::sockaddr_in).cast(), std::mem::size_of::<libc::sockaddr_in>() as u32)
    };
    anyhow::ensure!(r == 0, "bind {group}:{port}: {}", std::io::Error::last_os_error());
    let mreq = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: u32::from_ne_bytes(group.octets()) },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: ifindex as i32,
    };
    setsockopt(&s, libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &mreq)?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(s)
}

pub fn spawn(
    dir: &Path,
    c: &SyncDaemon,
    group: Ipv4Addr,
    ifindex: u32,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<JoinHandle<()>> {
    let mut maps = open(dir)?;
    let sock = socket(group, c.mcast_port, ifindex, &c.mcast_ifn)?;
    let syncid = c.syncid;
    let maxlen = usize::from(c.sync_maxlen);
    Ok(std::thread::Builder::new().name("sync-backup".into()).spawn(move || {
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            let n = match sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
                Err(e) => {
                    warn!(error = %e, "sync receive failed");
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            };
            if n > maxlen {
                debug!(bytes = n, maxlen, "sync message longer than maxlen dropped");
                continue;
            }
            let (conns, refused) = decode(&buf[..n], syncid);
            for c in &conns {
                if let Err(why) = install(&mut maps, c) {
                    debug!(why, "sync entry dropped");
                }
            }
            if let Some(r) = refused {
                debug!(reason = %r, "sync message refused");
            }
        }
    })?)
}

/// The service slot of a received entry: by mark when it has one, else by address, protocol
/// and port, falling back to a port-zero service as the dataplane does.
fn find_service(m: &Maps, c: &SyncConn) -> Option<u32> {
    let (addr, family) = addr_words(c.vaddr);
    let keys = if c.fwmark != 0 {
        vec![SvcKey::fwmark(c.fwmark, family)]
    } else {
        let k = SvcKey { addr, port: c.vport.to_be(), proto: c.protocol, family };
        vec![k, SvcKey { port: 0, ..k }]
    };
    keys.iter().find_map(|k| m.svc_index.get(k, 0).ok())
}

/// `ip_vs_find_dest`: the live real server of the service with this address and port (a server
/// without a port serves the virtual one).
fn find_dest(m: &Maps, svc: &ServiceConf, c: &SyncConn) -> Option<(u32, DestConf)> {
    let (addr, _) = addr_words(c.daddr);
    let ids = &svc.dests[..(svc.dest_count as usize).min(svc.dests.len())];
    let mut fallback = None;
    for &id in ids {
        let Ok(d) = m.dests.get(&id, 0) else { continue };
        if d.flags & dest_flags::AVAILABLE == 0 || d.addr != addr {
            continue;
        }
        let port = u16::from_be(d.port);
        if port == c.dport {
            return Some((id, d));
        }
        if port == 0 || c.dport == 0 {
            fallback = Some((id, d));
        }
    }
    fallback
}

/// Installs or updates one received entry; the reason when it is dropped.
pub fn install(m: &mut Maps, c: &SyncConn) -> Result<(), &'static str> {
    if c.caddr.is_ipv4() != c.vaddr.is_ipv4() || c.caddr.is_ipv4() != c.daddr.is_ipv4() {
        return Err("mixed address families");
    }
    let f = c.flags & flags::BACKUP_MASK;
    let template = f & flags::TEMPLATE != 0;
    let svc_id = find_service(m, c).ok_or("no such service")?;
    let svc = m.services.get(&svc_id, 0).map_err(|_| "no such service")?;
    let (dest_id, dest) = find_dest(m, &svc, c).ok_or("no such real server")?;
    let (caddr, family) = addr_words(c.caddr);
    let (vaddr, _) = addr_words(c.vaddr);
    let (daddr, _) = addr_words(c.daddr);
    let now = monotonic_ns();
    if template {
        let key = FlowKey {
            src: caddr,
            dst: vaddr,
            sport: 0,
            dport: c.vport.to_be(),
            proto: c.protocol,
            family,
            _pad: [0; 2],
        };
        let secs = if c.timeout == 0 { TEMPLATE_DEFAULT_SECS } else { c.timeout };
        let t = Template {
            daddr,
            dport: c.dport.to_be(),
            dest_port: dest.port,
            flags: if c.state == 1 { template_flags::ASSURED } else { 0 },
            fwd: (f & flags::FWD_MASK) as u8,
            _pad: 0,
            dest_id,
            timeout_s: secs,
            expires_ns: now + u64::from(secs) * NSEC_PER_SEC,
            _pad2: 0,
        };
        let old = m.templates.get(&key, 0).ok();
        m.templates.insert(key, t, 0).map_err(|_| "template table full")?;
        match old {
            Some(o) if o.dest_id == dest_id => {}
            Some(o) => {
                m.counters.uncount_template(o.dest_id);
                m.counters.count_template(dest_id);
            }
            None => m.counters.count_template(dest_id),
        }
        return Ok(());
    }
    let state = match c.protocol {
        IPPROTO_TCP if usize::from(c.state) < tcp_state::TCP_STATE_COUNT => c.state as u8,
        IPPROTO_UDP if c.state == 0 => tcp_state::UDP,
        _ => return Err("state out of range"),
    };
    let secs = if c.timeout != 0 { c.timeout } else { m.timeouts.get(&u32::from(state), 0).unwrap_or(60) };
    let fwd = (f & flags::FWD_MASK) as u8;
    let nat = fwd == 0;
    let mut cf = conn_flags::SYNCED;
    if nat {
        cf |= conn_flags::NAT;
    } else if f & flags::NOOUTPUT == 0 {
        cf |= conn_flags::SEEN_OUTPUT;
    }
    let (mut ctl_mask, mut ctl_mark) = (0, 0);
    if svc.flags & SVC_F_PERSISTENT != 0 {
        let mark = if svc.key.is_fwmark() { svc.key.addr[0] } else { 0 };
        let s = scope_of(family, svc.key.port, svc.netmask, mark);
        cf |= conn_flags::CONTROLLED | if s.any_port { conn_flags::CTL_ANY_PORT } else { 0 };
        ctl_mask = s.mask;
        ctl_mark = s.mark;
    }
    let key = FlowKey { src: caddr, dst: vaddr, sport: c.cport.to_be(), dport: c.vport.to_be(), proto: c.protocol, family, _pad: [0; 2] };
    let active = f & flags::INACTIVE == 0;
    let e = ConnEntry {
        vaddr,
        daddr,
        vport: c.vport.to_be(),
        dport: c.dport.to_be(),
        fwd,
        state,
        flags: cf,
        svc_id,
        dest_id,
        expires_ns: now + u64::from(secs) * NSEC_PER_SEC,
        active: u64::from(active),
        ctl_mask,
        ctl_mark,
    };
    let old = m.conns.get(&key, 0).ok();
    m.conns.insert(key, e, 0).map_err(|_| "connection table full")?;
    // As the dataplane's `create`: whoever replaces an entry takes its count away. (A packet
    // changing the entry between our read and write can misplace one count between Active
    // and InAct, as a second CPU could; the total stays exact.)
    if let Some(o) = old {
        m.counters.uncount(&o);
        if o.flags & conn_flags::NAT != 0 && (o.daddr != e.daddr || o.dport != e.dport) {
            let _ = m.out.remove(&out_key(&key, &o));
        }
    }
    m.counters.count(dest_id, active);
    if nat {
        m.out.insert(out_key(&key, &e), ConnRef { in_key: key }, 0).map_err(|_| "reverse table full")?;
    }
    Ok(())
}
