//! Virtual services and real servers as the dataplane sees them.
//!
//! `SVC_INDEX` maps a [`SvcKey`] to a slot in `SERVICES` (an array of [`ServiceConf`], which
//! also holds the service's real servers in kernel order, newest first). Real servers live in
//! `DESTS`, an array of [`DestConf`]; `SCHED_STATE` holds the per-service scheduler position.
//! Userspace owns slot allocation and rewrites a whole `ServiceConf` on every change.

/// Capacity of `SERVICES`, `SCHED_STATE` and `SVC_INDEX`.
pub const MAX_SERVICES: u32 = 16384;
/// Capacity of `DESTS`.
pub const MAX_DESTS: u32 = 131072;
/// Real servers per service the dataplane can hold. Also bounds the scheduler loop, which the
/// verifier must see as finite.
pub const MAX_DESTS_PER_SVC: usize = 256;

/// Scheduler identifiers (`ServiceConf::sched`).
pub mod sched {
    pub const RR: u32 = 1;
    pub const LC: u32 = 2;
    pub const WLC: u32 = 3;
    pub const SED: u32 = 4;
    pub const NQ: u32 = 5;
    pub const FO: u32 = 6;
    pub const OVF: u32 = 7;
    pub const LBLC: u32 = 8;
    pub const LBLCR: u32 = 9;
    pub const DH: u32 = 10;
    pub const SH: u32 = 11;
    pub const WRR: u32 = 12;
    pub const MH: u32 = 13;
    pub const TWOS: u32 = 14;

    const NAMES: [(u32, &str); 14] = [
        (RR, "rr"),
        (WRR, "wrr"),
        (LC, "lc"),
        (WLC, "wlc"),
        (SED, "sed"),
        (NQ, "nq"),
        (FO, "fo"),
        (OVF, "ovf"),
        (LBLC, "lblc"),
        (LBLCR, "lblcr"),
        (DH, "dh"),
        (SH, "sh"),
        (MH, "mh"),
        (TWOS, "twos"),
    ];

    /// The id for a scheduler name, if the dataplane implements it.
    pub fn from_name(name: &str) -> Option<u32> {
        NAMES.iter().find(|(_, n)| *n == name).map(|(id, _)| *id)
    }

    pub fn name(id: u32) -> Option<&'static str> {
        NAMES.iter().find(|(i, _)| *i == id).map(|(_, n)| *n)
    }

    /// The implemented schedulers' names, for messages: "rr, lc, wlc, ...".
    pub fn supported_names() -> SupportedNames {
        SupportedNames
    }

    /// `Display`s the list without allocating (this crate is `no_std`).
    pub struct SupportedNames;

    impl core::fmt::Display for SupportedNames {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            for (i, (_, n)) in NAMES.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                f.write_str(n)?;
            }
            Ok(())
        }
    }
}

/// Key of `SVC_INDEX`. 20 bytes, no hidden padding. A firewall-mark service has `proto` 0 (no
/// address service has it) and its mark, host order, in `addr[0]` (see [`SvcKey::fwmark`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SvcKey {
    /// Virtual address, network order (IPv4 in `addr[0]`).
    pub addr: [u32; 4],
    /// Virtual port, network order.
    pub port: u16,
    /// IP protocol number.
    pub proto: u8,
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
}

impl SvcKey {
    /// The key of firewall-mark service `mark` of `family` (`-f MARK [-6]`).
    #[inline(always)]
    pub fn fwmark(mark: u32, family: u8) -> Self {
        SvcKey { addr: [mark, 0, 0, 0], port: 0, proto: 0, family }
    }

    /// Whether this is a firewall-mark service's key.
    pub fn is_fwmark(&self) -> bool {
        self.proto == 0
    }
}

/// `ServiceConf::flags` bits that only the dataplane's bookkeeping uses.
pub mod svc_conf_flags {
    /// The slot holds a live service.
    pub const IN_USE: u32 = 0x8000_0000;
    /// The service has the sip persistence engine (`--pe sip`): with `IP_VS_SVC_F_PERSISTENT`,
    /// its UDP templates are keyed on the datagram's SIP Call-ID too (`lvs_common::sip`).
    pub const PE_SIP: u32 = 0x4000_0000;
    /// IPVS service flags (`IP_VS_SVC_F_*`) occupy the low bits unchanged.
    pub const IPVS_MASK: u32 = 0x0000_ffff;
}

