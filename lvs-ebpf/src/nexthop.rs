//! Next-hop cache: the result of a successful `bpf_fib_lookup` (egress interface, MAC
//! addresses, the route's MTU and, for tunnels, its source address), kept per CPU for
//! [`TTL_NS`] so that an established flow does not pay a route and neighbour lookup per
//! packet (about 110 ns of 250 here). The FIB lookup stays the fallback: on a miss, an
//! expired entry, a packet larger than the cached MTU, or any result but success.
//!
//! Towards a real server the entry is keyed by the real server's address alone (with the
//! ingress interface): the route IPVS uses towards a real server is a property of the real
//! server (its `dest_dst` cache), not of the client. Towards a client (NAT replies, routed-back
//! DR replies) the key also holds the packet's source, as the FIB lookup sees it.
//!
//! Freshness: an entry is used only in the epoch it was filled in (`NEXT_HOP_EPOCH`, which
//! lvsd advances on every route, neighbour, address, link or rule event the kernel announces),
//! so a changed route or neighbour (new MAC, entry deleted, route moved to another gateway or
//! interface) is seen by the next packet; and at most for [`TTL_NS`], the backstop for a
//! change between a lookup and its recording, or one made while no lvsd listens. Per-CPU, so entries are
//! written without tearing and without cache-line bouncing between CPUs; direct-mapped (a
//! slot holds one key, a colliding key replaces it), so a lookup is one inlined array read.

use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray},
};

use crate::forward::FibParams;

/// How long an entry is trusted.
pub const TTL_NS: u64 = 1_000_000_000;

/// Slots per CPU (a power of two; 48 bytes each).
const SLOTS: u32 = 8192;
const SLOT_SHIFT: u32 = 32 - 13;
const _: () = assert!(1 << (32 - SLOT_SHIFT) == SLOTS);

/// `NextHop::flags`: `src` holds the route's source address (`BPF_FIB_LOOKUP_SRC` was used).
pub const HAS_SRC: u16 = 1;

#[repr(C)]
pub struct NextHop {
    /// Coarse monotonic time after which the entry is not used; 0: empty.
    pub expires_ns: u64,
    /// Key: destination the lookup was for, the source part of the key (0 towards a real
    /// server), the ingress interface. Network order.
    pub dst: u32,
    pub src_key: u32,
    pub iif: u32,
    /// Egress interface.
    pub oif: u32,
    /// The route's source address (with [`HAS_SRC`]), network order.
    pub src: u32,
    /// The route's MTU; 0 when the lookup made no MTU check (then no packet that needs one
    /// uses the entry).
    pub mtu: u16,
    pub flags: u16,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    /// `NEXT_HOP_EPOCH` when the entry was filled (its low 32 bits).
    pub epoch: u32,
}
const _: () = assert!(core::mem::size_of::<NextHop>() == 48);

/// Not pinned: it holds nothing a restarted daemon needs.
#[map]
static NEXT_HOPS: PerCpuArray<NextHop> = PerCpuArray::with_max_entries(SLOTS, 0);

/// The epoch (one word, pinned): see the module's comment.
#[map]
pub static NEXT_HOP_EPOCH: Array<u64> = Array::with_max_entries(1, 0);

#[inline(always)]
fn epoch() -> u32 {
    NEXT_HOP_EPOCH.get(0).map_or(0, |e| *e as u32)
}

#[inline(always)]
fn slot(dst: u32, src_key: u32, iif: u32) -> u32 {
    (dst ^ src_key.rotate_left(16) ^ iif).wrapping_mul(0x9E37_79B1) >> SLOT_SHIFT
}

/// The live entry for this key, if any.
#[inline(always)]
pub fn get(dst: u32, src_key: u32, iif: u32, now: u64) -> Option<&'static NextHop> {
    let e = NEXT_HOPS.get(slot(dst, src_key, iif))?;
    (e.dst == dst && e.src_key == src_key && e.iif == iif && e.expires_ns > now && e.epoch == epoch()).then_some(e)
}

