//! Types shared by the XDP dataplane and userspace: every map key and value, once.
//!
//! Rules for everything in here (the verifier and the kernel's hash maps compare raw bytes):
//! - `#[repr(C)]`, every padding byte declared as a `_pad` field and zeroed, sizes asserted at
//!   compile time. Hidden padding made conntrack lookups miss at random.
//! - No `bool`, `Option` or enum inside map values: integers only, converted with `TryFrom`.
//! - Addresses and ports are kept in **network byte order**, exactly as they sit in the packet,
//!   so the dataplane copies them without swapping. IPv4 addresses use the first `u32` of a
//!   `[u32; 4]`, the other three are zero.
#![no_std]

pub mod bench;
pub mod classify;
pub mod counters;
pub mod csum;
pub mod flow;
pub mod frag;
pub mod fwd;
pub mod icmp_limit;
pub mod maglev;
pub mod persist;
pub mod prefilter;
pub mod sched_dynamic;
#[cfg(test)]
mod sched_golden;
pub mod sched_hash;
pub mod service;
pub mod sip;
pub mod stats;
pub mod sysctl;
pub mod tcp_state;
pub mod twos;
pub mod wrr;

/// Names of the maps, as the eBPF object defines them and as they are pinned.
pub mod map_names {
    pub const SVC_INDEX: &str = "SVC_INDEX";
    pub const SERVICES: &str = "SERVICES";
    pub const SCHED_STATE: &str = "SCHED_STATE";
    pub const DESTS: &str = "DESTS";
    pub const CONNS: &str = "CONNS";
    pub const CONNS_OUT: &str = "CONNS_OUT";
    pub const TIMEOUTS: &str = "TIMEOUTS";
    pub const STATS: &str = "STATS";
    pub const DEST_COUNTERS: &str = "DEST_COUNTERS";
    pub const LBLC_CACHE: &str = "LBLC_CACHE";
    pub const LBLCR_CACHE: &str = "LBLCR_CACHE";
    pub const HASH_TABLES: &str = "HASH_TABLES";
    pub const MH_TABLES: &str = "MH_TABLES";
    pub const TEMPLATES: &str = "TEMPLATES";
    pub const SYSCTLS: &str = "SYSCTLS";
    pub const IPVS_STATS: &str = "IPVS_STATS";
    pub const IPVS_STATS_ZERO: &str = "IPVS_STATS_ZERO";
    pub const CLASSIFIER: &str = "CLASSIFIER";
    pub const LOOKUP_CTL: &str = "LOOKUP_CTL";
    pub const NEIGH_MISS: &str = "NEIGH_MISS";
    pub const ICMP_BUDGET: &str = "ICMP_BUDGET";
    /// Bitmap of virtual and real-server addresses (`prefilter`).
    pub const ADDR_FILTER: &str = "ADDR_FILTER";
    /// One word lvsd advances on every route, neighbour, address, link or rule change: the
    /// dataplane's next-hop cache trusts only entries of the current value.
    pub const NEXT_HOP_EPOCH: &str = "NEXT_HOP_EPOCH";
    /// The IPv6 path's programs, tail-called by the XDP entry (`XDP6_SLOT`, `XDP6_NEW_SLOT`, `XDP6_SEND_SLOT`).
    pub const XDP_PROGS: &str = "XDP_PROGS";
    /// Where the first fragment of each recent datagram went (`crate::frag`).
    pub const FRAGS: &str = "FRAGS";
    /// The running connection sync daemons' parameters, so that a restarted lvsd starts them
    /// again. Not in the eBPF object: lvsd creates and pins it itself (the dataplane never
    /// reads it; bpffs holds no plain files).
    pub const SYNC_DAEMONS: &str = "SYNC_DAEMONS";
    /// The Call-ID of each SIP persistence template (`sip::CallId`), same key as `TEMPLATES`.
    pub const SIP_CALLIDS: &str = "SIP_CALLIDS";
    /// Every map, for pinning.
    pub const ALL: [&str; 27] = [
        SVC_INDEX,
        SERVICES,
        SCHED_STATE,
        DESTS,
        CONNS,
        CONNS_OUT,
        TIMEOUTS,
        STATS,
        DEST_COUNTERS,
        LBLC_CACHE,
        LBLCR_CACHE,
        HASH_TABLES,
        MH_TABLES,
        TEMPLATES,
        SYSCTLS,
        IPVS_STATS,
        IPVS_STATS_ZERO,
        CLASSIFIER,
        LOOKUP_CTL,
        NEIGH_MISS,
        ICMP_BUDGET,
        XDP_PROGS,
        FRAGS,
        SYNC_DAEMONS,
        SIP_CALLIDS,
        ADDR_FILTER,
        NEXT_HOP_EPOCH,
    ];
}

