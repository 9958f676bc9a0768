//! The real servers' side of `-i` tunnelling: a TC ingress program that removes the outer
//! headers of tunnelled packets addressed to this host and lets the inner packet (client ->
//! VIP) go on into the stack, for hosts without the ipip, ip6_tunnel, fou and GRE modules. Its
//! own object: lvsd loads it only for `lvsd decap`, never on a director.
//!
//! Which packets: Ethernet + an outer IPv4 header (without options or fragmentation) or IPv6
//! header (without extension headers) whose destination is one of `DECAP_ADDRS` /
//! `DECAP_ADDRS6` (filled by `lvsd decap`; the kernel's FIB lookup cannot tell "local" here:
//! it refuses to run on interfaces that do not forward), carrying
//! - IP-in-IP: protocol 4 (IPv4 inside) or 41 (IPv6 inside), either outer family;
//! - GRE (47) with no flags or only the checksum bit, protocol 0x0800 or 0x86dd;
//! - GUE: UDP to one of `DECAP_GUE_PORTS`, a 4-byte version-0 data header without options,
//!   protocol 4 or 41;
//! and an inner header of the announced family. Outer checksums (GRE's, GUE's UDP) are not
//! checked: the inner transport checksum still is, by the stack. Everything else passes
//! untouched. Every tunnelled packet bumps one `DECAP_STATS` counter; other traffic is not
//! counted.
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
use lvs_common::fwd::{decap_counter, IPPROTO_IPIP};

/// Outer destination addresses this host decapsulates for (IPv4, network order) -> 1.
#[map]
static DECAP_ADDRS: HashMap<u32, u32> = HashMap::with_max_entries(256, 0);

/// The same for IPv6 outer destinations (four network-order words).
#[map]
static DECAP_ADDRS6: HashMap<[u32; 4], u32> = HashMap::with_max_entries(256, 0);

/// GUE destination ports (network order) -> 1: UDP to these ports is GUE (`--gue-port`).
#[map]
static DECAP_GUE_PORTS: HashMap<u16, u32> = HashMap::with_max_entries(64, 0);

/// Per-CPU counters, indexed by `decap_counter`.
#[map]
static DECAP_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(decap_counter::COUNT, 0);

const ETH_LEN: usize = 14;
/// ETH_P_IP as it sits in the frame.
const ETH_P_IP_BE: u16 = 0x0800u16.to_be();
const ETH_P_IPV6_BE: u16 = 0x86ddu16.to_be();
const IPV4_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
/// IPv6 inside (IP-in-IP or GUE's protocol byte).
const NEXTHDR_IPV6: u8 = 41;
const IPPROTO_GRE: u8 = 47;
const IPPROTO_UDP: u8 = 17;

#[classifier]
pub fn lvs_decap(ctx: TcContext) -> i32 {
    let (c, verdict) = decap(&ctx);
    if let Some(p) = DECAP_STATS.get_ptr_mut(c) {
        // Per-CPU slot: a plain add is enough.
        unsafe { *p += 1 };
    }
    verdict
}

const PASS: (u32, i32) = (u32::MAX, TC_ACT_OK as i32);

/// What the outer headers say: bytes to remove after the Ethernet header, and whether the
/// inner packet is IPv6.
struct Tunnel {
    strip: usize,
    inner_v6: bool,
}

#[inline(always)]
fn decap(ctx: &TcContext) -> (u32, i32) {
    let start = ctx.data();
    if start + ETH_LEN > ctx.data_end() {
        return PASS;
    }
    let eth_type = unsafe { *((start + 12) as *const u16) };
    let t = if eth_type == ETH_P_IP_BE {
        match outer4(ctx) {
            Ok(t) => t,
            Err(r) => return r,
        }
    } else if eth_type == ETH_P_IPV6_BE {
        match outer6(ctx) {
            Ok(t) => t,
            Err(r) => return r,
        }
    } else {
        return PASS;
    };
    // The first byte of the inner header must say what the outer headers announced.
    let inner = start + ETH_LEN + t.strip;
    if inner + 1 > ctx.data_end() {
        return (decap_counter::PASS_UNSUPPORTED, TC_ACT_OK as i32);
    }
    let version = unsafe { *(inner as *const u8) } >> 4;
    if version != if t.inner_v6 { 6 } else { 4 } {
        return (decap_counter::PASS_UNSUPPORTED, TC_ACT_OK as i32);
    }
    // Removes the outer headers after the MAC header. The decap flag names the inner family
    // (the kernel sets the packet's protocol from it, and resets GSO and checksum state).
    let flag = if t.inner_v6 { BPF_F_ADJ_ROOM_DECAP_L3_IPV6 } else { BPF_F_ADJ_ROOM_DECAP_L3_IPV4 };
    if ctx.adjust_room(-(t.strip as i32), BPF_ADJ_ROOM_MAC, flag as u64).is_err() {
        return (decap_counter::DROP_ADJUST_FAILED, TC_ACT_SHOT as i32);
    }
    // IPv4 in IPv6 or the reverse: the Ethernet type follows the inner header, for anything
    // that reads the frame rather than the packet's protocol.
    let want = if t.inner_v6 { ETH_P_IPV6_BE } else { ETH_P_IP_BE };
    if want != eth_type && ctx.store(12, &want, 0).is_err() {
        return (decap_counter::DROP_ADJUST_FAILED, TC_ACT_SHOT as i32);
    }
    (decap_counter::DECAPSULATED, TC_ACT_OK as i32)
}

