//! Keeps the dataplane's next-hop cache honest: every change the kernel announces to its
//! routes, neighbours, addresses, links or policy rules advances the epoch word
//! (`NEXT_HOP_EPOCH`), and the dataplane uses a cached next hop only if it was filled in the
//! current epoch. So a real server's new MAC address, a route moved to another gateway or
//! interface, or a forgotten neighbour is seen by the next packet, not when the entry's
//! lifetime (a second, the backstop for anything not announced) runs out.
//!
//! The events are read only to be counted: any message (or a lost one, `ENOBUFS`) means
//! "something may have changed", and a needless advance costs one FIB lookup per cached next
//! hop and CPU.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
};

use anyhow::Context;
use aya::maps::{Array, Map, MapData};
use lvs_common::map_names;
use tracing::warn;

/// `RTMGRP_*` multicast groups: links, neighbours (both families), IPv4 addresses, routes and
/// rules, IPv6 addresses (0x100) and routes (0x400), and IPv6 rules (`RTNLGRP_IPV6_RULE`, group
/// 19, which has no `RTMGRP_` name: bit 18). The IPv6 ones matter as much as the IPv4 ones:
/// IPv6 next hops are cached too.
const GROUPS: u32 = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x400 | 1 << 18;

/// Advances the epoch by one.
fn advance(epoch: &mut Array<MapData, u64>) {
    let now = epoch.get(&0, 0).unwrap_or(0);
    if let Err(e) = epoch.set(0, now.wrapping_add(1), 0) {
        warn!("cannot advance the next-hop epoch: {e}");
    }
}

/// Starts the watcher thread; it stops when `stop` is set (it wakes at least every 200 ms).
pub fn spawn(maps_dir: PathBuf, stop: Arc<AtomicBool>) -> anyhow::Result<thread::JoinHandle<()>> {
    let data = MapData::from_pin(maps_dir.join(map_names::NEXT_HOP_EPOCH))?;
    let mut epoch: Array<MapData, u64> = Array::try_from(Map::Array(data))?;
    // SAFETY: plain socket calls on a sockaddr_nl and a timeval we own; the fd is closed when
    // the thread ends.
    let fd = unsafe {
        let fd = libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE);
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("netlink socket for route events");
        }
        let mut sa: libc::sockaddr_nl = std::mem::zeroed();
        sa.nl_family = libc::AF_NETLINK as u16;
        sa.nl_groups = GROUPS;
        let tv = libc::timeval { tv_sec: 0, tv_usec: 200_000 };
        if libc::bind(fd, (&raw const sa).cast(), std::mem::size_of::<libc::sockaddr_nl>() as u32) < 0
            || libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            ) < 0
        {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            return Err(e).context("subscribing to route and neighbour events");
        }
        fd
    };
    // Whatever changed before the subscription is covered by this first advance.
    advance(&mut epoch);
    Ok(thread::Builder::new().name("lvs-routes".into()).spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: recv into a buffer of the given size.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n > 0 {
                advance(&mut epoch);
            } else if n < 0 {
                match std::io::Error::last_os_error().raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EINTR) => {}
                    // Events were lost: assume they changed something.
                    Some(libc::ENOBUFS) => advance(&mut epoch),
                    _ => {
                        warn!("route event socket failed: {}", std::io::Error::last_os_error());
                        break;
                    }
                }
            }
        }
        // SAFETY: the fd is ours and used by nobody else.
        unsafe { libc::close(fd) };
    })?)
}