/// Records a successful lookup. `mtu`: the route's MTU if the lookup checked it, else 0.
#[inline(always)]
pub fn put(dst: u32, src_key: u32, iif: u32, p: &FibParams, mtu: u16, flags: u16, now: u64) {
    let Some(e) = NEXT_HOPS.get_ptr_mut(slot(dst, src_key, iif)) else { return };
    unsafe {
        (*e).expires_ns = now + TTL_NS;
        (*e).dst = dst;
        (*e).src_key = src_key;
        (*e).iif = iif;
        (*e).oif = p.ifindex;
        (*e).src = p.src[0];
        (*e).mtu = mtu;
        (*e).flags = flags;
        (*e).smac = p.smac;
        (*e).dmac = p.dmac;
        (*e).epoch = epoch();
    }
}

/// The IPv6 cache: the whole result of a successful lookup (`FibParams`: egress interface,
/// MACs, in `tot_len` the route's MTU, which the kernel returns on success whenever it checked
/// one, and for tunnels in `src` the route's source address). Keyed as the IPv4 entries are:
/// towards a real server by its address and the ingress interface (`src_key` all zero), towards
/// a client (NAT replies, routed-back DR replies) also by the packet's source. Same epoch and
/// lifetime as the IPv4 entries. Tunnelling needs the route's source address, which only a
/// lookup with `BPF_FIB_LOOKUP_SRC` gives ([`HAS_SRC`]); the kernel's IPv6 source address
/// selection alone cost about 800 ns a packet, a FIB lookup for NAT or DR about 250 ns.
#[repr(C)]
pub struct NextHop6 {
    pub expires_ns: u64,
    pub dst: [u32; 4],
    pub src_key: [u32; 4],
    pub iif: u32,
    pub epoch: u32,
    pub flags: u32,
    pub _pad: u32,
    pub p: FibParams,
    /// To 128 bytes: an entry then never straddles more cache lines than it must.
    pub _pad2: [u32; 2],
}
const _: () = assert!(core::mem::size_of::<NextHop6>() == 128);

/// Slots per CPU (a power of two; 128 bytes each): enough that a thousand clients' replies
/// rarely collide.
const SLOTS6: u32 = 4096;
const SLOT6_SHIFT: u32 = 32 - 12;
const _: () = assert!(1 << (32 - SLOT6_SHIFT) == SLOTS6);

#[map]
static NEXT_HOPS6: PerCpuArray<NextHop6> = PerCpuArray::with_max_entries(SLOTS6, 0);

#[inline(always)]
fn slot6(dst: &[u32; 4], src_key: &[u32; 4], iif: u32) -> u32 {
    (dst[0] ^ dst[1] ^ dst[2] ^ dst[3] ^ (src_key[0] ^ src_key[1] ^ src_key[2] ^ src_key[3]).rotate_left(16) ^ iif)
        .wrapping_mul(0x9E37_79B1)
        >> SLOT6_SHIFT
}

/// The cached lookup result towards `dst` (from `src_key`, all zero towards a real server),
/// if live, its MTU takes `len` bytes (0: no check) and it has every flag in `need`.
#[inline(always)]
pub fn get6(dst: &[u32; 4], src_key: &[u32; 4], iif: u32, now: u64, len: u16, need: u32) -> Option<&'static FibParams> {
    let e = NEXT_HOPS6.get(slot6(dst, src_key, iif))?;
    (e.dst == *dst
        && e.src_key == *src_key
        && e.iif == iif
        && e.expires_ns > now
        && e.epoch == epoch()
        && len <= e.p.tot_len
        && e.flags & need == need)
        .then_some(&e.p)
}

/// Records a successful lookup; `flags`: [`HAS_SRC`] when it was made with
/// `BPF_FIB_LOOKUP_SRC`.
#[inline(always)]
pub fn put6(dst: &[u32; 4], src_key: &[u32; 4], iif: u32, p: &FibParams, flags: u32, now: u64) {
    let Some(e) = NEXT_HOPS6.get_ptr_mut(slot6(dst, src_key, iif)) else { return };
    unsafe {
        (*e).expires_ns = now + TTL_NS;
        (*e).dst = *dst;
        (*e).src_key = *src_key;
        (*e).iif = iif;
        (*e).epoch = epoch();
        (*e).flags = flags;
        (*e).p.family = p.family;
        (*e).p.l4_protocol = p.l4_protocol;
        (*e).p.tot_len = p.tot_len;
        (*e).p.ifindex = p.ifindex;
        (*e).p.src = p.src;
        (*e).p.dst = p.dst;
        (*e).p.smac = p.smac;
        (*e).p.dmac = p.dmac;
    }
}
