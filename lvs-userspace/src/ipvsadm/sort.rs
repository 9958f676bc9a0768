//! The order `ipvsadm -L` and `-S` print in.
//!
//! libipvs compares services by fwmark, family, protocol, address, port and dests by
//! address, port, each as the C `int` difference of unsigned values. Differences of 2^31 or
//! more wrap, so 200.0.0.1 sorts before 10.0.0.1. Such a comparison is not a total order, so
//! the result also depends on the sorting algorithm: glibc's `qsort` (up to 2.36, the
//! Debian 12 that recorded the goldens) is a top-down merge sort, reproduced by [`msort`].

use std::{cmp::Ordering, net::IpAddr};

use crate::model::{DestStatus, ServiceKey, ServiceStatus};

/// An address as libipvs's union holds it: IPv4 in the first 32-bit word, the rest zero.
fn words(addr: IpAddr) -> [u32; 4] {
    match addr {
        IpAddr::V4(a) => [u32::from(a), 0, 0, 0],
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            [w(0), w(4), w(8), w(12)]
        }
    }
}

/// `(int)(a - b)` for unsigned 32-bit values.
fn wrap_diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// Address comparison as libipvs does it: the first operand's family decides how many words
/// are compared.
fn addr_diff(a: IpAddr, b: IpAddr) -> i32 {
    let (wa, wb) = (words(a), words(b));
    let n = if a.is_ipv6() { 4 } else { 1 };
    (0..n).map(|i| wrap_diff(wa[i], wb[i])).find(|&r| r != 0).unwrap_or(0)
}

/// `ipvs_cmp_services`.
pub fn cmp_services(a: &ServiceStatus, b: &ServiceStatus) -> i32 {
    let fields = |s: &ServiceStatus| -> (u32, i32, i32, IpAddr, i32) {
        let af = if s.spec.key.is_ipv6() { libc::AF_INET6 } else { libc::AF_INET };
        match s.spec.key {
            ServiceKey::Addr { protocol, addr, port } => {
                (0, af, i32::from(protocol.number()), addr, i32::from(port))
            }
            // The kernel reports fwmark services with protocol TCP (what ipvsadm sent) and a
            // zero address; only the mark and the family ever differ between them.
            ServiceKey::Fwmark { mark, ipv6 } => {
                let zero = if ipv6 { IpAddr::from([0u16; 8]) } else { IpAddr::from([0u8; 4]) };
                (mark, af, i32::from(libc::IPPROTO_TCP as u8), zero, 0)
            }
        }
    };
    let (m1, af1, p1, a1, port1) = fields(a);
    let (m2, af2, p2, a2, port2) = fields(b);
    [wrap_diff(m1, m2), af1 - af2, p1 - p2, addr_diff(a1, a2), port1 - port2]
        .into_iter()
        .find(|&r| r != 0)
        .unwrap_or(0)
}

/// `ipvs_cmp_dests`.
pub fn cmp_dests(a: &DestStatus, b: &DestStatus) -> i32 {
    let r = addr_diff(a.spec.addr, b.spec.addr);
    if r != 0 {
        return r;
    }
    i32::from(a.spec.port) - i32::from(b.spec.port)
}

/// glibc's merge sort (`msort_with_tmp`): split at n/2, sort both halves, merge taking from
/// the left run while `cmp(left, right) <= 0`.
pub fn msort<T: Clone>(v: &mut [T], cmp: &dyn Fn(&T, &T) -> i32) {
    let n = v.len();
    if n <= 1 {
        return;
    }
    let n1 = n / 2;
    msort(&mut v[..n1], cmp);
    msort(&mut v[n1..], cmp);
    let mut merged = Vec::with_capacity(n);
    let (mut i, mut j) = (0, n1);
    while i < n1 && j < n {
        if cmp(&v[i], &v[j]) <= 0 {
            merged.push(v[i].clone());
            i += 1;
        } else {
            merged.push(v[j].clone());
            j += 1;
        }
    }
    merged.extend_from_slice(&v[i..n1]);
    merged.extend_from_slice(&v[j..n]);
    v.clone_from_slice(&merged);
}