/// An outer IPv4 header without options or fragmentation, addressed to this host, carrying
/// IP-in-IP (4, 41), GRE or GUE.
#[inline(always)]
fn outer4(ctx: &TcContext) -> Result<Tunnel, (u32, i32)> {
    let start = ctx.data();
    if start + ETH_LEN + IPV4_HLEN > ctx.data_end() {
        return Err(PASS);
    }
    let outer = unsafe { *((start + ETH_LEN) as *const [u8; 20]) };
    let proto = outer[9];
    if !matches!(proto, IPPROTO_IPIP | NEXTHDR_IPV6 | IPPROTO_GRE | IPPROTO_UDP) {
        return Err(PASS);
    }
    let t = tunnel(ctx, proto, ETH_LEN + IPV4_HLEN)?;
    let dst = u32::from_ne_bytes([outer[16], outer[17], outer[18], outer[19]]);
    if unsafe { DECAP_ADDRS.get(&dst) }.is_none() {
        return Err((decap_counter::PASS_NOT_LOCAL, TC_ACT_OK as i32));
    }
    // Options (IHL > 5) or a fragment (MF or an offset): the outer header is not the plain one
    // the director builds; the kernel gets it as it is.
    let frag = u16::from_be_bytes([outer[6], outer[7]]) & 0x3fff;
    if outer[0] != 0x45 || frag != 0 {
        return Err((decap_counter::PASS_UNSUPPORTED, TC_ACT_OK as i32));
    }
    Ok(Tunnel { strip: IPV4_HLEN + t.strip, inner_v6: t.inner_v6 })
}

/// An outer IPv6 header without extension headers, addressed to this host, carrying
/// IP-in-IP (41, 4), GRE or GUE.
#[inline(always)]
fn outer6(ctx: &TcContext) -> Result<Tunnel, (u32, i32)> {
    let start = ctx.data();
    if start + ETH_LEN + IPV6_HLEN > ctx.data_end() {
        return Err(PASS);
    }
    let outer = (start + ETH_LEN) as *const u8;
    let next = unsafe { *outer.add(6) };
    if !matches!(next, IPPROTO_IPIP | NEXTHDR_IPV6 | IPPROTO_GRE | IPPROTO_UDP) {
        return Err(PASS);
    }
    let t = tunnel(ctx, next, ETH_LEN + IPV6_HLEN)?;
    // Four 32-bit loads (the header is 2-byte aligned in the frame; unaligned loads are fine
    // for TC programs where the architecture allows them).
    let d = unsafe { outer.add(24) } as *const u32;
    let dst = unsafe { [*d, *d.add(1), *d.add(2), *d.add(3)] };
    if unsafe { DECAP_ADDRS6.get(&dst) }.is_none() {
        return Err((decap_counter::PASS_NOT_LOCAL, TC_ACT_OK as i32));
    }
    Ok(Tunnel { strip: IPV6_HLEN + t.strip, inner_v6: t.inner_v6 })
}

/// The tunnel header at `off` (after the outer IP header) for outer protocol `proto`: its
/// length and the inner family. UDP that is not to a GUE port passes uncounted (it is
/// ordinary traffic).
#[inline(always)]
fn tunnel(ctx: &TcContext, proto: u8, off: usize) -> Result<Tunnel, (u32, i32)> {
    let unsupported = (decap_counter::PASS_UNSUPPORTED, TC_ACT_OK as i32);
    match proto {
        IPPROTO_IPIP => Ok(Tunnel { strip: 0, inner_v6: false }),
        NEXTHDR_IPV6 => Ok(Tunnel { strip: 0, inner_v6: true }),
        IPPROTO_GRE => {
            // RFC 2784: flags and version (the C bit alone, or nothing), the protocol, and
            // with C the checksum and a reserved word. Keys and sequence numbers (RFC 2890)
            // are not what the director sends.
            let start = ctx.data();
            if start + off + 4 > ctx.data_end() {
                return Err(unsupported);
            }
            let h = unsafe { *((start + off) as *const [u8; 4]) };
            let len = match (h[0], h[1]) {
                (0, 0) => 4,
                (0x80, 0) => 8,
                _ => return Err(unsupported),
            };
            match u16::from_be_bytes([h[2], h[3]]) {
                0x0800 => Ok(Tunnel { strip: len, inner_v6: false }),
                0x86dd => Ok(Tunnel { strip: len, inner_v6: true }),
                _ => Err(unsupported),
            }
        }
        _ => {
            // UDP: GUE only to a configured port.
            let start = ctx.data();
            if start + off + 12 > ctx.data_end() {
                return Err(PASS);
            }
            let h = unsafe { *((start + off) as *const [u8; 12]) };
            let dport = u16::from_ne_bytes([h[2], h[3]]);
            if unsafe { DECAP_GUE_PORTS.get(&dport) }.is_none() {
                return Err(PASS);
            }
            // GUE version 0, a data message (C = 0) without options (hlen 0); the protocol
            // byte names the inner family.
            if h[8] != 0 {
                return Err(unsupported);
            }
            match h[9] {
                IPPROTO_IPIP => Ok(Tunnel { strip: 12, inner_v6: false }),
                NEXTHDR_IPV6 => Ok(Tunnel { strip: 12, inner_v6: true }),
                _ => Err(unsupported),
            }
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