/// One virtual service (value of `SERVICES`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceConf {
    /// The service's key, so userspace can rebuild its view from the maps after a restart.
    pub key: SvcKey,
    /// `sched::*`.
    pub sched: u32,
    /// `svc_conf_flags::IN_USE` | IPVS service flags.
    pub flags: u32,
    /// Persistence timeout, seconds.
    pub timeout: u32,
    /// Persistence netmask (IPv4 mask in host order, or IPv6 prefix length).
    pub netmask: u32,
    /// Number of valid entries in `dests`.
    pub dest_count: u32,
    /// `DESTS` slots of the real servers, kernel order (newest first).
    pub dests: [u32; MAX_DESTS_PER_SVC],
}

impl Default for ServiceConf {
    fn default() -> Self {
        ServiceConf {
            key: SvcKey::default(),
            sched: 0,
            flags: 0,
            timeout: 0,
            netmask: 0,
            dest_count: 0,
            dests: [0; MAX_DESTS_PER_SVC],
        }
    }
}

/// `DestConf::flags` bits.
pub mod dest_flags {
    /// IPVS's `IP_VS_DEST_F_AVAILABLE`: the slot holds a live real server.
    pub const AVAILABLE: u32 = 0x1;
    /// `IP_VS_DEST_F_OVERLOAD`: over its upper threshold; schedulers skip it.
    pub const OVERLOAD: u32 = 0x2;
}

/// One real server (value of `DESTS`). 40 bytes, no hidden padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DestConf {
    /// Real server address, network order.
    pub addr: [u32; 4],
    /// Real server port, network order.
    pub port: u16,
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// Forwarding method (0 masq, 1 local, 2 tunnel, 3 route).
    pub fwd: u8,
    /// Weight; 0 quiesces the server.
    pub weight: i32,
    /// `dest_flags::*`.
    pub flags: u32,
    /// Upper connection threshold (0 = none).
    pub u_threshold: u32,
    /// Lower connection threshold (0 = none).
    pub l_threshold: u32,
    /// `SERVICES` slot of the owning service.
    pub svc_id: u32,
}

/// Connection counters of one real server (value of `DEST_COUNTERS`, same index as `DESTS`).
/// 32 bytes; 64-bit because the BPF target has 64-bit atomics only. Global, not per-CPU: the dynamic schedulers compare them across servers, so every
/// CPU must see one number. The dataplane changes them with atomic adds; userspace (which takes
/// an expired connection's count away when it reclaims the entry) with atomic operations on the
/// map's memory (`BPF_F_MMAPABLE`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DestCounters {
    /// Connections in an active TCP state (ESTABLISHED and the handshake states, kernel
    /// >= 4.8): ipvsadm's ActiveConn.
    pub active: u64,
    /// Every other live connection, UDP included: InActConn.
    pub inactive: u64,
    /// Persistence templates pointing at this server: PersistConn.
    pub persist: u64,
    /// 1 while the server is overloaded (IPVS's `IP_VS_DEST_F_OVERLOAD`): set when a new
    /// connection brings its connections to the u-threshold, cleared by [`overload_clears`]
    /// when one ends, or when `-a/-e` lifts the threshold. Every scheduler skips it. Kept here,
    /// not in `DestConf`, because the dataplane sets it and userspace rewrites `DestConf`.
    pub overload: u64,
}

/// Whether binding a connection sets OVERLOAD (`ip_vs_bind_dest`): `total` is active +
/// inactive after counting the new connection; templates don't count.
#[inline(always)]
pub fn overload_sets(total: u64, u_threshold: u32) -> bool {
    u_threshold != 0 && total >= u_threshold as u64
}

/// Whether unbinding a connection clears OVERLOAD (`ip_vs_unbind_dest`): `total` after the
/// decrement. With an l-threshold: below it; with only a u-threshold: below 3/4 of it; with
/// neither: always.
#[inline(always)]
pub fn overload_clears(total: u64, u_threshold: u32, l_threshold: u32) -> bool {
    if l_threshold != 0 {
        total < l_threshold as u64
    } else if u_threshold != 0 {
        total.wrapping_mul(4) < (u_threshold as u64) * 3
    } else {
        true
    }
}

