//! The host's interface addresses, from `getifaddrs`, copied into owned values so callers
//! filter them without touching the C list.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One address of one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfAddr {
    pub interface: String,
    pub addr: IpAddr,
    /// The subnet mask, in the address's family, when the kernel gives one.
    pub netmask: Option<IpAddr>,
}

impl IfAddr {
    /// Whether `other` is on this address's subnet (not for host routes: /32, /128).
    pub fn on_link(&self, other: IpAddr) -> bool {
        match (self.addr, self.netmask, other) {
            (IpAddr::V4(a), Some(IpAddr::V4(m)), IpAddr::V4(o)) => {
                let (a, m, o) = (u32::from(a), u32::from(m), u32::from(o));
                m != u32::MAX && a & m == o & m
            }
            (IpAddr::V6(a), Some(IpAddr::V6(m)), IpAddr::V6(o)) => {
                let (a, m, o) = (u128::from(a), u128::from(m), u128::from(o));
                m != u128::MAX && a & m == o & m
            }
            _ => false,
        }
    }
}

/// An IPv4 or IPv6 socket address as an `IpAddr` (None for other families or a null pointer).
///
/// # Safety
/// `sa` must be null or point at a socket address of the size its family says.
unsafe fn ip_of(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    match (*sa).sa_family as i32 {
        libc::AF_INET => {
            let a = (*(sa as *const libc::sockaddr_in)).sin_addr.s_addr;
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(a))))
        }
        libc::AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from((*(sa as *const libc::sockaddr_in6)).sin6_addr.s6_addr))),
        _ => None,
    }
}

/// Every IPv4 and IPv6 address of every interface, in the kernel's order (empty if
/// `getifaddrs` fails).
pub fn all() -> Vec<IfAddr> {
    let mut out = Vec::new();
    // SAFETY: getifaddrs' list is walked read-only and freed once; every pointer is checked.
    unsafe {
        let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut ifap) != 0 {
            return out;
        }
        let mut p = ifap;
        while !p.is_null() {
            let ifa = &*p;
            p = ifa.ifa_next;
            let Some(addr) = ip_of(ifa.ifa_addr) else { continue };
            out.push(IfAddr {
                interface: std::ffi::CStr::from_ptr(ifa.ifa_name).to_string_lossy().into_owned(),
                addr,
                netmask: ip_of(ifa.ifa_netmask),
            });
        }
        libc::freeifaddrs(ifap);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(addr: &str, mask: &str) -> IfAddr {
        IfAddr { interface: "eth0".into(), addr: addr.parse().unwrap(), netmask: Some(mask.parse().unwrap()) }
    }

    #[test]
    fn on_link_follows_the_mask_and_the_family() {
        let v4 = a("192.0.2.1", "255.255.255.0");
        assert!(v4.on_link("192.0.2.200".parse().unwrap()));
        assert!(!v4.on_link("198.51.100.1".parse().unwrap()));
        assert!(!v4.on_link("2001:db8::1".parse().unwrap()));
        assert!(!a("203.0.113.10", "255.255.255.255").on_link("203.0.113.10".parse().unwrap()));
        let v6 = a("2001:db8:1::1", "ffff:ffff:ffff:ffff::");
        assert!(v6.on_link("2001:db8:1::99".parse().unwrap()));
        assert!(!v6.on_link("2001:db8:2::1".parse().unwrap()));
    }

    #[test]
    fn loopback_is_listed() {
        assert!(all().iter().any(|i| i.addr == IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }
}
