//! The mh (Maglev hashing) scheduler's table, as IPVS builds and reads it (`ip_vs_mh.c`,
//! kernel 4.18 and later, default `CONFIG_IP_VS_MH_TAB_INDEX` = 12).
//!
//! Userspace fills a table of [`MH_TABLE_SIZE`] slots, each holding a real server's position
//! in kernel order, on every add, delete and edit of a real server; the dataplane hashes the
//! client to a slot with [`mh_lookup_slot`] and reads it. The hash is the kernel's 64-bit
//! `hsiphash` (SipHash-1-3) under two fixed keys, so tables and slots are the same on every
//! host and equal to a real kernel's.
//!
//! Byte order: the `addr_fold` arguments are host-order `u32`s from
//! [`crate::sched_hash::addr_fold`]; ports are host order.

use crate::sched_hash::EMPTY;
use crate::service::MAX_DESTS_PER_SVC;

/// Slots in the table: `primes[12 - 8]`.
pub const MH_TABLE_SIZE: usize = 4093;

/// `IP_VS_MH_TAB_BITS` (`CONFIG_IP_VS_MH_TAB_INDEX / 2`): weights / gcd are shifted right
/// until they fit in this many bits.
const MH_TAB_BITS: u32 = 6;

/// `hash1` of `generate_hash_secret`: `{k0, k1}` as 64-bit words. Offsets and lookups.
pub const MH_KEY1: [u64; 2] = [2654435761, 2654435761];
/// `hash2`: permutation skips.
pub const MH_KEY2: [u64; 2] = [2654446892, 2654446892];

const MH_M: u32 = MH_TABLE_SIZE as u32;

