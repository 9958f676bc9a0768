//! The master: every second it walks the connection table and sends what the kernel's
//! per-packet trigger would have sent by then.
//!
//! The kernel decides per packet (`ip_vs_sync_conn_needed`): a TCP connection goes out when it
//! enters FIN_WAIT, CLOSE, CLOSE_WAIT or TIME_WAIT, and on its 3rd, 53rd, 103rd... packet while
//! in one of the synced states; UDP on the packet rule alone. lvsd's dataplane keeps no packet
//! count, so this thread sends an entry in a synced state (TCP ESTABLISHED, FIN_WAIT, CLOSE,
//! CLOSE_WAIT, TIME_WAIT; every UDP entry) when it first sees it, when its state changed since
//! the last walk, and again every [`REFRESH_SECS`] while it sees traffic (its expiry moved).
//! A controlled connection is followed by its persistence template, as in the kernel.

use std::{
    collections::HashMap as StdHashMap,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::FromRawFd,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use aya::maps::{Array, HashMap, MapData};
use lvs_common::{
    flow::{conn_flags, ConnEntry, FlowKey},
    map_names,
    persist::{template_flags, template_key, Template},
    service::ServiceConf,
    tcp_state,
};
use tracing::{debug, warn};

use super::wire::{flags, Encoder, SyncConn};
use crate::{control::SyncDaemon, daemon::tables::{monotonic_ns, words_addr}};

/// How often an entry that keeps seeing traffic is sent again.
pub const REFRESH_SECS: u64 = 30;
const IPPROTO_TCP: u8 = 6;

struct Maps {
    conns: HashMap<MapData, FlowKey, ConnEntry>,
    templates: HashMap<MapData, FlowKey, Template>,
    timeouts: Array<MapData, u32>,
    services: Array<MapData, ServiceConf>,
}

fn open(dir: &Path) -> anyhow::Result<Maps> {
    let m = |n: &str| crate::daemon::tables::open_pinned(dir, n);
    Ok(Maps {
        conns: HashMap::try_from(m(map_names::CONNS)?)?,
        templates: HashMap::try_from(m(map_names::TEMPLATES)?)?,
        timeouts: Array::try_from(m(map_names::TIMEOUTS)?)?,
        services: Array::try_from(m(map_names::SERVICES)?)?,
    })
}

/// A UDP socket sending to the group out of interface `ifindex` with the given TTL, without
/// looping its messages back to ourselves.
fn socket(ifindex: u32, ttl: u8) -> anyhow::Result<UdpSocket> {
    // SAFETY: a new socket; ownership passes to the UdpSocket.
    let s = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        anyhow::ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        UdpSocket::from_raw_fd(fd)
    };
    let mreq = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: ifindex as i32,
    };
    setsockopt(&s, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &mreq)?;
    s.set_multicast_ttl_v4(u32::from(ttl))?;
    s.set_multicast_loop_v4(false)?;
    Ok(s)
}

pub(super) fn setsockopt<T>(s: &UdpSocket, level: i32, name: i32, v: &T) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: v is a live value of the size passed.
    let r = unsafe {
        libc::setsockopt(s.as_raw_fd(), level, name, (v as *const T).cast(), std::mem::size_of::<T>() as u32)
    };
    anyhow::ensure!(r == 0, "setsockopt {level}/{name}: {}", std::io::Error::last_os_error());
    Ok(())
}

