//! The dh and sh schedulers' 256-bucket tables, as IPVS builds and reads them
//! (`ip_vs_dh.c`, `ip_vs_sh.c`).
//!
//! Userspace builds a table whenever the kernel would (dh: add and delete of a real server;
//! sh: add, delete and edit) into a caller-provided array of positions in kernel order (newest
//! first). The dataplane hashes the packet to a bucket and reads the position there. Nothing
//! here allocates or can panic, so the lookup half runs in the XDP program.
//!
//! Byte order: addresses come in as the codebase stores them, `[u32; 4]` in network order (each
//! word holds the packet's four bytes as they are, i.e. `u32::from_ne_bytes(bytes)`); IPv4 uses
//! word 0. [`addr_fold`] turns one into the host-order `u32` the kernel hashes. Ports passed to
//! the hash functions are host order.

/// A bucket (or Maglev slot) that holds no real server: the service has none.
pub const EMPTY: u16 = u16::MAX;

/// Buckets in a dh or sh table (`IP_VS_DH_TAB_BITS` = `IP_VS_SH_TAB_BITS` = 8).
pub const HASH_TABLE_SIZE: usize = 256;

/// The kernel's `hash_32(x, 8)`: the top 8 bits of `x * GOLDEN_RATIO_32`. (Kernels before the
/// switch to `hash_32` took the low bits of `x * 2654435761`; every kernel we test against uses
/// this one.)
#[inline(always)]
pub fn hash_32_8(x: u32) -> u8 {
    (x.wrapping_mul(0x61C8_8647) >> 24) as u8
}

/// The address the dh, sh and mh hashes take, in host order: `ntohl(addr[0])` for IPv4, and
/// for IPv6 `ntohl(a[0] ^ a[1] ^ a[2] ^ a[3])`, the words XORed as they sit in the packet.
/// `addr` is in network order (see the module comment); `ipv6` selects the fold.
#[inline(always)]
pub fn addr_fold(addr: &[u32; 4], ipv6: bool) -> u32 {
    let folded = if ipv6 { addr[0] ^ addr[1] ^ addr[2] ^ addr[3] } else { addr[0] };
    u32::from_be(folded)
}

/// dh bucket of a destination address (the packet's daddr, usually the VIP):
/// `hash_32(ntohl(daddr_fold), 8)`. `daddr_host` is the result of [`addr_fold`].
#[inline(always)]
pub fn dh_bucket(daddr_host: u32) -> u8 {
    hash_32_8(daddr_host)
}

/// Fills a dh table for `count` real servers: bucket `i` holds position `i % count` in kernel
/// order. Weights play no part (a weight-0 or overloaded server keeps its buckets and a hit on
/// them finds no server). No servers: every bucket [`EMPTY`].
pub fn dh_build(count: usize, out: &mut [u16; HASH_TABLE_SIZE]) {
    let mut pos = 0usize;
    for b in out.iter_mut() {
        if count == 0 {
            *b = EMPTY;
            continue;
        }
        // Positions past 255 never reach the table, so the cast is lossless.
        *b = pos as u16;
        pos += 1;
        if pos >= count {
            pos = 0;
        }
    }
}

/// sh bucket of a client: `hash_32(ntohs(port) + ntohl(saddr_fold), 8)`, with the sum taken
/// mod 2^32. `saddr_host` is the result of [`addr_fold`] (the source address; for ICMP errors
/// about a connection, the inner packet's destination), `sport_host` the source port in host
/// order, used only with the `sh-port` flag (`with_port`; the kernel takes it for TCP, UDP and
/// SCTP only, 0 otherwise, which the caller decides).
#[inline(always)]
pub fn sh_bucket(saddr_host: u32, sport_host: u16, with_port: bool) -> u8 {
    let port = if with_port { sport_host as u32 } else { 0 };
    hash_32_8(port.wrapping_add(saddr_host))
}

/// Fills an sh table from the real servers' weights in kernel order: walking the list over and
/// over, each server takes `weight` consecutive buckets, until all 256 are taken. A server of
/// weight 0 (or below) still takes one bucket per round: the kernel moves on once its count
/// reaches the weight, which `1 >= 0` already does. No servers: every bucket [`EMPTY`].
pub fn sh_build(weights: &[i32], out: &mut [u16; HASH_TABLE_SIZE]) {
    let mut pos = 0usize;
    let mut taken = 0i32;
    for b in out.iter_mut() {
        let Some(&w) = weights.get(pos) else {
            *b = EMPTY;
            continue;
        };
        // pos < 256 here: it only advances once per bucket.
        *b = pos as u16;
        taken += 1;
        if taken >= w {
            taken = 0;
            pos += 1;
            if pos >= weights.len() {
                pos = 0;
            }
        }
    }
}

/// Bucket of the `offset`-th probe (0..=255) of `sh-fallback` when the server in bucket
/// `ihash` is unavailable: `(offset + 2 * ihash) % 256`. The kernel adds `roffset = offset +
/// ihash` to the already offset hash, so the first probe is `2 * ihash`, not `ihash + 1`.
#[inline(always)]
pub fn sh_fallback_probe(ihash: u8, offset: u8) -> u8 {
    offset.wrapping_add(ihash.wrapping_mul(2))
}

