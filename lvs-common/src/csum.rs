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
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[1] = tos;
    h[2..4].copy_from_slice(&tot_len.to_be_bytes());
    h[4] = id[0];
    h[5] = id[1];
    h[6..8].copy_from_slice(&frag_off.to_be_bytes());
    h[8] = ttl;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.to_ne_bytes());
    h[16..20].copy_from_slice(&dst.to_ne_bytes());
    // A fixed-count loop over a stack array: no slice iterator, nothing the verifier has to
    // bound (this runs in the XDP programs).
    let mut sum = 0u32;
    let mut i = 0;
    while i < 20 {
        sum += u16::from_ne_bytes([h[i], h[i + 1]]) as u32;
        i += 2;
    }
    let c = (!fold(sum)).to_ne_bytes();
    h[10] = c[0];
    h[11] = c[1];
    h
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
