//! Internet checksum arithmetic (RFC 1071) and incremental update (RFC 1624, eqn. 3).
//!
//! All values are 16-bit words as read from the packet in *native* order of the raw bytes
//! (`u16::from_ne_bytes`); one's-complement sums are byte-order independent as long as every
//! word is treated the same way, so no swapping is needed on either side.

/// Folds a 32-bit one's-complement accumulator to 16 bits.
#[inline(always)]
pub fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// `HC' = ~(~HC + ~m + m')` for one 16-bit word changing from `old` to `new`.
#[inline(always)]
pub fn replace2(check: u16, old: u16, new: u16) -> u16 {
    let sum = (!check as u32) + (!old as u32) + (new as u32);
    !fold(sum)
}

/// The same for a 32-bit field (an IPv4 address), given as its raw 4 bytes in a `u32`.
#[inline(always)]
pub fn replace4(check: u16, old: u32, new: u32) -> u16 {
    let sum = (!check as u32)
        + ((!old) & 0xffff)
        + ((!old) >> 16)
        + (new & 0xffff)
        + (new >> 16);
    !fold(sum)
}

/// A 20-byte IPv4 header without options, its checksum filled in: what the dataplane puts in
/// front of a tunnelled packet or an ICMP error it sends. `id` is the identification as the
/// bytes on the wire, `frag_off` the flags and fragment offset in host order; `src` and `dst`
/// are addresses as loaded from a packet (`u32::from_ne_bytes` of the wire bytes).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn ipv4_header(tos: u8, tot_len: u16, id: [u8; 2], frag_off: u16, ttl: u8, proto: u8, src: u32, dst: u32) -> [u8; 20] {
    let len = tot_len.to_be_bytes();
    let fo = frag_off.to_be_bytes();
    let s = src.to_ne_bytes();
    let d = dst.to_ne_bytes();
    let c = ipv4_header_check(tos, tot_len, id, frag_off, ttl, proto, src, dst);
    [
        0x45, tos, len[0], len[1], id[0], id[1], fo[0], fo[1], ttl, proto, c[0], c[1], s[0], s[1], s[2], s[3],
        d[0], d[1], d[2], d[3],
    ]
}

/// The checksum bytes of [`ipv4_header`]'s header (same arguments), summed from the field
/// values themselves: ten register additions, where summing a built header back from memory
/// costs twenty byte loads on BPF (which has no unaligned word loads).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn ipv4_header_check(
    tos: u8,
    tot_len: u16,
    id: [u8; 2],
    frag_off: u16,
    ttl: u8,
    proto: u8,
    src: u32,
    dst: u32,
) -> [u8; 2] {
    // Each term is a 16-bit word of the header as `u16::from_ne_bytes` of its wire bytes.
    let sum = u16::from_ne_bytes([0x45, tos]) as u32
        + tot_len.to_be() as u32
        + u16::from_ne_bytes(id) as u32
        + frag_off.to_be() as u32
        + u16::from_ne_bytes([ttl, proto]) as u32
        + (src & 0xffff)
        + (src >> 16)
        + (dst & 0xffff)
        + (dst >> 16);
    (!fold(sum)).to_ne_bytes()
}

/// Full checksum of a byte slice (host-side helper for tests and packet builders).
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum_words(data, 0))
}

/// One's-complement sum of `data` added to `acc` (unfolded).
pub fn sum_words(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u16::from_ne_bytes([c[0], c[1]]) as u32);
        // Fold early so long buffers cannot overflow.
        if acc > 0xffff_0000 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u16::from_ne_bytes([*last, 0]) as u32);
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_fields_and_checksum() {
        let src = u32::from_ne_bytes([192, 0, 2, 1]);
        let dst = u32::from_ne_bytes([192, 0, 2, 11]);
        let h = ipv4_header(0x10, 1520, [0xab, 0xcd], 0x4000, 63, 4, src, dst);
        let mut want = [0x45, 0x10, 0x05, 0xf0, 0xab, 0xcd, 0x40, 0, 63, 4, 0, 0, 192, 0, 2, 1, 192, 0, 2, 11];
        let c = checksum(&want);
        want[10..12].copy_from_slice(&c.to_ne_bytes());
        assert_eq!(h, want);
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn ipv4_header_checksum_verifies_for_many_fields() {
        // The sum is taken from the field values, not the bytes: check it against a full
        // checksum of the bytes over values that exercise every word and the carries.
        let mut seed = 0x1234_5678u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for i in 0..10_000 {
            let r = [next(), next(), next(), next()];
            let (src, dst) = if i % 2 == 0 { (r[0], r[1]) } else { (u32::MAX, u32::MAX - (i as u32)) };
            let (tos, len, ttl) = (r[2] as u8, (r[2] >> 8) as u16, (r[2] >> 24) as u8);
            let (id, frag_off) = ([(r[3] >> 8) as u8, r[3] as u8], (r[3] >> 16) as u16 & 0x5fff);
            let h = ipv4_header(tos, len, id, frag_off, ttl, 4, src, dst);
            assert_eq!(checksum(&h), 0, "header {h:02x?}");
        }
    }

    fn ip_header(dst: [u8; 4], ttl: u8) -> [u8; 20] {
        let mut h = [
            0x45, 0, 0, 60, 0x12, 0x34, 0x40, 0, ttl, 6, 0, 0, 198, 51, 100, 7, dst[0], dst[1],
            dst[2], dst[3],
        ];
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_ne_bytes());
        h
    }

    #[test]
    fn full_checksum_verifies_to_zero() {
        let h = ip_header([203, 0, 113, 10], 64);
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn replace4_matches_recompute() {
        for dst in [[203, 0, 113, 10], [192, 0, 2, 255], [0, 0, 0, 0], [255, 255, 255, 255]] {
            let h = ip_header([203, 0, 113, 10], 64);
            let old = u32::from_ne_bytes([h[16], h[17], h[18], h[19]]);
            let new = u32::from_ne_bytes(dst);
            let check = u16::from_ne_bytes([h[10], h[11]]);
            let got = replace4(check, old, new);
            let want = ip_header(dst, 64);
            assert_eq!(got, u16::from_ne_bytes([want[10], want[11]]), "dst {dst:?}");
        }
    }

    #[test]
    fn replace2_matches_recompute_for_ttl() {
        let h = ip_header([192, 0, 2, 11], 64);
        let check = u16::from_ne_bytes([h[10], h[11]]);
        let old = u16::from_ne_bytes([h[8], h[9]]);
        let new = u16::from_ne_bytes([63, h[9]]);
        let want = ip_header([192, 0, 2, 11], 63);
        assert_eq!(replace2(check, old, new), u16::from_ne_bytes([want[10], want[11]]));
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum_words(&[1, 2, 3], 0), sum_words(&[1, 2, 3, 0], 0));
    }
}
