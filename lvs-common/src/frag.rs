//! The fragment table: how the later fragments of a datagram follow its first one.
//!
//! Only the first fragment (offset 0) carries the TCP/UDP ports, so only it can be matched
//! against the connection table or scheduled. When the dataplane forwards a first fragment
//! it records here, keyed on what every fragment of the datagram shares (RFC 791 / RFC 8200:
//! source, destination, protocol and identification), where it went; a later fragment
//! (offset != 0) is then sent the same way to the same address, or passed to the kernel
//! when there is no entry (never guessed).

/// Capacity of the fragment table (an LRU hash: the oldest datagrams make way first).
pub const FRAG_TABLE_SIZE: u32 = 16384;

/// How long an entry lives after its first fragment: the kernel's reassembly timeouts,
/// `ipfrag_time` 30 s for IPv4 and `ip6frag_time` 60 s for IPv6. A datagram whose fragments
/// are further apart than that would not be reassembled by the real server either.
pub const FRAG_TIMEOUT_V4_SECS: u64 = 30;
pub const FRAG_TIMEOUT_V6_SECS: u64 = 60;

/// `FragEntry::how` below 0x10: the later fragments go to the real server by this forwarding
/// method (`DestConf::fwd`'s IPVS numbering: 0 masquerading, 2 tunnel, 3 route).
/// `FRAG_REPLY`: a NAT reply from a real server: the later fragments' source becomes the virtual address.
pub const FRAG_REPLY: u8 = 0x10;

/// Key: the fields every fragment of one datagram shares. `id` is the IPv4 header's 16-bit
/// identification (network order, in the low-addressed two bytes, the rest zero) or the IPv6
/// fragment header's 32-bit one (network order). IPv4 addresses use word 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FragKey {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub id: u32,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<FragKey>() == 40);

/// Where the datagram's first fragment went.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FragEntry {
    /// The real server (NAT, DR, TUN), or the virtual address a NAT reply now comes from
    /// (`FRAG_REPLY`); network order, IPv4 in word 0.
    pub addr: [u32; 4],
    /// `bpf_ktime_get_ns` after which the entry no longer matches.
    pub expires_ns: u64,
    /// One of the `FRAG_*` values above.
    pub how: u8,
    pub _pad: [u8; 7],
}
const _: () = assert!(core::mem::size_of::<FragEntry>() == 32);
