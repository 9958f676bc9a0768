//! ICMP errors the director itself sends.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_redirect, bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use lvs_common::{
    counters::Counter,
    csum::{fold, ipv4_header},
};
use network_types::eth::EthHdr;

use crate::parse::{ptr_at, Packet};

/// Outer IPv4 header + ICMP header put in front of the quoted packet.
const PREPEND: i32 = 20 + 8;
/// How much of the offending packet's payload an ICMP error quotes (RFC 792): 8 bytes, which
/// carry the ports.
const QUOTED_L4: usize = 8;
/// The longest quoted part: an IPv4 header with options (60) + 8.
const MAX_QUOTE: usize = 60 + QUOTED_L4;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_PORT_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
/// `icmp_send` marks its errors as network control traffic (IPTOS_PREC_INTERNETCONTROL).
const TOS_INTERNETCONTROL: u8 = 0xc0;

/// Turns the packet into ICMP port unreachable from the VIP back to the client and sends it out
/// the way it came: a redirect to the ingress interface rather than XDP_TX, because native
/// XDP_TX on a veth did not deliver to the peer here while redirects into it do. IPVS does the same when its scheduler finds no real server
/// (`icmp_send(skb, ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, 0)`), so a client is refused at once
/// instead of retrying into silence. Within the kernel's global ICMP budget ([`within_budget`]);
/// the answer is never larger than 110 bytes.
#[inline(always)]
pub fn port_unreachable(ctx: &XdpContext, pkt: &Packet) -> Counter {
    if !within_budget() {
        return Counter::DropIcmpRateLimited;
    }
    // A failure half way leaves a mangled frame: it is dropped, as IPVS drops the packet.
    build(ctx, pkt, ICMP_PORT_UNREACH, 0).map_or(Counter::DropNoDest, |()| Counter::TxIcmpUnreachable)
}

/// Whether one more ICMP error may be sent now (lvs-common icmp_limit.rs: the kernel's
/// `icmp_msgs_per_sec`/`icmp_msgs_burst`, per CPU). Port unreachable only: fragmentation
/// needed and packet too big are exempt, as in the kernel. Shared with the IPv6 errors, as the
/// kernel's budget is.
#[inline(always)]
pub fn within_budget() -> bool {
    match crate::maps::ICMP_BUDGET.get_ptr_mut(0) {
        Some(b) => unsafe { (*b).take(crate::conntrack::now_ns()) },
        None => false,
    }
}

/// Turns the packet into ICMP fragmentation needed from the VIP back to the client, with
/// `mtu` (host order) as the next-hop MTU: IPVS's `ensure_mtu_is_adequate` for a packet with
/// DF that would not fit towards its real server once tunnelled, the MTU being the path's minus
/// the outer header. The client's stack lowers its path MTU for the VIP and sends smaller
/// segments. Same plumbing as [`port_unreachable`].
#[inline(always)]
pub fn frag_needed(ctx: &XdpContext, pkt: &Packet, mtu: u16) -> Counter {
    build(ctx, pkt, ICMP_FRAG_NEEDED, mtu).map_or(Counter::DropNoRoute, |()| Counter::TxIcmpFragNeeded)
}

/// `code` of ICMP destination unreachable; `mtu` goes in the header's last 16 bits (RFC 1191;
/// zero for every other code).
#[inline(always)]
fn build(ctx: &XdpContext, pkt: &Packet, code: u8, mtu: u16) -> Option<()> {
    let (src_mac, dst_mac, tos, ihl) = unsafe {
        let e = &*pkt.eth;
        (e.src_addr, e.dst_addr, (*pkt.ip).tos, ((*pkt.ip).vihl & 0x0f) as usize)
    };
    let quote = ihl * 4 + QUOTED_L4;
    if quote > MAX_QUOTE {
        return None;
    }
    // Keep Ethernet + the quoted part only, then make room in front for the new headers.
    let keep = EthHdr::LEN + quote;
    let delta = keep as i32 - (ctx.data_end() - ctx.data()) as i32;
    if delta > 0 || unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
        return None;
    }
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -PREPEND) } != 0 {
        return None;
    }
    // Every pointer is derived again after the adjustments.
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    let ip: *mut [u8; 20] = ptr_at(ctx, EthHdr::LEN)?;
    let icmp: *mut [u8; 8] = ptr_at(ctx, EthHdr::LEN + 20)?;
    unsafe {
        (*eth).dst_addr = src_mac;
        (*eth).src_addr = dst_mac;
        (*eth).ether_type = 0x0800u16.to_be();

        let tot_len = (20 + 8 + quote) as u16;
        // TTL 64, the kernel's default; from the VIP to the client.
        let h = ipv4_header((tos & 0x1e) | TOS_INTERNETCONTROL, tot_len, [0, 0], 0, 64, 1, pkt.daddr, pkt.saddr);
        *ip = h;

        let m = mtu.to_be_bytes();
        *icmp = [ICMP_DEST_UNREACH, code, 0, 0, 0, 0, m[0], m[1]];
    }
    // ICMP checksum over its header and the quoted packet, one 16-bit word at a time with a
    // bounds check each (the quote's length depends on the original IHL).
    let base = EthHdr::LEN + 20;
    let words = (8 + quote) / 2;
    let mut sum = 0u32;
    for i in 0..(8 + MAX_QUOTE) / 2 {
        if i >= words {
            break;
        }
        let w: *const [u8; 2] = ptr_at(ctx, base + i * 2)?;
        sum += unsafe { u16::from_ne_bytes(*w) } as u32;
    }
    let c = (!fold(sum)).to_ne_bytes();
    unsafe {
        (*icmp)[2] = c[0];
        (*icmp)[3] = c[1];
        if bpf_redirect(ctx.ingress_ifindex() as u32, 0) as u32 != xdp_action::XDP_REDIRECT {
            return None;
        }
    }
    Some(())
}
