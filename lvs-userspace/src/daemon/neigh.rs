//! Resolving the link-layer addresses of direct-routing next hops.
//!
//! XDP cannot ask the kernel to resolve a neighbour, and a DR packet cannot be handed to the
//! stack instead (it is addressed to the director's own VIP). So lvsd asks the kernel itself,
//! with an `RTM_NEWNEIGH` carrying `NTF_USE` (what `ip neigh replace ADDR dev DEV nud none
//! use` sends): the kernel creates the entry if needed and starts resolving it, without
//! fixing any state. It does so
//! - when a DR or TUN real server is written to the dataplane, for the on-link interfaces
//!   whose subnet holds its address (so the first packet already finds the neighbour), and
//! - for every next hop the dataplane reports in `NEIGH_MISS` (a packet was dropped), polled
//!   every 20 ms: neighbours that failed or were forgotten since.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use aya::maps::{HashMap, Map, MapData};
use lvs_common::{fwd::NeighKey, map_names, AF_INET, AF_INET6};
use tracing::{debug, warn};

const RTM_NEWNEIGH: u16 = 28;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NTF_USE: u8 = 0x1;
const NDA_DST: u16 = 1;

/// Asks the kernel to resolve `addr` on interface `ifindex`. Errors are the kernel's.
///
/// The kernel first sets an existing entry to the request's state (NUD_NONE) and only then
/// starts resolving, so a valid entry (even a permanent one) would be thrown away: without
/// `replace` only a missing entry is created (`NLM_F_EXCL`; an existing one is left alone and
/// `EEXIST` is not an error). `replace` is for next hops the dataplane found not valid.
pub fn kick(ifindex: u32, addr: IpAddr, replace: bool) -> std::io::Result<()> {
    let mode = if replace { NLM_F_REPLACE } else { NLM_F_EXCL };
    // nlmsghdr (16) + ndmsg (12) + NDA_DST attribute (4 + 4 or 16).
    let (family, octets): (u8, Vec<u8>) = match addr {
        IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
        IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
    };
    let len = 32 + octets.len();
    let mut msg = vec![0u8; len];
    msg[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
    msg[4..6].copy_from_slice(&RTM_NEWNEIGH.to_ne_bytes());
    msg[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | mode).to_ne_bytes());
    msg[8..12].copy_from_slice(&1u32.to_ne_bytes()); // sequence
    msg[16] = family; // ndm_family
    msg[20..24].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    // ndm_state NUD_NONE (0): NTF_USE leaves the state to the resolution it starts.
    msg[26] = NTF_USE;
    msg[28..30].copy_from_slice(&(4 + octets.len() as u16).to_ne_bytes());
    msg[30..32].copy_from_slice(&NDA_DST.to_ne_bytes());
    msg[32..].copy_from_slice(&octets);
    // SAFETY: plain socket calls on buffers of the given sizes; the fd is closed below.
    unsafe {
        let fd = libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let result = (|| {
            if libc::send(fd, msg.as_ptr().cast(), msg.len(), 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The ACK: an NLMSG_ERROR whose error field (after the 16-byte header) is 0 or -errno.
            let mut buf = [0u8; 256];
            let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
            if n < 20 {
                return Err(std::io::Error::last_os_error());
            }
            let errno = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
            if errno < 0 && (errno != -libc::EEXIST || replace) {
                return Err(std::io::Error::from_raw_os_error(-errno));
            }
            Ok(())
        })();
        libc::close(fd);
        result
    }
}

/// The interfaces (index) with a subnet (shorter than /32, /128) holding `addr`.
pub fn onlink_interfaces(addr: IpAddr) -> Vec<u32> {
    let mut out = Vec::new();
    for i in crate::ifaddrs::all().into_iter().filter(|i| i.on_link(addr)) {
        let Ok(name) = std::ffi::CString::new(i.interface) else { continue };
        // SAFETY: a NUL-terminated name.
        let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if idx != 0 && !out.contains(&idx) {
            out.push(idx);
        }
    }
    out
}

/// Starts resolving a DR/TUN real server's address on every interface it is on-link with.
pub fn resolve_real_server(addr: IpAddr) {
    for idx in onlink_interfaces(addr) {
        if let Err(e) = kick(idx, addr, false) {
            warn!(%addr, ifindex = idx, "cannot ask the kernel to resolve the real server: {e}");
        }
    }
}

/// The same for a real server just written to the dataplane, if it is DR or TUN (NAT packets
/// are handed to the kernel while their neighbour is unresolved).
pub fn resolve_dest(d: &crate::model::DestSpec) {
    if matches!(d.forward, crate::model::Forward::Route | crate::model::Forward::Tunnel) {
        resolve_real_server(d.addr);
    }
}

/// Starts the thread that serves `NEIGH_MISS`; it stops when `stop` is set.
pub fn spawn(maps_dir: PathBuf, stop: Arc<AtomicBool>) -> anyhow::Result<thread::JoinHandle<()>> {
    let data = MapData::from_pin(maps_dir.join(map_names::NEIGH_MISS))?;
    let mut misses: HashMap<MapData, NeighKey, u32> = HashMap::try_from(Map::LruHashMap(data))?;
    Ok(thread::Builder::new().name("lvs-neigh".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let keys: Vec<NeighKey> = misses.keys().filter_map(Result::ok).collect();
            for k in keys {
                let _ = misses.remove(&k);
                // Network-order words, as the dataplane's keys hold addresses.
                let addr = match k.family {
                    AF_INET => IpAddr::V4(Ipv4Addr::from(k.addr[0].to_ne_bytes())),
                    AF_INET6 => {
                        let mut o = [0u8; 16];
                        for (i, w) in k.addr.iter().enumerate() {
                            o[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
                        }
                        IpAddr::V6(Ipv6Addr::from(o))
                    }
                    _ => continue,
                };
                debug!(%addr, ifindex = k.ifindex, "resolving a next hop the dataplane missed");
                if let Err(e) = kick(k.ifindex, addr, true) {
                    warn!(%addr, ifindex = k.ifindex, "cannot ask the kernel to resolve a next hop: {e}");
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
    })?)
}
