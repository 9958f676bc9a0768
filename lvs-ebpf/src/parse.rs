//! Header parsing: Ethernet -> IPv4 (with options) -> TCP/UDP, behind one bounds-checked
//! accessor.

use aya_ebpf::programs::XdpContext;
use lvs_common::counters::Counter;
use network_types::{eth::EthHdr, ip::Ipv4Hdr, tcp::TcpHdr, udp::UdpHdr};

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
/// ETH_P_IP as it sits in the frame (network order); `EthHdr::ether_type` is a raw u16.
pub const ETH_P_IP_BE: u16 = 0x0800u16.to_be();

/// ETH_P_IPV6 as it sits in the frame.
pub const ETH_P_IPV6_BE: u16 = 0x86ddu16.to_be();

/// Whether the frame is IPv6 (for the tail call to the IPv6 program).
#[inline(always)]
pub fn is_ipv6(ctx: &XdpContext) -> bool {
    match ptr_at::<EthHdr>(ctx, 0) {
        Some(eth) => (unsafe { (*eth).ether_type }) == ETH_P_IPV6_BE,
        None => false,
    }
}

/// A pointer to a `T` at `off` bytes into the frame, if the whole `T` is inside it.
///
/// The verifier needs to see `data + off + size <= data_end` before every dereference; `off`
/// may be variable (IHL x 4) as long as it is bounded.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + off) as *mut T)
}

/// A parsed IPv4 TCP/UDP packet: pointers into the frame plus the fields every path needs.
pub struct Packet {
    pub eth: *mut EthHdr,
    pub ip: *mut Ipv4Hdr,
    /// Start of the TCP or UDP header.
    pub l4: *mut u8,
    pub proto: u8,
    /// Raw addresses and ports, network order.
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    /// TCP flags byte (0 for UDP).
    pub tcp_flags: u8,
    /// IP total length, host order: what IPVS counts as the packet's bytes (`skb->len`).
    pub tot_len: u16,
}

impl Packet {
    /// A packet whose ports are not at `l4` (a later fragment, an ICMP message): ports and
    /// TCP flags zero, as the FIB lookups and counters then see them.
    #[inline(always)]
    pub fn without_ports(
        eth: *mut EthHdr,
        ip: *mut Ipv4Hdr,
        l4: *mut u8,
        proto: u8,
        saddr: u32,
        daddr: u32,
        tot_len: u16,
    ) -> Packet {
        Packet { eth, ip, l4, proto, saddr, daddr, sport: 0, dport: 0, tcp_flags: 0, tot_len }
    }
}

/// Parses the frame, or says which pass counter applies to it. Nothing here drops: traffic we
/// do not understand belongs to the kernel.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Packet, Counter> {
    let eth: *mut EthHdr = ptr_at(ctx, 0).ok_or(Counter::PassNotIp)?;
    if unsafe { (*eth).ether_type } != ETH_P_IP_BE {
        return Err(Counter::PassNotIp);
    }
    let ip: *mut Ipv4Hdr = ptr_at(ctx, EthHdr::LEN).ok_or(Counter::PassMalformed)?;
    let vihl = unsafe { (*ip).vihl };
    let ihl = (vihl & 0x0f) as usize;
    if vihl >> 4 != 4 || ihl < 5 {
        return Err(Counter::PassMalformed);
    }
    let ip_len = ihl * 4;
    let tot_len = u16::from_be_bytes(unsafe { (*ip).tot_len }) as usize;
    if tot_len < ip_len || ctx.data() + EthHdr::LEN + tot_len > ctx.data_end() {
        return Err(Counter::PassMalformed);
    }
    // A non-zero offset: a later fragment, without ports. `lvs_xdp` hands it to the fragment
    // program (frag.rs). A first fragment (offset 0, MF) carries the transport header and
    // goes on as any packet; frag.rs records where it is sent.
    if u16::from_be_bytes(unsafe { (*ip).frags }) & 0x1fff != 0 {
        return Err(Counter::PassFragment);
    }
    let proto = unsafe { (*ip).proto };
    let l4_off = EthHdr::LEN + ip_len;
    let (l4, tcp_flags) = match proto {
        IPPROTO_TCP => {
            let tcp: *mut TcpHdr = ptr_at(ctx, l4_off).ok_or(Counter::PassMalformed)?;
            // Byte 13 of the TCP header holds CWR..FIN.
            let flags = unsafe { *(tcp as *const u8).add(13) };
            (tcp as *mut u8, flags)
        }
        IPPROTO_UDP => {
            let udp: *mut UdpHdr = ptr_at(ctx, l4_off).ok_or(Counter::PassMalformed)?;
            (udp as *mut u8, 0)
        }
        _ => return Err(Counter::PassNotTcpUdp),
    };
    // Source and destination ports are the first two 16-bit words of both TCP and UDP.
    let ports = l4 as *const [u8; 4];
    let p = unsafe { *ports };
    Ok(Packet {
        eth,
        ip,
        l4,
        proto,
        saddr: u32::from_ne_bytes(unsafe { (*ip).src_addr }),
        daddr: u32::from_ne_bytes(unsafe { (*ip).dst_addr }),
        sport: u16::from_ne_bytes([p[0], p[1]]),
        dport: u16::from_ne_bytes([p[2], p[3]]),
        tcp_flags,
        tot_len: tot_len as u16,
    })
}