/// Services and their dests in ipvsadm's printing order.
pub fn sort_all(services: &mut [ServiceStatus]) {
    msort(services, &cmp_services);
    for s in services.iter_mut() {
        msort(&mut s.dests, &cmp_dests);
    }
}

/// For callers that want an `Ordering` (tests, diagnostics).
pub fn ordering(r: i32) -> Ordering {
    r.cmp(&0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DestSpec, Forward, Protocol, ServiceSpec};

    fn svc(addr: &str, port: u16) -> ServiceStatus {
        let key = ServiceKey::Addr { protocol: Protocol::Tcp, addr: addr.parse().unwrap(), port };
        ServiceStatus { spec: ServiceSpec::new(key, "rr"), dests: vec![], stats: Default::default() }
    }

    fn names(v: &[ServiceStatus]) -> Vec<String> {
        v.iter().map(|s| s.spec.key.to_string()).collect()
    }

    #[test]
    fn wraparound_quirk() {
        let mut v = vec![svc("10.0.0.1", 80), svc("200.0.0.1", 80)];
        sort_all(&mut v);
        assert_eq!(names(&v), ["TCP 200.0.0.1:80", "TCP 10.0.0.1:80"]);
        assert_eq!(ordering(cmp_services(&v[0], &v[1])), Ordering::Less);
    }

    #[test]
    fn family_protocol_and_fwmark_order() {
        let fw = |mark, ipv6| ServiceStatus {
            spec: ServiceSpec::new(ServiceKey::Fwmark { mark, ipv6 }, "rr"),
            dests: vec![],
            stats: Default::default(),
        };
        let mut udp = svc("203.0.113.10", 53);
        udp.spec.key = ServiceKey::Addr { protocol: Protocol::Udp, addr: "203.0.113.10".parse().unwrap(), port: 53 };
        let mut v = vec![fw(8, true), fw(7, false), svc("2001:db8::10", 80), udp, svc("203.0.113.10", 8080), svc("203.0.113.10", 80)];
        sort_all(&mut v);
        assert_eq!(
            names(&v),
            ["TCP 203.0.113.10:80", "TCP 203.0.113.10:8080", "UDP 203.0.113.10:53", "TCP [2001:db8::10]:80", "FWM 7", "FWM 8 IPv6"]
        );
    }

    #[test]
    fn non_transitive_inputs_follow_glibc_merge_order() {
        // a < b, b < c by wrapped differences, yet c < a: the merge order decides.
        let a = svc("0.0.0.1", 80);
        let b = svc("96.0.0.1", 80);
        let c = svc("192.0.0.1", 80);
        let mut v = vec![c.clone(), b.clone(), a.clone()];
        sort_all(&mut v);
        // msort: [c] | [b, a] -> [a, b]; merge c vs a: c-a = 0xC0000000 wraps negative, c first.
        assert_eq!(names(&v), ["TCP 192.0.0.1:80", "TCP 0.0.0.1:80", "TCP 96.0.0.1:80"]);
    }

    #[test]
    fn dests_by_address_then_port() {
        let d = |a: &str, p| DestStatus {
            spec: DestSpec::new(a.parse().unwrap(), p, Forward::Masq, 1),
            active_conns: 0,
            inact_conns: 0,
            persist_conns: 0,
            stats: Default::default(),
        };
        let mut s = svc("10.0.0.1", 80);
        s.dests = vec![d("192.0.2.13", 80), d("192.0.2.11", 81), d("192.0.2.11", 80)];
        sort_all(std::slice::from_mut(&mut s));
        let got: Vec<_> = s.dests.iter().map(|d| (d.spec.addr.to_string(), d.spec.port)).collect();
        assert_eq!(got, [("192.0.2.11".into(), 80), ("192.0.2.11".into(), 81), ("192.0.2.13".to_string(), 80)]);
    }
}
