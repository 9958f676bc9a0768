//! Ethernet/IPv4/TCP/UDP frames built from scratch with full checksums, independent of the
//! dataplane's incremental updates: a wrong update shows up as a byte mismatch.

use lvs_common::csum;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

/// An IPv4 header to build.
#[derive(Clone, Debug)]
pub struct Ip {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub ttl: u8,
    /// Option bytes, a multiple of 4.
    pub options: Vec<u8>,
    /// Flags and fragment offset (host order); 0x4000 is DF.
    pub frag: u16,
}

impl Ip {
    pub fn new(src: [u8; 4], dst: [u8; 4]) -> Self {
        Ip { src, dst, ttl: 64, options: Vec::new(), frag: 0x4000 }
    }

    pub fn with_ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }
}

fn pseudo_sum(ip: &Ip, proto: u8, l4_len: usize) -> u32 {
    let mut ph = Vec::new();
    ph.extend_from_slice(&ip.src);
    ph.extend_from_slice(&ip.dst);
    ph.extend_from_slice(&[0, proto]);
    ph.extend_from_slice(&(l4_len as u16).to_be_bytes());
    csum::sum_words(&ph, 0)
}

/// Ethernet + IPv4 (with a full header checksum) around an already built L4 segment.
pub fn frame(dst_mac: [u8; 6], src_mac: [u8; 6], ip: &Ip, proto: u8, l4: Vec<u8>) -> Vec<u8> {
    let ihl = 20 + ip.options.len();
    assert_eq!(ihl % 4, 0, "IPv4 options must fill 32-bit words");
    let tot = ihl + l4.len();
    let mut h = vec![
        0x40 | (ihl / 4) as u8,
        0,
        (tot >> 8) as u8,
        tot as u8,
        0x12,
        0x34,
        (ip.frag >> 8) as u8,
        ip.frag as u8,
        ip.ttl,
        proto,
        0,
        0,
    ];
    h.extend_from_slice(&ip.src);
    h.extend_from_slice(&ip.dst);
    h.extend_from_slice(&ip.options);
    let c = csum::checksum(&h);
    h[10..12].copy_from_slice(&c.to_ne_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&h);
    f.extend_from_slice(&l4);
    f
}

/// A TCP segment (20-byte header, sequence 1000, ack 2000 when ACK is set) with its checksum
/// over the pseudo-header of `ip`.
pub fn tcp(ip: &Ip, sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&1000u32.to_be_bytes());
    t.extend_from_slice(&(if flags & TCP_ACK != 0 { 2000u32 } else { 0 }).to_be_bytes());
    t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    let c = !csum::fold(csum::sum_words(&t, pseudo_sum(ip, 6, t.len())));
    t[16..18].copy_from_slice(&c.to_ne_bytes());
    t
}

/// A UDP datagram with its checksum over the pseudo-header of `ip`.
pub fn udp(ip: &Ip, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let mut c = !csum::fold(csum::sum_words(&u, pseudo_sum(ip, 17, len)));
    // A computed zero goes on the wire as all ones (RFC 768).
    if c == 0 {
        c = 0xffff;
    }
    u[6..8].copy_from_slice(&c.to_ne_bytes());
    u
}

/// The ICMP port unreachable a director answers `orig` (an Ethernet/IPv4 frame from a client)
/// with, as Linux's `icmp_send` builds it: from the original destination to the original
/// source, TOS of the original with precedence "internetwork control", TTL 64, ID 0, no DF,
/// quoting the original IP header and the first 8 bytes after it.
pub fn icmp_port_unreachable(orig: &[u8]) -> Vec<u8> {
    icmp_unreachable(orig, 3, 0)
}

/// The same with code 4, fragmentation needed, and `mtu` as the next-hop MTU (RFC 1191).
pub fn icmp_frag_needed(orig: &[u8], mtu: u16) -> Vec<u8> {
    icmp_unreachable(orig, 4, mtu)
}

fn icmp_unreachable(orig: &[u8], code: u8, mtu: u16) -> Vec<u8> {
    let ip = &orig[14..];
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    let quote = &ip[..ihl + 8];
    let m = mtu.to_be_bytes();
    let mut icmp = vec![3, code, 0, 0, 0, 0, m[0], m[1]];
    icmp.extend_from_slice(quote);
    let c = csum::checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_ne_bytes());
    let tot = 20 + icmp.len();
    let mut h = vec![0x45, (ip[1] & 0x1e) | 0xc0, (tot >> 8) as u8, tot as u8, 0, 0, 0, 0, 64, 1, 0, 0];
    h.extend_from_slice(&ip[16..20]);
    h.extend_from_slice(&ip[12..16]);
    let c = csum::checksum(&h);
    h[10..12].copy_from_slice(&c.to_ne_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&orig[6..12]);
    f.extend_from_slice(&orig[0..6]);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&h);
    f.extend_from_slice(&icmp);
    f
}