/// IPVS's overhead of a real server for lc, wlc (and lblc): `active * 256 + inactive`.
#[inline(always)]
pub fn overhead(c: &DestCounters) -> u64 {
    (c.active << 8).wrapping_add(c.inactive)
}

/// A 256-bucket dh or sh table (value of `HASH_TABLES`, by service slot): each bucket holds a
/// position in `ServiceConf::dests`, or `sched_hash::EMPTY`. Built by userspace exactly when
/// the kernel rebuilds it. 512 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashTable {
    pub slots: [u16; 256],
}

impl Default for HashTable {
    fn default() -> Self {
        HashTable { slots: [u16::MAX; 256] }
    }
}

/// An mh (Maglev) lookup table (value of `MH_TABLES`, by service slot): 4093 positions in
/// `ServiceConf::dests` or `sched_hash::EMPTY`, built by userspace (`maglev::mh_build`) when
/// the kernel rebuilds it. 8188 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MhTable {
    pub slots: [u16; 4093],
    pub _pad: u16,
}

/// IPVS service flags the hash schedulers read (`IP_VS_SVC_F_SCHED1/2`): `-b sh-fallback` /
/// `mh-fallback`, and `-b sh-port` / `mh-port`.
pub const SVC_F_SCHED_FALLBACK: u32 = 0x0008;
/// `IP_VS_SVC_F_ONEPACKET` (`--ops`): every UDP datagram is scheduled on its own.
pub const SVC_F_ONEPACKET: u32 = 0x0004;
pub const SVC_F_SCHED_PORT: u32 = 0x0010;

/// Key of `LBLC_CACHE`: a service and a destination address. 24 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LblcKey {
    /// `SERVICES` slot.
    pub svc_id: u32,
    /// The packet's destination address, network order (IPv4 in `addr[0]`).
    pub addr: [u32; 4],
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    pub _pad: [u8; 3],
}

/// Value of `LBLC_CACHE`: the real server lblc last chose for that destination. 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LblcEntry {
    /// `DESTS` slot.
    pub dest_id: u32,
    pub _pad: u32,
    /// Last use, `bpf_ktime_get_ns` time.
    pub lastuse_ns: u64,
}

/// Most servers an lblcr set holds. The kernel's sets are unbounded lists; a set only grows
/// while every member is overloaded, so 16 is rarely reached. Past it, the oldest member goes.
pub const LBLCR_SET_MAX: usize = 16;

/// Value of `LBLCR_CACHE`: lblcr's set of real servers for a destination address, newest
/// first (the kernel inserts at the head). 88 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LblcrEntry {
    /// Members in `dests` (the rest are unused).
    pub count: u32,
    pub _pad: u32,
    /// Last use, `bpf_ktime_get_ns` time.
    pub lastuse_ns: u64,
    /// Last change of the set (`set.lastmod`).
    pub lastmod_ns: u64,
    /// `DESTS` slots, newest first.
    pub dests: [u32; LBLCR_SET_MAX],
}

/// An lblcr set with more than one member that has not changed for this long loses its most
/// loaded member at the next lookup (the `lblcr_expiration` sysctl's default, 24 hours).
pub const LBLCR_EXPIRATION_NS: u64 = 24 * 3600 * 1_000_000_000;

/// An lblc cache entry unused this long is forgotten (the `lblc_expiration` sysctl's default,
/// 24 hours).
pub const LBLC_EXPIRATION_NS: u64 = 24 * 3600 * 1_000_000_000;

/// Capacity of `LBLC_CACHE` (an LRU map: past it, the least recently used entries go, where
/// the kernel's timer drops entries unused for 6 minutes once it holds 16384).
pub const LBLC_CACHE_SIZE: u32 = 65536;

/// Mutable per-service scheduler state (value of `SCHED_STATE`). 24 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SchedState {
    /// rr: position *after* the last chosen real server in `ServiceConf::dests`, i.e. the
    /// index at which the next walk starts; 0 is the list head (IPVS's initial pointer).
    pub rr_next: u32,
    pub _pad: u32,
    /// wrr: the kernel's mark (`cl` a position in `ServiceConf::dests`). Written by userspace
    /// when the kernel initialises or resets it, by the dataplane after every choice.
    pub wrr: crate::wrr::WrrMark,
}