/// Name of the XDP program in the object.
pub const XDP_PROGRAM: &str = "lvs_xdp";

/// Name of the IPv6 XDP program, reached from [`XDP_PROGRAM`] by a tail call through
/// `map_names::XDP_PROGS`.
pub const XDP6_PROGRAM: &str = "lvs_xdp6";

/// Its slot in `map_names::XDP_PROGS`.
pub const XDP6_SLOT: u32 = 0;

/// The IPv6 new-connection program, tail-called by [`XDP6_PROGRAM`], and its slot.
pub const XDP6_NEW_PROGRAM: &str = "lvs_xdp6_new";
pub const XDP6_NEW_SLOT: u32 = 1;

/// The IPv6 output program (rewrites, FIB lookups, tunnels, ICMPv6), tail-called by the two
/// above, and its slot.
pub const XDP6_SEND_PROGRAM: &str = "lvs_xdp6_send";
pub const XDP6_SEND_SLOT: u32 = 2;

/// The program relaying ICMP errors about tracked IPv4 connections, tail-called by the XDP
/// entry for packets that are neither TCP nor UDP, and its slot.
pub const XDP_ICMP_PROGRAM: &str = "lvs_xdp_icmp";
pub const XDP_ICMP_SLOT: u32 = 3;

/// The program relaying ICMPv6 errors about tracked IPv6 connections, tail-called by
/// [`XDP6_PROGRAM`] for IPv6 packets that are neither TCP nor UDP, and its slot.
pub const XDP6_ICMP_PROGRAM: &str = "lvs_xdp6_icmp";
pub const XDP6_ICMP_SLOT: u32 = 4;
/// The program forwarding later fragments (IPv4 and IPv6) after their first one, tail-called
/// by the IPv4 entry and by the IPv6 program for fragments that do not carry the ports, and
/// its slot.
pub const XDP_FRAG_PROGRAM: &str = "lvs_xdp_frag";
pub const XDP_FRAG_SLOT: u32 = 5;

/// The sip persistence engine's Call-ID search (`lvs_xdp_sip`), tail-called by
/// [`XDP_PROGRAM`] for a new datagram of a persistent `--pe sip` service, and its slot.
pub const XDP_SIP_PROGRAM: &str = "lvs_xdp_sip";
pub const XDP_SIP_SLOT: u32 = 6;

/// The slot holding [`XDP_PROGRAM`] itself: `lvs_xdp_sip` tail-calls back into it with the
/// Call-ID found.
pub const XDP_MAIN_SLOT: u32 = 7;

/// The tunnel program (GUE, GRE and tunnels to a real server of the other family),
/// tail-called by the XDP entry, the IPv6 output program and the ICMP relay, and its slot.
pub const XDP_TUN_PROGRAM: &str = "lvs_xdp_tun";
pub const XDP_TUN_SLOT: u32 = 8;

/// Name of the real servers' decapsulation program (TC ingress) in its own object.
pub const DECAP_PROGRAM: &str = "lvs_decap";

/// Version of the map layout. Pinned maps are reused without any schema check, so the pin
/// directory carries this number; bump it whenever a key or value type changes.
pub const MAP_ABI_VERSION: u32 = 5;

/// Address family values as the kernel numbers them.
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;