/// `inner` (an Ethernet/IPv4 frame) encapsulated in IP-in-IP as the director sends it towards
/// a TUN real server: new MACs, an outer IPv4 header from `src` to `dst` (protocol 4, no
/// options) with `ttl`, `id`, the inner TOS and the inner DF bit, full checksum.
pub fn ipip_frame(dst_mac: [u8; 6], src_mac: [u8; 6], src: [u8; 4], dst: [u8; 4], ttl: u8, id: u16, inner: &[u8]) -> Vec<u8> {
    let ip = &inner[14..];
    let tot = 20 + ip.len();
    let df = ip[6] & 0x40;
    let idb = id.to_be_bytes();
    let mut h = vec![0x45, ip[1], (tot >> 8) as u8, tot as u8, idb[0], idb[1], df, 0, ttl, 4, 0, 0];
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let c = csum::checksum(&h);
    h[10..12].copy_from_slice(&c.to_ne_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&h);
    f.extend_from_slice(ip);
    f
}

/// A whole Ethernet/IPv4/TCP frame.
pub fn tcp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    ip: Ip,
    sport: u16,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let l4 = tcp(&ip, sport, dport, flags, payload);
    frame(dst_mac, src_mac, &ip, 6, l4)
}

/// A whole Ethernet/IPv4/UDP frame.
pub fn udp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    ip: Ip,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let l4 = udp(&ip, sport, dport, payload);
    frame(dst_mac, src_mac, &ip, 17, l4)
}

/// Bytes as hex, 16 to a line, for failure messages.
pub fn hex(b: &[u8]) -> String {
    b.chunks(16)
        .map(|c| c.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n    ")
}

/// One's-complement sum of the IPv6 pseudo-header (RFC 8200 8.1) of an upper-layer packet of
/// `len` bytes with next header `next`.
pub fn pseudo6_sum(src: &[u8; 16], dst: &[u8; 16], len: usize, next: u8) -> u32 {
    let mut ph = Vec::new();
    ph.extend_from_slice(src);
    ph.extend_from_slice(dst);
    ph.extend_from_slice(&(len as u32).to_be_bytes());
    ph.extend_from_slice(&[0, 0, 0, next]);
    csum::sum_words(&ph, 0)
}

/// A whole Ethernet/IPv6/TCP frame (no extension headers, traffic class 0, flow label 0),
/// the TCP checksum over the IPv6 pseudo-header.
#[allow(clippy::too_many_arguments)]
pub fn tcp6_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
    hop_limit: u8,
    sport: u16,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&1000u32.to_be_bytes());
    t.extend_from_slice(&(if flags & TCP_ACK != 0 { 2000u32 } else { 0 }).to_be_bytes());
    t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    let c = !csum::fold(csum::sum_words(&t, pseudo6_sum(&src, &dst, t.len(), 6)));
    t[16..18].copy_from_slice(&c.to_ne_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(t.len() as u16).to_be_bytes());
    f.extend_from_slice(&[6, hop_limit]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&t);
    f
}

/// An ICMP error frame: type `ty`, `code`, the header's last four bytes `rest` (the next-hop
/// MTU of fragmentation needed, else zero), quoting `quote`, with full ICMP and IP checksums.
pub fn icmp_error_frame(dst_mac: [u8; 6], src_mac: [u8; 6], ip: &Ip, ty: u8, code: u8, rest: [u8; 4], quote: &[u8]) -> Vec<u8> {
    let mut icmp = vec![ty, code, 0, 0];
    icmp.extend_from_slice(&rest);
    icmp.extend_from_slice(quote);
    let c = csum::checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_ne_bytes());
    frame(dst_mac, src_mac, ip, 1, icmp)
}

/// What an ICMP error about the Ethernet/IPv4 frame `f` quotes: its IP header and the first
/// 8 bytes after it.
pub fn quote_of(f: &[u8]) -> Vec<u8> {
    let ihl = ((f[14] & 0x0f) as usize) * 4;
    f[14..14 + ihl + 8].to_vec()
}

/// `quote` with its source (`src`) or destination (`dst`) address and port replaced and its IP
/// header checksum recomputed in full; the transport bytes after the ports stay as they are
/// (the quoted TCP/UDP checksum is not updated, as by the kernel).
pub fn requote(quote: &[u8], src: Option<([u8; 4], u16)>, dst: Option<([u8; 4], u16)>) -> Vec<u8> {
    let mut q = quote.to_vec();
    let ihl = ((q[0] & 0x0f) as usize) * 4;
    if let Some((a, p)) = src {
        q[12..16].copy_from_slice(&a);
        q[ihl..ihl + 2].copy_from_slice(&p.to_be_bytes());
    }
    if let Some((a, p)) = dst {
        q[16..20].copy_from_slice(&a);
        q[ihl + 2..ihl + 4].copy_from_slice(&p.to_be_bytes());
    }
    q[10] = 0;
    q[11] = 0;
    let c = csum::checksum(&q[..ihl]);
    q[10..12].copy_from_slice(&c.to_ne_bytes());
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify_to_zero() {
        let ip = Ip::new([198, 51, 100, 2], [203, 0, 113, 10]);
        let f = tcp_frame([2; 6], [4; 6], ip.clone(), 40000, 80, TCP_SYN, b"x");
        assert_eq!(csum::checksum(&f[14..34]), 0, "IPv4 header");
        let l4 = &f[34..];
        assert_eq!(!csum::fold(csum::sum_words(l4, pseudo_sum(&ip, 6, l4.len()))), 0, "TCP");
    }
}