#[inline(always)]
fn sipround(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

/// SipHash-1-3 over 8-byte little-endian words `words` and the final word `last` (the length
/// in the top byte, the tail bytes below), truncated to 32 bits: `HSIPHASH_64_PREAMBLE` and
/// `_POSTAMBLE`.
#[inline(always)]
fn siphash13(key: &[u64; 2], words: impl Iterator<Item = u64>, last: u64) -> u32 {
    let mut v = [
        0x736f_6d65_7073_6575 ^ key[0],
        0x646f_7261_6e64_6f6d ^ key[1],
        0x6c79_6765_6e65_7261 ^ key[0],
        0x7465_6462_7974_6573 ^ key[1],
    ];
    for m in words {
        v[3] ^= m;
        sipround(&mut v);
        v[0] ^= m;
    }
    v[3] ^= last;
    sipround(&mut v);
    v[0] ^= last;
    v[2] ^= 0xff;
    sipround(&mut v);
    sipround(&mut v);
    sipround(&mut v);
    ((v[0] ^ v[1]) ^ (v[2] ^ v[3])) as u32
}

/// The kernel's `hsiphash(data, len, key)` on a 64-bit kernel (SipHash-1-3, low 32 bits of the
/// result), over any bytes. Host-side reference; the dataplane uses [`hsiphash_u32`].
pub fn hsiphash(data: &[u8], key: &[u64; 2]) -> u32 {
    let chunks = data.chunks_exact(8);
    let tail = chunks.remainder();
    let mut last = (data.len() as u64) << 56;
    for (i, b) in tail.iter().enumerate() {
        last |= (*b as u64) << (8 * i);
    }
    let words = chunks.map(|c| {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        u64::from_le_bytes(w)
    });
    siphash13(key, words, last)
}

/// `hsiphash(&v, 4, key)` as the kernel calls it: the message is the 4 bytes of `v` as the
/// (little-endian) host stores them, so the final word is `4 << 56 | v`.
#[inline(always)]
pub fn hsiphash_u32(v: u32, key: &[u64; 2]) -> u32 {
    siphash13(key, core::iter::empty(), (4u64 << 56) | v as u64)
}

/// `ip_vs_mh_hashkey`: `hsiphash(offset + port + addr_fold)` with the sum mod 2^32.
#[inline(always)]
pub fn mh_hashkey(addr_fold: u32, port: u16, key: &[u64; 2], offset: u32) -> u32 {
    hsiphash_u32(offset.wrapping_add(port as u32).wrapping_add(addr_fold), key)
}

/// The slot a client hashes to: `hashkey(saddr_fold, port, key1, 0) % M`. `sport` is the
/// client's source port (host order), taken only with the `mh-port` flag (`with_port`; the
/// kernel takes it for TCP, UDP and SCTP only, 0 otherwise, which the caller decides).
#[inline(always)]
pub fn mh_lookup_slot(saddr_fold: u32, sport: u16, with_port: bool) -> u16 {
    let port = if with_port { sport } else { 0 };
    (mh_hashkey(saddr_fold, port, &MH_KEY1, 0) % MH_M) as u16
}

/// Slot of the `offset`-th probe (0..M) of `mh-fallback` when the server in slot `ihash`
/// is unavailable: the client rehashed with offset `(offset + ihash) % M`. `port` is the port
/// the lookup used (0 without `mh-port`).
#[inline(always)]
pub fn mh_fallback_probe(saddr_fold: u32, port: u16, ihash: u16, offset: u16) -> u16 {
    let roffset = (offset as u32 + ihash as u32) % MH_M;
    (mh_hashkey(saddr_fold, port, &MH_KEY1, roffset) % MH_M) as u16
}

/// [`mh_build`] was given more real servers than the dataplane holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyDests;

/// Euclid on positive values (the kernel's `gcd`).
fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `fls`: the 1-based index of the highest set bit, 0 for 0.
fn fls(x: u32) -> u32 {
    32 - x.leading_zeros()
}

/// Slots each server claims per round (`ds->turns`): `(last_weight / g) >> rshift`, at least 1
/// unless last_weight is 0. `g` is the gcd of the positive last weights (0 if none).
fn turns(dests: &[(u32, u16, i32)], out: &mut [i32; MAX_DESTS_PER_SVC]) -> bool {
    let g = dests.iter().filter(|d| d.2 > 0).fold(0u32, |g, d| gcd(d.2 as u32, g));
    if g == 0 {
        return false;
    }
    let max = dests.iter().map(|d| d.2).fold(0, i32::max) as u32;
    let rshift = fls(max / g).saturating_sub(MH_TAB_BITS);
    for (t, d) in out.iter_mut().zip(dests) {
        let lw = d.2;
        // g <= i32::MAX, so this is the kernel's signed division; negative last weights (never
        // seen: the kernel refuses negative weights) give turns < 1 and take no slots.
        let shifted = (lw / g as i32) >> rshift;
        *t = if shifted != 0 { shifted } else { (lw != 0) as i32 };
    }
    true
}

/// Fills the table (`ip_vs_mh_permutate` + `ip_vs_mh_populate`) from the real servers in
/// kernel order, each given as `(addr_fold, port, last_weight)`: the folded address in host
/// order, the port in host order, and `last_weight`, the server's latest non-zero weight (its
/// weight when it was added, if it has never been non-zero since). Slots hold positions in
/// `dests`; with no server of non-zero last weight every slot is [`EMPTY`].
///
/// Each server walks its permutation (`offset`, `offset + skip`, ... mod M); round after round
/// in kernel order, each server with turns claims that many free slots in a row, until all M
/// are claimed. A server of last weight 0 claims none.
pub fn mh_build(dests: &[(u32, u16, i32)], out: &mut [u16; MH_TABLE_SIZE]) -> Result<(), TooManyDests> {
    if dests.len() > MAX_DESTS_PER_SVC {
        return Err(TooManyDests);
    }
    out.fill(EMPTY);
    let mut t = [0i32; MAX_DESTS_PER_SVC];
    if !turns(dests, &mut t) {
        return Ok(());
    }
    let mut perm = [0u32; MAX_DESTS_PER_SVC];
    let mut skip = [0u32; MAX_DESTS_PER_SVC];
    for ((p, s), d) in perm.iter_mut().zip(skip.iter_mut()).zip(dests) {
        *p = mh_hashkey(d.0, d.1, &MH_KEY1, 0) % MH_M;
        *s = mh_hashkey(d.0, d.1, &MH_KEY2, 0) % (MH_M - 1) + 1;
    }
    let mut filled = 0usize;
    // Every round claims at least one slot (some server has turns), so M rounds suffice.
    for _round in 0..MH_TABLE_SIZE {
        for (i, ((p, s), &turns)) in perm.iter_mut().zip(skip.iter()).zip(t.iter()).enumerate().take(dests.len()) {
            for _ in 0..turns.max(0) {
                let slot = claim(out, p, *s);
                out[slot] = i as u16;
                filled += 1;
                if filled == MH_TABLE_SIZE {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// The next free slot of one server's permutation; `perm` stays on it (the kernel advances
/// only past taken slots). M is prime and `skip` in 1..M, so the walk visits every slot and
/// finds the free one within M steps while any is free.
fn claim(table: &[u16; MH_TABLE_SIZE], perm: &mut u32, skip: u32) -> usize {
    for _ in 0..MH_TABLE_SIZE {
        let slot = (*perm as usize) % MH_TABLE_SIZE;
        if table[slot] == EMPTY {
            return slot;
        }
        *perm += skip;
        if *perm >= MH_M {
            *perm -= MH_M;
        }
    }
    (*perm as usize) % MH_TABLE_SIZE
}

/// The mh choice, as the kernel makes it, for host tests and as the reference of the
/// dataplane's walk: the server in the client's slot if `usable` (weight > 0, not OVERLOAD);
/// otherwise, with `fallback`, the first usable server along [`mh_fallback_probe`], stopping
/// at an [`EMPTY`] slot. `port` as in [`mh_fallback_probe`].
pub fn mh_pick(
    table: &[u16; MH_TABLE_SIZE],
    saddr_fold: u32,
    port: u16,
    fallback: bool,
    usable: impl Fn(u16) -> bool,
) -> Option<u16> {
    let ihash = mh_lookup_slot(saddr_fold, port, true);
    let d = *table.get(ihash as usize)?;
    if d == EMPTY {
        return None;
    }
    if usable(d) {
        return Some(d);
    }
    if !fallback {
        return None;
    }
    for offset in 0..MH_M as u16 {
        let d = *table.get(mh_fallback_probe(saddr_fold, port, ihash, offset) as usize)?;
        if d == EMPTY {
            return None;
        }
        if usable(d) {
            return Some(d);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_KEY: [u64; 2] = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];

    /// `test_vectors_hsiphash` of lib/siphash_kunit.c for `BITS_PER_LONG == 64`: vector `i` is
    /// the hash of the bytes 0, 1, ..., i-1 under the key bytes 00..0f.
    const TEST_VECTORS: [u32; 64] = [
        0x050fc4dc, 0x7d57ca93, 0x4dc7d44d, 0xe7ddf7fb, 0x88d38328, 0x49533b67, 0xc59f22a7, 0x9bb11140, 0x8d299a8e,
        0x6c063de4, 0x92ff097f, 0xf94dc352, 0x57b4d9a2, 0x1229ffa7, 0xc0f95d34, 0x2a519956, 0x7d908b66, 0x63dbd80c,
        0xb473e63e, 0x8d297d1c, 0xa6cce040, 0x2b45f844, 0xa320872e, 0xdae6c123, 0x67349c8c, 0x705b0979, 0xca9913a5,
        0x4ade3b35, 0xef6cd00d, 0x4ab1e1f4, 0x43c5e663, 0x8c21d1bc, 0x16a7b60d, 0x7a8ff9bf, 0x1f2a753e, 0xbf186b91,
        0xada26206, 0xa3c33057, 0xae3a36a1, 0x7b108392, 0x99e41531, 0x3f1ad944, 0xc8138825, 0xc28949a6, 0xfaf8876b,
        0x9f042196, 0x68b1d623, 0x8b5114fd, 0xdf074c46, 0x12cc86b3, 0x0a52098f, 0x9d292f9a, 0xa2f41f12, 0x43a71ed0,
        0x73f0bce6, 0x70a7e980, 0x243c6d75, 0xfdb71513, 0xa67d8a08, 0xb7e8f148, 0xf7a644ee, 0x0f1837f2, 0x4b6694e0,
        0xb7bbb3a8,
    ];

    #[test]
    fn hsiphash_passes_the_kernels_vectors() {
        let mut input = [0u8; 64];
        for (i, b) in input.iter_mut().enumerate() {
            *b = i as u8;
        }
        for (len, want) in TEST_VECTORS.iter().enumerate() {
            assert_eq!(hsiphash(&input[..len], &TEST_KEY), *want, "length {len}");
        }
        // The kernel's hsiphash_1u32(0x03020100) check: the 4-byte path is the same hash.
        assert_eq!(hsiphash_u32(0x0302_0100, &TEST_KEY), TEST_VECTORS[4]);
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> u32 {
        u32::from_be_bytes([a, b, c, d])
    }

    /// Slots held by positions 0, 1, 2, and by anything else.
    fn shares(t: &[u16; MH_TABLE_SIZE]) -> [usize; 4] {
        let mut s = [0usize; 4];
        for &d in t.iter() {
            s[(d as usize).min(3)] += 1;
        }
        s
    }

    /// Spec §1.12: 192.168.0.1..3:80, weight 1, kernel order rs1 rs2 rs3.
    #[test]
    fn mh_matches_the_spec_vector() {
        let dests = [(v4(192, 168, 0, 1), 80, 1), (v4(192, 168, 0, 2), 80, 1), (v4(192, 168, 0, 3), 80, 1)];
        let mut t = [0u16; MH_TABLE_SIZE];
        mh_build(&dests, &mut t).unwrap();
        assert_eq!(shares(&t), [1365, 1364, 1364, 0]);
        assert_eq!(mh_lookup_slot(v4(10, 0, 0, 1), 0, false), 3711);
        assert_eq!(mh_lookup_slot(v4(10, 0, 0, 2), 0, false), 1884);
        let pick = |c: u32| t[mh_lookup_slot(c, 0, false) as usize];
        assert_eq!(pick(v4(10, 0, 0, 1)), 1);
        assert_eq!(pick(v4(10, 0, 0, 2)), 1);
        assert_eq!(pick(v4(10, 0, 0, 3)), 0);
        assert_eq!(pick(v4(10, 0, 0, 4)), 2);
    }

    #[test]
    fn mh_port_only_with_the_flag() {
        let c = v4(10, 0, 0, 1);
        assert_eq!(mh_lookup_slot(c, 40000, false), mh_lookup_slot(c, 0, true));
        assert_eq!(mh_lookup_slot(c, 40000, true) as u32, mh_hashkey(c, 40000, &MH_KEY1, 0) % MH_M);
    }

    #[test]
    fn mh_weights_share_in_proportion_and_zero_takes_nothing() {
        let dests = [(v4(192, 168, 0, 1), 80, 1), (v4(192, 168, 0, 2), 80, 2), (v4(192, 168, 0, 3), 80, 0)];
        let mut t = [0u16; MH_TABLE_SIZE];
        mh_build(&dests, &mut t).unwrap();
        let s = shares(&t);
        assert_eq!(s[2], 0);
        assert_eq!(s[0] + s[1], MH_TABLE_SIZE);
        // Rounds claim 1 + 2 slots, so the split is as close to 1:2 as M allows.
        assert_eq!(s[0], 1365);
    }

    #[test]
    fn mh_shifts_large_weights() {
        // 100 / 1 needs 7 bits: shifted right once, so 100 -> 50 turns, 1 -> 0 -> 1 turn.
        let dests = [(v4(192, 168, 0, 1), 80, 100), (v4(192, 168, 0, 2), 80, 1)];
        let mut t = [0i32; MAX_DESTS_PER_SVC];
        assert!(turns(&dests, &mut t));
        assert_eq!(&t[..2], &[50, 1]);
        // gcd 10: 100/10 = 10 and 30/10 = 3 fit, no shift.
        let dests = [(0, 0, 100), (0, 0, 30), (0, 0, 0)];
        assert!(turns(&dests, &mut t));
        assert_eq!(&t[..3], &[10, 3, 0]);
        // 1000 and 3 (gcd 1): 1000 needs 10 bits, shifted by 4 to 62; 3 >> 4 = 0 -> 1.
        let dests = [(0, 0, 1000), (0, 0, 3)];
        assert!(turns(&dests, &mut t));
        assert_eq!(&t[..2], &[62, 1]);
    }

    #[test]
    fn mh_empty_without_weights() {
        let mut t = [0u16; MH_TABLE_SIZE];
        mh_build(&[(1, 80, 0)], &mut t).unwrap();
        assert!(t.iter().all(|&d| d == EMPTY));
        mh_build(&[], &mut t).unwrap();
        assert!(t.iter().all(|&d| d == EMPTY));
        assert_eq!(mh_pick(&t, 1, 0, true, |_| true), None);
        let many = [(0u32, 0u16, 1i32); MAX_DESTS_PER_SVC + 1];
        assert_eq!(mh_build(&many, &mut t), Err(TooManyDests));
    }

    #[test]
    fn mh_fallback_rehashes_from_the_slot() {
        let dests = [(v4(192, 168, 0, 1), 80, 1), (v4(192, 168, 0, 2), 80, 1), (v4(192, 168, 0, 3), 80, 1)];
        let mut t = [0u16; MH_TABLE_SIZE];
        mh_build(&dests, &mut t).unwrap();
        let c = v4(10, 0, 0, 1); // slot 3711, rs2
        assert_eq!(mh_pick(&t, c, 0, false, |d| d != 1), None);
        let want = (0..MH_M as u16).map(|o| t[mh_fallback_probe(c, 0, 3711, o) as usize]).find(|&d| d != 1);
        assert_eq!(mh_pick(&t, c, 0, true, |d| d != 1), want);
        assert!(want.is_some());
        assert_eq!(mh_fallback_probe(c, 0, 3711, 0) as u32, mh_hashkey(c, 0, &MH_KEY1, 3711) % MH_M);
        assert_eq!(mh_fallback_probe(c, 0, 3711, 400) as u32, mh_hashkey(c, 0, &MH_KEY1, 18) % MH_M);
    }
}
