//! The real servers' side of `-i` tunnelling: a TC ingress program that removes the outer
//! IPv4 header of IP-in-IP packets addressed to this host and lets the inner packet (client ->
//! VIP) go on into the stack, for hosts without the ipip module. Its own object: lvsd loads it
//! only for `lvsd decap`, never on a director.
//!
//! Which packets: Ethernet + IPv4 without options or fragmentation, protocol 4, destination one
//! of the addresses in `DECAP_ADDRS` (filled by `lvsd decap`; the kernel's FIB lookup cannot
//! tell "local" here: it refuses to run on interfaces that do not forward), and an inner IPv4
//! header; or Ethernet + IPv6 with next header 41 (IPv6-in-IPv6, as the director builds it:
//! no extension headers), destination one of `DECAP_ADDRS6`, and an inner IPv6 header.
//! Everything else passes untouched. Every IP-in-IP packet bumps one `DECAP_STATS`
//! counter; other traffic is not counted.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_DECAP_L3_IPV4, BPF_F_ADJ_ROOM_DECAP_L3_IPV6, TC_ACT_OK,
        TC_ACT_SHOT,
    },
    macros::{classifier, map},
    maps::{HashMap, PerCpuArray},
    programs::TcContext,
};
use lvs_common::fwd::{decap_counter, IPIP_OVERHEAD, IPPROTO_IPIP};

/// Outer destination addresses this host decapsulates for (IPv4, network order) -> 1.
#[map]
static DECAP_ADDRS: HashMap<u32, u32> = HashMap::with_max_entries(256, 0);

/// The same for IPv6 outer destinations (four network-order words).
#[map]
static DECAP_ADDRS6: HashMap<[u32; 4], u32> = HashMap::with_max_entries(256, 0);

/// Per-CPU counters, indexed by `decap_counter`.
#[map]
static DECAP_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(decap_counter::COUNT, 0);

const ETH_LEN: usize = 14;
/// ETH_P_IP as it sits in the frame.
const ETH_P_IP_BE: u16 = 0x0800u16.to_be();
const ETH_P_IPV6_BE: u16 = 0x86ddu16.to_be();
/// The outer IPv6 header of an IPv6-in-IPv6 packet, and its next header value.
const IPV6_HLEN: usize = 40;
const NEXTHDR_IPV6: u8 = 41;

#[classifier]
pub fn lvs_decap(ctx: TcContext) -> i32 {
    let (c, verdict) = decap(&ctx);
    if let Some(p) = DECAP_STATS.get_ptr_mut(c) {
        // Per-CPU slot: a plain add is enough.
        unsafe { *p += 1 };
    }
    verdict
}

#[inline(always)]
fn decap(ctx: &TcContext) -> (u32, i32) {
    let pass = (u32::MAX, TC_ACT_OK as i32);
    let start = ctx.data();
    let end = ctx.data_end();
    // Ethernet + outer IPv4 (20) + the inner header's first byte.
    if start + ETH_LEN + 21 > end {
        return pass;
    }
    let eth_type = unsafe { *((start + 12) as *const u16) };
    if eth_type == ETH_P_IPV6_BE {
        return decap6(ctx);
    }
    if eth_type != ETH_P_IP_BE {
        return pass;
    }
    let outer = unsafe { *((start + ETH_LEN) as *const [u8; 20]) };
    if outer[9] != IPPROTO_IPIP {
        return pass;
    }
    let dst = u32::from_ne_bytes([outer[16], outer[17], outer[18], outer[19]]);
    if unsafe { DECAP_ADDRS.get(&dst) }.is_none() {
        return (decap_counter::PASS_NOT_LOCAL, TC_ACT_OK as i32);
    }
    let inner_version = unsafe { *((start + ETH_LEN + IPIP_OVERHEAD as usize) as *const u8) } >> 4;
    // Options (IHL > 5) or a fragment (MF or an offset): the outer header is not the plain one
    // the director builds; the kernel gets it as it is.
    let frag = u16::from_be_bytes([outer[6], outer[7]]) & 0x3fff;
    if outer[0] != 0x45 || frag != 0 || inner_version != 4 {
        return (decap_counter::PASS_UNSUPPORTED, TC_ACT_OK as i32);
    }
    // Removes the 20 bytes after the MAC header, i.e. the outer IPv4 header; the Ethernet type
    // stays IPv4. The decap flag tells the kernel the packet is no longer encapsulated (GSO
    // and checksum state follow).
    let r = ctx.adjust_room(
        -(IPIP_OVERHEAD as i32),
        BPF_ADJ_ROOM_MAC,
        BPF_F_ADJ_ROOM_DECAP_L3_IPV4 as u64,
    );
    if r.is_err() {
        return (decap_counter::DROP_ADJUST_FAILED, TC_ACT_SHOT as i32);
    }
    (decap_counter::DECAPSULATED, TC_ACT_OK as i32)
}

/// IPv6-in-IPv6: the same for a 40-byte outer IPv6 header.
#[inline(always)]
fn decap6(ctx: &TcContext) -> (u32, i32) {
    let pass = (u32::MAX, TC_ACT_OK as i32);
    let start = ctx.data();
    // Ethernet + outer IPv6 (40) + the inner header's first byte.
    if start + ETH_LEN + IPV6_HLEN + 1 > ctx.data_end() {
        return pass;
    }
    let outer = (start + ETH_LEN) as *const u8;
    if unsafe { *outer.add(6) } != NEXTHDR_IPV6 {
        return pass;
    }
    // Four 32-bit loads (the header is 2-byte aligned in the frame; unaligned loads are fine
    // for TC programs where the architecture allows them).
    let d = unsafe { outer.add(24) } as *const u32;
    let dst = unsafe { [*d, *d.add(1), *d.add(2), *d.add(3)] };
    if unsafe { DECAP_ADDRS6.get(&dst) }.is_none() {
        return (decap_counter::PASS_NOT_LOCAL, TC_ACT_OK as i32);
    }
    if unsafe { *outer.add(IPV6_HLEN) } >> 4 != 6 {
        return (decap_counter::PASS_UNSUPPORTED, TC_ACT_OK as i32);
    }
    if ctx.adjust_room(-(IPV6_HLEN as i32), BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_DECAP_L3_IPV6 as u64).is_err() {
        return (decap_counter::DROP_ADJUST_FAILED, TC_ACT_SHOT as i32);
    }
    (decap_counter::DECAPSULATED, TC_ACT_OK as i32)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
