//! Direct routing and tunnelling: the next-hop miss report and the decapsulation program's
//! counters.

/// Capacity of `NEIGH_MISS` (an LRU map: a burst of misses towards many next hops only
/// forgets the oldest reports).
pub const NEIGH_MISS_SIZE: u32 = 1024;

/// Key of `NEIGH_MISS`: a next hop `bpf_fib_lookup` found no neighbour entry for, while
/// forwarding a direct-routing packet. 24 bytes, no hidden padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct NeighKey {
    /// Next-hop address (the real server, or the gateway towards it), network order (IPv4 in
    /// `addr[0]`).
    pub addr: [u32; 4],
    /// Egress interface the FIB lookup chose.
    pub ifindex: u32,
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<NeighKey>() == 24);

/// The IP protocol number of IP-in-IP (`IPPROTO_IPIP`).
pub const IPPROTO_IPIP: u8 = 4;
/// Outer IPv4 header the director puts in front of a tunnelled packet (no options).
pub const IPIP_OVERHEAD: u16 = 20;

/// Counters of the decapsulation program (per-CPU array `DECAP_STATS`, indexed by these).
pub mod decap_counter {
    /// A tunnelled packet (IP-in-IP, GRE or GUE) for a local address: the outer headers were
    /// removed, the inner packet went on into the stack.
    pub const DECAPSULATED: u32 = 0;
    /// A tunnelled packet not addressed to this host (the kernel routes it as it is).
    pub const PASS_NOT_LOCAL: u32 = 1;
    /// A tunnelled packet the program leaves alone: an outer fragment, outer options or
    /// extension headers, GRE flags or GUE options it does not handle, or an inner packet of
    /// another family than announced (the kernel gets it untouched).
    pub const PASS_UNSUPPORTED: u32 = 2;
    /// The outer header could not be removed (`bpf_skb_adjust_room` failed): dropped.
    pub const DROP_ADJUST_FAILED: u32 = 3;
    /// Number of slots.
    pub const COUNT: u32 = 4;
    /// Names, in index order (metric labels, `lvsd decap --counters`).
    pub const NAMES: [&str; COUNT as usize] =
        ["decapsulated", "pass_not_local", "pass_unsupported", "drop_adjust_failed"];
}

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::NeighKey {}
}