pub fn spawn(
    dir: &Path,
    c: &SyncDaemon,
    group: Ipv4Addr,
    ifindex: u32,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<JoinHandle<()>> {
    let maps = open(dir)?;
    let sock = socket(ifindex, c.mcast_ttl)?;
    let to = SocketAddrV4::new(group, c.mcast_port);
    let mut enc = Encoder::new(c.syncid, c.sync_maxlen);
    Ok(std::thread::Builder::new().name("sync-master".into()).spawn(move || {
        let mut sent: StdHashMap<FlowKey, Sent> = StdHashMap::new();
        while !stop.load(Ordering::Relaxed) {
            let msgs = scan(&maps, &mut sent, &mut enc, Instant::now());
            for m in msgs {
                if let Err(e) = sock.send_to(&m, to) {
                    warn!(error = %e, "sync message not sent");
                }
            }
            for _ in 0..10 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    })?)
}

/// What was last sent for an entry.
struct Sent {
    state: u8,
    expires_ns: u64,
    at: Instant,
}

/// The states the kernel syncs (`ip_vs_sync_conn_needed`).
pub fn synced_state(proto: u8, state: u8) -> bool {
    if proto != IPPROTO_TCP {
        return true;
    }
    use tcp_state::*;
    matches!(state, ESTABLISHED | FIN_WAIT | CLOSE | CLOSE_WAIT | TIME_WAIT)
}

/// Whether to send an entry now, given what was sent for it last.
fn due(last: Option<&Sent>, state: u8, expires_ns: u64, now: Instant) -> bool {
    match last {
        None => true,
        Some(s) if s.state != state => true,
        Some(s) => s.expires_ns != expires_ns && now.duration_since(s.at) >= Duration::from_secs(REFRESH_SECS),
    }
}

/// One walk: the messages to send.
fn scan(m: &Maps, sent: &mut StdHashMap<FlowKey, Sent>, enc: &mut Encoder, now: Instant) -> Vec<Vec<u8>> {
    let now_ns = monotonic_ns();
    let mut out = Vec::new();
    let mut alive = std::collections::HashSet::new();
    let entries: Vec<(FlowKey, ConnEntry)> = m.conns.iter().filter_map(Result::ok).collect();
    for (k, e) in entries {
        if e.expires_ns <= now_ns || !synced_state(k.proto, e.state) || !alive.insert(k) {
            continue;
        }
        if !due(sent.get(&k), e.state, e.expires_ns, now) {
            continue;
        }
        let mark = m.services.get(&e.svc_id, 0).ok().filter(|s| s.key.is_fwmark()).map_or(0, |s| s.key.addr[0]);
        let timeout = m.timeouts.get(&u32::from(e.state), 0).unwrap_or(0);
        out.extend(enc.push(&conn_entry(&k, &e, mark, timeout)));
        sent.insert(k, Sent { state: e.state, expires_ns: e.expires_ns, at: now });
        // (A sip template is not sent: lvsd does not send the engine's name and Call-ID
        // options, without which a backup's template would key on the client alone.)
        if e.flags & conn_flags::CONTROLLED != 0 && e.flags & conn_flags::CTL_PE_SIP == 0 {
            let tk = template_key(&k, &conn_flags::scope(&e));
            if let Ok(t) = m.templates.get(&tk, 0) {
                if t.expires_ns > now_ns {
                    out.extend(enc.push(&template_entry(&tk, &t, mark)));
                }
            }
        }
    }
    out.extend(enc.take());
    // Forget what left the table, so a new connection on the same 5-tuple is sent.
    sent.retain(|k, _| alive.contains(k));
    if !out.is_empty() {
        debug!(messages = out.len(), "sync messages");
    }
    out
}

/// A connection as `ip_vs_sync_conn` fills its entry.
pub fn conn_entry(k: &FlowKey, e: &ConnEntry, fwmark: u32, timeout: u32) -> SyncConn {
    let mut f = u32::from(e.fwd) & flags::FWD_MASK;
    // IPVS sets NOOUTPUT on DR/TUN connections and clears it once a reply is seen.
    if e.fwd != 0 && e.flags & conn_flags::SEEN_OUTPUT == 0 {
        f |= flags::NOOUTPUT;
    }
    if e.active == 0 {
        f |= flags::INACTIVE;
    }
    SyncConn {
        protocol: k.proto,
        flags: f,
        // UDP's only state is IP_VS_UDP_S_NORMAL, 0.
        state: if k.proto == IPPROTO_TCP { u16::from(e.state) } else { 0 },
        cport: u16::from_be(k.sport),
        vport: u16::from_be(e.vport),
        dport: u16::from_be(e.dport),
        fwmark,
        timeout,
        caddr: words_addr(k.src, k.family),
        vaddr: words_addr(e.vaddr, k.family),
        daddr: words_addr(e.daddr, k.family),
    }
}

/// A persistence template: client port 0, the masked client address, state NONE/ASSURED;
/// it keeps the INACTIVE its real server's flags give every new entry.
pub fn template_entry(k: &FlowKey, t: &Template, fwmark: u32) -> SyncConn {
    let mut f = flags::TEMPLATE | flags::INACTIVE | (u32::from(t.fwd) & flags::FWD_MASK);
    if t.fwd != 0 {
        f |= flags::NOOUTPUT;
    }
    SyncConn {
        protocol: k.proto,
        flags: f,
        state: u16::from(t.flags & template_flags::ASSURED != 0),
        cport: 0,
        vport: u16::from_be(k.dport),
        dport: u16::from_be(t.dport),
        fwmark,
        timeout: t.timeout_s,
        caddr: words_addr(k.src, k.family),
        vaddr: words_addr(k.dst, k.family),
        daddr: words_addr(t.daddr, k.family),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::tables::addr_words;

    #[test]
    fn flags_as_the_kernel_fills_them() {
        let w = |a: &str| addr_words(a.parse().unwrap()).0;
        let k = FlowKey {
            src: w("198.51.100.2"),
            dst: w("203.0.113.10"),
            sport: 40000u16.to_be(),
            dport: 80u16.to_be(),
            proto: 6,
            family: lvs_common::AF_INET,
            _pad: [0; 2],
        };
        let mut e = ConnEntry {
            vaddr: w("203.0.113.10"),
            daddr: w("192.0.2.11"),
            vport: 80u16.to_be(),
            dport: 8080u16.to_be(),
            fwd: 0,
            state: tcp_state::ESTABLISHED,
            active: 1,
            ..Default::default()
        };
        let c = conn_entry(&k, &e, 0, 900);
        assert_eq!((c.flags, c.state, c.cport, c.vport, c.dport, c.timeout), (0, 1, 40000, 80, 8080, 900));
        e.fwd = 3;
        e.active = 0;
        e.state = tcp_state::FIN_WAIT;
        assert_eq!(conn_entry(&k, &e, 0, 120).flags, 0x183);
        e.flags = conn_flags::SEEN_OUTPUT;
        assert_eq!(conn_entry(&k, &e, 0, 120).flags, 0x103);
        let mut u = k;
        u.proto = 17;
        e.state = tcp_state::UDP;
        assert_eq!(conn_entry(&u, &e, 0, 300).state, 0);

        let t = Template { daddr: w("192.0.2.11"), dport: 8080u16.to_be(), flags: template_flags::ASSURED, fwd: 0, timeout_s: 360, ..Default::default() };
        let tk = FlowKey { sport: 0, ..k };
        let s = template_entry(&tk, &t, 0);
        assert_eq!((s.flags, s.state, s.cport, s.timeout), (0x1100, 1, 0, 360));
    }

    #[test]
    fn which_entries_go_out_when() {
        assert!(synced_state(6, tcp_state::ESTABLISHED) && synced_state(6, tcp_state::TIME_WAIT));
        assert!(!synced_state(6, tcp_state::SYN_RECV) && !synced_state(6, tcp_state::SYN_SENT));
        assert!(synced_state(17, tcp_state::UDP));
        let t0 = Instant::now();
        assert!(due(None, 1, 5, t0));
        let s = Sent { state: 1, expires_ns: 5, at: t0 };
        assert!(!due(Some(&s), 1, 6, t0 + Duration::from_secs(1)), "traffic alone waits for the refresh");
        assert!(due(Some(&s), 4, 5, t0), "a state change goes out at once");
        assert!(due(Some(&s), 1, 6, t0 + Duration::from_secs(REFRESH_SECS)));
        assert!(!due(Some(&s), 1, 5, t0 + Duration::from_secs(REFRESH_SECS)), "idle: no refresh");
    }
}