const _: () = assert!(core::mem::size_of::<DestCounters>() == 32);
const _: () = assert!(core::mem::size_of::<SvcKey>() == 20);
const _: () = assert!(core::mem::size_of::<ServiceConf>() == 40 + 4 * MAX_DESTS_PER_SVC);
const _: () = assert!(core::mem::size_of::<DestConf>() == 40);
const _: () = assert!(core::mem::size_of::<SchedState>() == 24);
const _: () = assert!(core::mem::size_of::<LblcKey>() == 24);
const _: () = assert!(core::mem::size_of::<LblcEntry>() == 16);
const _: () = assert!(core::mem::size_of::<LblcrEntry>() == 88);
const _: () = assert!(core::mem::size_of::<HashTable>() == 512);
const _: () = assert!(core::mem::size_of::<MhTable>() == 8188);

/// Step `i` of the rr walk over `count` real servers starting at `start` (IPVS
/// `ip_vs_rr_schedule`: after the last chosen server to the end, then from the head up to and
/// including it). `start` must be below `count`.
#[inline(always)]
pub fn rr_index(start: u32, i: u32, count: u32) -> u32 {
    let idx = start + i;
    if idx >= count {
        idx - count
    } else {
        idx
    }
}

/// Where the rr walk starts: `next` is the slot after the previously chosen server, 0 the list
/// head. A pointer past the end (servers deleted since) starts again at the head.
#[inline(always)]
pub fn rr_start(next: u32, count: u32) -> u32 {
    if next >= count {
        0
    } else {
        next
    }
}

/// The whole rr walk as a plain loop: the reference the dataplane's `bpf_loop` version
/// follows step by step (same [`rr_start`] and [`rr_index`]), used by host-side tests.
pub fn rr_pick(count: u32, next: u32, mut eligible: impl FnMut(u32) -> bool) -> Option<u32> {
    let start = rr_start(next, count);
    (0..count.min(MAX_DESTS_PER_SVC as u32)).map(|i| rr_index(start, i, count)).find(|&i| eligible(i))
}

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::SvcKey {}
    unsafe impl aya::Pod for super::ServiceConf {}
    unsafe impl aya::Pod for super::DestConf {}
    unsafe impl aya::Pod for super::SchedState {}
    unsafe impl aya::Pod for super::DestCounters {}
    unsafe impl aya::Pod for super::LblcKey {}
    unsafe impl aya::Pod for super::LblcEntry {}
    unsafe impl aya::Pod for super::LblcrEntry {}
    unsafe impl aya::Pod for super::HashTable {}
    unsafe impl aya::Pod for super::MhTable {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's threshold rules (§1.0): exactly u connections are admitted, the flag is set
    /// as the u-th binds; it clears below l, or below 3/4 of u without l, or always without
    /// either.
    #[test]
    fn overload_follows_the_thresholds() {
        assert!(!overload_sets(11, 12));
        assert!(overload_sets(12, 12));
        assert!(!overload_sets(1000, 0));
        assert!(!overload_clears(5, 12, 5));
        assert!(overload_clears(4, 12, 5));
        // u = 12, no l: clears when total * 4 < 36, i.e. at 8.
        assert!(!overload_clears(9, 12, 0));
        assert!(overload_clears(8, 12, 0));
        assert!(overload_clears(100, 0, 0));
    }

    /// `-a A`, `-a B -w 0`, `-a C` gives kernel order C,B,A and the sequence C A C A.
    #[test]
    fn rr_skips_weight_zero_like_the_kernel() {
        let weights = [1, 0, 1]; // C, B, A
        let mut next = 0;
        let mut seq = [0u32; 4];
        for s in seq.iter_mut() {
            let i = rr_pick(3, next, |i| weights[i as usize] > 0).unwrap();
            *s = i;
            next = i + 1;
        }
        assert_eq!(seq, [0, 2, 0, 2]);
    }

    #[test]
    fn rr_none_when_all_quiesced() {
        assert_eq!(rr_pick(2, 0, |_| false), None);
        assert_eq!(rr_pick(0, 0, |_| true), None);
    }
}
