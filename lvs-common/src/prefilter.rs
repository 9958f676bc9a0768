//! The address prefilter: a bitmap of every IPv4 address the dataplane has business with, read
//! before any other lookup so that traffic for neither a virtual service nor a real server
//! costs two array reads instead of the connection, service and DR-reply lookups.
//!
//! A packet can concern the director only if its destination is a virtual address (a new or
//! established client connection, IPVS's input lookup), or its source is a real server (a NAT
//! reply, the output lookup) or a virtual address (a DR/TUN reply routed back through the
//! director). So lvsd sets the bit of every virtual address and every real server address; a
//! packet whose two addresses both hit clear bits passes to the kernel at once. Bits are only
//! ever set while the map lives: connections to a deleted service or real server go on until
//! they expire, and a stale bit only costs the full lookups (as does a hash collision).
//!
//! Firewall-mark classifier rules match whole prefixes, so while a rule set is live the
//! dataplane skips the filter.
//!
//! Layout: `ADDR_FILTER` is an array of [`FILTER_WORDS`] `u64` words, bit `b` of the filter
//! in word `b / 64`, bit `b % 64`, then the word [`FILTER_READY`]: the dataplane consults the
//! bitmap only once lvsd has set that word to 1, after setting the bit of every address it
//! found in the pinned maps (a filter created under a running dataplane starts empty).

/// Bits in the filter (a power of two): 8 KiB, so a few hundred addresses leave it sparse.
pub const FILTER_BITS: u32 = 1 << 16;
/// `u64` words of bitmap in `ADDR_FILTER`.
pub const FILTER_WORDS: u32 = FILTER_BITS / 64;
/// Index of the word that turns the filter on (non-zero) in `ADDR_FILTER`.
pub const FILTER_READY: u32 = FILTER_WORDS;
/// Entries of `ADDR_FILTER`: the bitmap and the ready word.
pub const FILTER_ENTRIES: u32 = FILTER_WORDS + 1;

/// The filter bit of an IPv4 address (network order, as in the packet): the top 16 bits of a
/// multiplicative hash, so that every bit of the address counts (addresses of one subnet
/// differ only in their last byte, which is the *high* byte of the network-order word on a
/// little-endian machine and the low byte on a big-endian one).
#[inline(always)]
pub fn bit_of(addr: u32) -> u32 {
    addr.wrapping_mul(0x9E37_79B1) >> 16
}

/// Word index and mask of an address's bit.
#[inline(always)]
pub fn word_of(addr: u32) -> (u32, u64) {
    let b = bit_of(addr);
    (b / 64, 1u64 << (b % 64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_stay_in_range_and_spread_over_a_subnet() {
        let mut seen = [0u64; FILTER_WORDS as usize];
        let mut collisions = 0;
        for last in 0..=255u8 {
            let a = u32::from_ne_bytes([192, 0, 2, last]);
            let (w, m) = word_of(a);
            assert!(w < FILTER_WORDS);
            if seen[w as usize] & m != 0 {
                collisions += 1;
            }
            seen[w as usize] |= m;
        }
        // 256 addresses in 65536 bits: a handful of collisions at most.
        assert!(collisions < 4, "{collisions} collisions in one /24");
    }
}
