//! Numbers, addresses and names the way ipvsadm's C library calls read and print them.
//!
//! ipvsadm parses with `strtol`, `inet_aton`, `inet_pton` and `gethostbyname`, and prints
//! with `gethostbyaddr`/`getservbyport` unless `-n`. The pure parts are re-implemented here
//! (so `203.0.113:80` means 203.0.0.113, as `inet_aton` says); the lookups go through the
//! [`Names`] trait so tests do not depend on the host's DNS or /etc/services.

use std::{
    ffi::{CStr, CString},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// Name-service lookups ipvsadm performs.
pub trait Names {
    /// `gethostbyname`, IPv4 only (ipvsadm rejects other families).
    fn host_v4(&self, name: &str) -> Option<Ipv4Addr>;
    /// `getservbyname(name, proto)`; proto is "tcp", "udp" or "sctp".
    fn service_port(&self, name: &str, proto: &str) -> Option<u16>;
    /// `gethostbyaddr`.
    fn addr_name(&self, addr: IpAddr) -> Option<String>;
    /// `getservbyport(port, proto)`.
    fn port_name(&self, port: u16, proto: &str) -> Option<String>;
}

/// The host's resolver, through libc.
pub struct SystemNames;

impl Names for SystemNames {
    fn host_v4(&self, name: &str) -> Option<Ipv4Addr> {
        let c = CString::new(name).ok()?;
        // SAFETY: plain getaddrinfo call with valid pointers; the result list is freed below.
        unsafe {
            let mut hints: libc::addrinfo = std::mem::zeroed();
            hints.ai_family = libc::AF_INET;
            let mut res: *mut libc::addrinfo = std::ptr::null_mut();
            if libc::getaddrinfo(c.as_ptr(), std::ptr::null(), &hints, &mut res) != 0 {
                return None;
            }
            let mut found = None;
            if !res.is_null() && !(*res).ai_addr.is_null() && (*res).ai_family == libc::AF_INET {
                let sin = &*((*res).ai_addr as *const libc::sockaddr_in);
                found = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
            libc::freeaddrinfo(res);
            found
        }
    }

    fn service_port(&self, name: &str, proto: &str) -> Option<u16> {
        let n = CString::new(name).ok()?;
        let p = CString::new(proto).ok()?;
        // SAFETY: getservbyname returns NULL or a pointer to static storage; read at once.
        unsafe {
            let s = libc::getservbyname(n.as_ptr(), p.as_ptr());
            if s.is_null() {
                return None;
            }
            Some(u16::from_be((*s).s_port as u16))
        }
    }

    fn addr_name(&self, addr: IpAddr) -> Option<String> {
        // getnameinfo with NI_NAMEREQD is the thread-safe equivalent of gethostbyaddr: both
        // fail when there is no name, and ipvsadm then prints the number.
        let mut host = [0 as libc::c_char; 1025];
        // SAFETY: sockaddr built on the stack with the right length; host buffer is sized.
        unsafe {
            let rc = match addr {
                IpAddr::V4(a) => {
                    let mut sin: libc::sockaddr_in = std::mem::zeroed();
                    sin.sin_family = libc::AF_INET as libc::sa_family_t;
                    sin.sin_addr.s_addr = u32::from(a).to_be();
                    libc::getnameinfo(
                        &sin as *const _ as *const libc::sockaddr,
                        std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                        host.as_mut_ptr(),
                        host.len() as libc::socklen_t,
                        std::ptr::null_mut(),
                        0,
                        libc::NI_NAMEREQD,
                    )
                }
                IpAddr::V6(a) => {
                    let mut sin6: libc::sockaddr_in6 = std::mem::zeroed();
                    sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                    sin6.sin6_addr.s6_addr = a.octets();
                    libc::getnameinfo(
                        &sin6 as *const _ as *const libc::sockaddr,
                        std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                        host.as_mut_ptr(),
                        host.len() as libc::socklen_t,
                        std::ptr::null_mut(),
                        0,
                        libc::NI_NAMEREQD,
                    )
                }
            };
            if rc != 0 {
                return None;
            }
            Some(CStr::from_ptr(host.as_ptr()).to_string_lossy().into_owned())
        }
    }

    fn port_name(&self, port: u16, proto: &str) -> Option<String> {
        let p = CString::new(proto).ok()?;
        // SAFETY: getservbyport returns NULL or static storage; copied out at once.
        unsafe {
            let s = libc::getservbyport(i32::from(port.to_be()), p.as_ptr());
            if s.is_null() || (*s).s_name.is_null() {
                return None;
            }
            Some(CStr::from_ptr((*s).s_name).to_string_lossy().into_owned())
        }
    }
}

/// `strtol(s, &end, 10)` that must consume the whole string: leading white space and a sign
/// are allowed, at least one digit, nothing after; `None` on overflow of a 64-bit long.
pub fn strtol_exact(s: &str) -> Option<i64> {
    let t = s.trim_start_matches(is_c_space);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: i128 = 0;
    for b in digits.bytes() {
        v = v * 10 + i128::from(b - b'0');
        if v > i128::from(i64::MAX) + 1 {
            return None;
        }
    }
    let v = if neg { -v } else { v };
    i64::try_from(v).ok()
}

/// ipvsadm's `string_to_number`: a whole-string decimal within `min..=max`.
pub fn number_in(s: &str, min: i64, max: i64) -> Option<i64> {
    strtol_exact(s).filter(|n| (min..=max).contains(n))
}

/// `atoi`: leading white space, sign, digits, then stops; garbage gives 0.
pub fn atoi(s: &str) -> i64 {
    let t = s.trim_start_matches(is_c_space);
    let (neg, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut v: i64 = 0;
    for b in rest.bytes().take_while(u8::is_ascii_digit) {
        v = v.wrapping_mul(10).wrapping_add(i64::from(b - b'0'));
    }
    // atoi truncates to int.
    let v = if neg { v.wrapping_neg() } else { v };
    i64::from(v as i32)
}

fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// glibc `inet_aton`: 1 to 4 parts in C notation (0x hex, leading-0 octal, decimal); the last
/// part fills the remaining bytes; anything after white space is ignored.
pub fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let s = match s.find(is_c_space) {
        Some(i) => &s[..i],
        None => s,
    };
    let mut parts: Vec<u64> = Vec::with_capacity(4);
    for part in s.split('.') {
        if parts.len() == 4 {
            return None;
        }
        parts.push(c_unsigned(part)?);
    }
    let (last, head) = parts.split_last()?;
    if head.iter().any(|&p| p > 0xff) {
        return None;
    }
    let last_max: u64 = match head.len() {
        0 => 0xffff_ffff,
        1 => 0x00ff_ffff,
        2 => 0x0000_ffff,
        _ => 0xff,
    };
    if *last > last_max {
        return None;
    }
    let mut v: u64 = 0;
    for (i, p) in head.iter().enumerate() {
        v |= p << (24 - 8 * i);
    }
    Some(Ipv4Addr::from((v | last) as u32))
}

/// One `inet_aton` part: `strtoul(part, 0)` that must use the whole, non-empty part.
fn c_unsigned(part: &str) -> Option<u64> {
    let (digits, radix) = if let Some(h) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
        (h, 16)
    } else if part.len() > 1 && part.starts_with('0') {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    if part.is_empty() || (radix == 16 && digits.is_empty()) {
        // "0x" alone is 0 for glibc; an empty part is an error.
        return if radix == 16 { Some(0) } else { None };
    }
    let mut v: u64 = 0;
    for c in digits.chars() {
        let d = c.to_digit(radix)? as u64;
        v = v.checked_mul(u64::from(radix))?.checked_add(d)?;
        if v > 0xffff_ffff {
            return None;
        }
    }
    Some(v)
}

/// What `parse_service` found: ipvsadm's SERVICE_ADDR / SERVICE_PORT bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub addr: IpAddr,
    /// `Some` when the text had a port part.
    pub port: Option<u16>,
}

/// ipvsadm's `parse_service`: `host[:port]`, `[v6]:port` or a bare IPv6 address. `proto` is
/// the service protocol known at that point of the command line (for port names), if any.
pub fn parse_host_port(text: &str, proto: Option<&str>, names: &dyn Names) -> Option<HostPort> {
    // A purely numeric word (including the empty one) is refused before anything else.
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut host = text;
    let mut port_text: Option<&str> = None;
    if let Some(inner) = text.strip_prefix('[') {
        let close = inner.find(']')?;
        let after = &inner[close + 1..];
        if !after.starts_with(':') {
            return None;
        }
        host = &inner[..close];
        port_text = Some(&after[1..]);
    }
    let addr = if let Ok(v6) = host.parse::<Ipv6Addr>() {
        IpAddr::V6(v6)
    } else {
        // For a bracketed non-IPv6 host, ipvsadm looks for the port separator inside the
        // brackets only, finds none and forgets the port: "[1.2.3.4]:80" has no port.
        if text.starts_with('[') {
            port_text = None;
        }
        if let Some(colon) = host.rfind(':') {
            port_text = Some(&host[colon + 1..]);
            host = &host[..colon];
        }
        IpAddr::V4(inet_aton(host).or_else(|| names.host_v4(host))?)
    };
    let port = match port_text {
        None => None,
        Some(p) => Some(match number_in(p, 0, 65535) {
            Some(n) => n as u16,
            None => names.service_port(p, proto?)?,
        }),
    };
    Some(HostPort { addr, port })
}

/// ipvsadm's `parse_netmask` for IPv4 services: dotted quad (inet_aton) or a host name.
pub fn parse_v4_netmask(text: &str, names: &dyn Names) -> Option<Ipv4Addr> {
    inet_aton(text).or_else(|| names.host_v4(text))
}

#[cfg(test)]
pub mod fake {
    use super::*;

    /// Deterministic lookups for tests: the Debian /etc/services names the golden files use,
    /// and `localhost`; no reverse DNS at all (as on the machine that recorded the goldens).
    pub struct FakeNames;

    const SERVICES: &[(&str, u16, &[&str])] = &[
        ("http", 80, &["tcp", "udp", "sctp"]),
        ("https", 443, &["tcp", "udp", "sctp"]),
        ("http-alt", 8080, &["tcp", "udp"]),
        ("domain", 53, &["tcp", "udp"]),
        ("sip", 5060, &["tcp", "udp"]),
        ("ssh", 22, &["tcp", "sctp"]),
    ];

    impl Names for FakeNames {
        fn host_v4(&self, name: &str) -> Option<Ipv4Addr> {
            (name == "localhost").then_some(Ipv4Addr::LOCALHOST)
        }
        fn service_port(&self, name: &str, proto: &str) -> Option<u16> {
            SERVICES.iter().find(|(n, _, p)| *n == name && p.contains(&proto)).map(|s| s.1)
        }
        fn addr_name(&self, _addr: IpAddr) -> Option<String> {
            None
        }
        fn port_name(&self, port: u16, proto: &str) -> Option<String> {
            SERVICES.iter().find(|(_, n, p)| *n == port && p.contains(&proto)).map(|s| s.0.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{fake::FakeNames, *};

    #[test]
    fn inet_aton_rules() {
        assert_eq!(inet_aton("203.0.113"), Some(Ipv4Addr::new(203, 0, 0, 113)));
        assert_eq!(inet_aton("10.1"), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(inet_aton("0x7f.1"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(inet_aton("010.0.0.1"), Some(Ipv4Addr::new(8, 0, 0, 1)));
        assert_eq!(inet_aton("3405803786"), Some(Ipv4Addr::new(203, 0, 113, 10)));
        assert_eq!(inet_aton("203.0.113.300"), None);
        assert_eq!(inet_aton("1.2.3.4.5"), None);
        assert_eq!(inet_aton("1..2"), None);
        assert_eq!(inet_aton("foo"), None);
        assert_eq!(inet_aton("09.1.1.1"), None);
    }

    #[test]
    fn strtol_rules() {
        assert_eq!(strtol_exact(" +80"), Some(80));
        assert_eq!(strtol_exact("-1"), Some(-1));
        assert_eq!(strtol_exact("80 "), None);
        assert_eq!(strtol_exact(""), None);
        assert_eq!(strtol_exact("99999999999999999999"), None);
        assert_eq!(number_in("65536", 0, 65535), None);
        assert_eq!(atoi("255.255.255.0"), 255);
        assert_eq!(atoi("x"), 0);
    }

    #[test]
    fn host_port_forms() {
        let n = FakeNames;
        let hp = |t: &str| parse_host_port(t, Some("tcp"), &n);
        assert_eq!(hp("10.0.0.1:80"), Some(HostPort { addr: "10.0.0.1".parse().unwrap(), port: Some(80) }));
        assert_eq!(hp("10.0.0.1"), Some(HostPort { addr: "10.0.0.1".parse().unwrap(), port: None }));
        assert_eq!(hp("10.0.0.1:http"), Some(HostPort { addr: "10.0.0.1".parse().unwrap(), port: Some(80) }));
        assert_eq!(hp("[2001:db8::1]:443").unwrap().port, Some(443));
        assert_eq!(hp("2001:db8::1").unwrap(), HostPort { addr: "2001:db8::1".parse().unwrap(), port: None });
        assert_eq!(hp("[1.2.3.4]:80").unwrap(), HostPort { addr: "1.2.3.4".parse().unwrap(), port: None });
        assert_eq!(hp("[2001:db8::1]80"), None);
        assert_eq!(hp("8080"), None);
        assert_eq!(hp("10.0.0.1:99999"), None);
        assert_eq!(hp("10.0.0.1:http-nope"), None);
        assert_eq!(hp("localhost:22").unwrap().addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(parse_host_port("10.0.0.1:http", None, &n), None);
    }
}