/// The dh choice, as the kernel makes it: the server in the bucket if it is `usable` (the
/// caller's test: AVAILABLE, weight > 0, not OVERLOAD), else none. No fallback.
pub fn dh_pick(table: &[u16; HASH_TABLE_SIZE], bucket: u8, usable: impl Fn(u16) -> bool) -> Option<u16> {
    let d = table[bucket as usize];
    (d != EMPTY && usable(d)).then_some(d)
}

/// The sh choice, as the kernel makes it, for host tests and as the reference of the
/// dataplane's walk: the server in bucket `ihash` if `usable` (weight > 0, not OVERLOAD);
/// otherwise, with `fallback`, the first usable server along [`sh_fallback_probe`], stopping at
/// an [`EMPTY`] bucket.
pub fn sh_pick(table: &[u16; HASH_TABLE_SIZE], ihash: u8, fallback: bool, usable: impl Fn(u16) -> bool) -> Option<u16> {
    let d = table[ihash as usize];
    if d == EMPTY {
        return None;
    }
    if usable(d) {
        return Some(d);
    }
    if !fallback {
        return None;
    }
    for offset in 0..=255u8 {
        let d = table[sh_fallback_probe(ihash, offset) as usize];
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

    fn v4(a: u8, b: u8, c: u8, d: u8) -> u32 {
        u32::from_be_bytes([a, b, c, d])
    }

    /// The address as the maps hold it: network order in word 0.
    fn stored_v4(a: u8, b: u8, c: u8, d: u8) -> [u32; 4] {
        [u32::from_ne_bytes([a, b, c, d]), 0, 0, 0]
    }

    /// Spec §1.11's vectors.
    #[test]
    fn sh_bucket_matches_the_spec_vectors() {
        let clients = [v4(10, 0, 0, 1), v4(10, 0, 0, 2), v4(192, 168, 1, 10), v4(172, 16, 0, 5)];
        let plain: [u8; 4] = clients.map(|c| sh_bucket(c, 40000, false));
        assert_eq!(plain, [39, 137, 248, 1]);
        let with_port: [u8; 4] = clients.map(|c| sh_bucket(c, 40000, true));
        assert_eq!(with_port, [203, 45, 156, 165]);
    }

    #[test]
    fn dh_bucket_matches_the_spec_vector() {
        assert_eq!(dh_bucket(v4(207, 175, 44, 110)), 174);
    }

    #[test]
    fn addr_fold_takes_network_order_words() {
        assert_eq!(addr_fold(&stored_v4(10, 0, 0, 1), false), v4(10, 0, 0, 1));
        // 2001:db8::1 folds to 0x2001_0db8 ^ 0x0000_0001.
        let mut a = [0u32; 4];
        a[0] = u32::from_ne_bytes([0x20, 0x01, 0x0d, 0xb8]);
        a[3] = u32::from_ne_bytes([0, 0, 0, 1]);
        assert_eq!(addr_fold(&a, true), 0x2001_0db9);
    }

    #[test]
    fn dh_build_is_round_robin_over_kernel_order() {
        let mut t = [0u16; 256];
        dh_build(3, &mut t);
        assert_eq!(&t[..7], &[0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(t[255], 0);
        dh_build(0, &mut t);
        assert!(t.iter().all(|&b| b == EMPTY));
        dh_build(300, &mut t);
        assert_eq!(t[255], 255);
    }

    /// Spec §1.11: X(w1), Y(w2), Z(w3) gives X Y Y Z Z Z X Y Y Z Z Z...
    #[test]
    fn sh_build_gives_weight_consecutive_buckets() {
        let mut t = [0u16; 256];
        sh_build(&[1, 2, 3], &mut t);
        assert_eq!(&t[..12], &[0, 1, 1, 2, 2, 2, 0, 1, 1, 2, 2, 2]);
        assert_eq!(t[255], 2); // 255 = 42 * 6 + 3: the first of Z's three.
    }

    #[test]
    fn sh_build_gives_weight_zero_and_negative_one_bucket() {
        let mut t = [0u16; 256];
        sh_build(&[0, 2, -1], &mut t);
        assert_eq!(&t[..8], &[0, 1, 1, 2, 0, 1, 1, 2]);
        sh_build(&[], &mut t);
        assert!(t.iter().all(|&b| b == EMPTY));
    }

    #[test]
    fn sh_fallback_probes_from_twice_the_bucket() {
        assert_eq!(sh_fallback_probe(10, 0), 20);
        assert_eq!(sh_fallback_probe(10, 1), 21);
        assert_eq!(sh_fallback_probe(200, 0), 144);
        assert_eq!(sh_fallback_probe(200, 255), 143);
    }

    #[test]
    fn sh_pick_falls_back_only_when_asked() {
        let mut t = [0u16; 256];
        sh_build(&[1, 1, 1], &mut t);
        // Bucket 4 holds 1; probes start at bucket 8 (position 2).
        let usable = |d: u16| d != 1;
        assert_eq!(sh_pick(&t, 4, false, usable), None);
        assert_eq!(sh_pick(&t, 4, true, usable), Some(2));
        assert_eq!(sh_pick(&t, 3, false, usable), Some(0));
        assert_eq!(sh_pick(&t, 4, true, |_| false), None);
        sh_build(&[], &mut t);
        assert_eq!(sh_pick(&t, 4, true, |_| true), None);
    }

    #[test]
    fn dh_pick_has_no_fallback() {
        let mut t = [0u16; 256];
        dh_build(2, &mut t);
        assert_eq!(dh_pick(&t, 3, |_| true), Some(1));
        assert_eq!(dh_pick(&t, 3, |d| d != 1), None);
    }
}
