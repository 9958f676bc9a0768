//! The connection table: lookups in both directions, creation, and IPVS's state machine.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use lvs_common::{
    flow::{conn_flags, ConnEntry, ConnRef, FlowKey},
    service::DestConf,
    tcp_state::{self, DEFAULT_TIMEOUTS, NEW_CONN_TIMEOUT},
    AF_INET,
};

use crate::{
    maps::{CONNS, CONNS_OUT, TIMEOUTS},
    parse::{Packet, IPPROTO_TCP},
};

const NSEC_PER_SEC: u64 = 1_000_000_000;

/// The flow key of the packet as it arrived.
#[inline(always)]
pub fn key_of(pkt: &Packet) -> FlowKey {
    FlowKey {
        src: [pkt.saddr, 0, 0, 0],
        dst: [pkt.daddr, 0, 0, 0],
        sport: pkt.sport,
        dport: pkt.dport,
        proto: pkt.proto,
        family: AF_INET,
        _pad: [0; 2],
    }
}

#[inline(always)]
fn timeout_ns(state: u8) -> u64 {
    let secs = match TIMEOUTS.get(state as u32) {
        Some(t) if *t != 0 => *t,
        _ => match DEFAULT_TIMEOUTS.get(state as usize) {
            Some(t) => *t,
            None => NEW_CONN_TIMEOUT,
        },
    };
    secs as u64 * NSEC_PER_SEC
}

/// Runs the state machine for one packet and restarts the entry's timer, as IPVS does at the
/// end of every packet.
#[inline(always)]
pub fn update(entry: *mut ConnEntry, pkt: &Packet, dir: usize, now: u64) {
    unsafe {
        let state = if pkt.proto == IPPROTO_TCP {
            // DR/TUN connections have no output path: IPVS's INPUT_ONLY table.
            let dir = if dir == tcp_state::DIR_INPUT && (*entry).flags & conn_flags::NAT == 0 {
                tcp_state::DIR_INPUT_ONLY
            } else {
                dir
            };
            tcp_state::next_state((*entry).state, dir, pkt.tcp_flags)
        } else {
            tcp_state::UDP
        };
        (*entry).state = state;
        (*entry).expires_ns = now + timeout_ns(state);
    }
}

/// A live (unexpired) connection for the client-side key.
#[inline(always)]
pub fn lookup_in(key: &FlowKey, now: u64) -> Option<*mut ConnEntry> {
    let e = CONNS.get_ptr_mut(key)?;
    if unsafe { (*e).expires_ns } <= now {
        return None;
    }
    Some(e)
}

/// For a reply from a real server: the live connection it belongs to.
#[inline(always)]
pub fn lookup_out(key: &FlowKey, now: u64) -> Option<*mut ConnEntry> {
    let r: *const ConnRef = CONNS_OUT.get_ptr(key)?;
    let in_key = unsafe { (*r).in_key };
    let e = lookup_in(&in_key, now)?;
    // The client-side entry may have been replaced by a newer connection to another real
    // server while this reverse entry waits for reclaim: it must still point back at us.
    unsafe {
        if (*e).daddr != key.src || (*e).dport != key.sport {
            return None;
        }
    }
    Some(e)
}

/// Whether a SYN may replace this entry with a fresh connection (IPVS `conn_reuse_mode` 1:
/// an entry in TIME_WAIT or CLOSE is expired and the packet scheduled again).
#[inline(always)]
pub fn reusable(entry: *const ConnEntry, pkt: &Packet) -> bool {
    let st = unsafe { (*entry).state };
    pkt.proto == IPPROTO_TCP
        && pkt.tcp_flags & (tcp_state::TCP_SYN | tcp_state::TCP_RST | tcp_state::TCP_ACK)
            == tcp_state::TCP_SYN
        && (st == tcp_state::TIME_WAIT || st == tcp_state::CLOSE)
}

#[inline(always)]
pub fn now_ns() -> u64 {
    unsafe { bpf_ktime_get_ns() }
}

/// Inserts a new NAT connection (both directions) in state NONE; the caller runs the first
/// transition. `Err(())` when the table is full.
#[inline(always)]
pub fn create(
    key: &FlowKey,
    svc_id: u32,
    dest_id: u32,
    dest: &DestConf,
    now: u64,
) -> Result<*mut ConnEntry, ()> {
    // Port 0 on a real server means "the virtual port" (ipvsadm -r RIP without port).
    let dport = if dest.port == 0 { key.dport } else { dest.port };
    let entry = ConnEntry {
        vaddr: key.dst,
        daddr: dest.addr,
        vport: key.dport,
        dport,
        fwd: dest.fwd,
        state: tcp_state::NONE,
        flags: conn_flags::NAT,
        svc_id,
        dest_id,
        expires_ns: now + NEW_CONN_TIMEOUT as u64 * NSEC_PER_SEC,
        created_ns: now,
    };
    let out_key = FlowKey {
        src: dest.addr,
        dst: key.src,
        sport: dport,
        dport: key.sport,
        proto: key.proto,
        family: key.family,
        _pad: [0; 2],
    };
    // BPF_ANY: an expired entry with the same key may still sit in the table until userspace
    // reclaims it; the new connection takes its place.
    CONNS.insert(key, &entry, 0).map_err(|_| ())?;
    if CONNS_OUT.insert(&out_key, &ConnRef { in_key: *key }, 0).is_err() {
        let _ = CONNS.remove(key);
        return Err(());
    }
    CONNS.get_ptr_mut(key).ok_or(())
}
