//! Which XDP mode an interface's program runs in, asked of the kernel (rtnetlink
//! `RTM_GETLINK`, attribute `IFLA_XDP` / `IFLA_XDP_ATTACHED`). A link pinned by an earlier lvsd
//! and taken over after a restart does not say how it was attached; the interface does.

use std::{ffi::CString, mem::size_of};

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_ATTACHED: u16 = 2;
/// Nested attributes carry this flag in their type.
const NLA_TYPE_MASK: u16 = 0x3fff;

#[repr(C)]
struct Request {
    // struct nlmsghdr
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
    // struct ifinfomsg
    family: u8,
    _pad: u8,
    ifi_type: u16,
    index: i32,
    ifi_flags: u32,
    change: u32,
}

/// `native`, `generic` or `offload` for the program on `iface`; `None` if there is none or the
/// kernel could not be asked.
pub fn query(iface: &str) -> Option<&'static str> {
    let name = CString::new(iface).ok()?;
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return None;
    }
    // SAFETY: plain socket syscalls on a descriptor we own and close.
    unsafe {
        let fd = libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE);
        if fd < 0 {
            return None;
        }
        let tv = libc::timeval { tv_sec: 2, tv_usec: 0 };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            size_of::<libc::timeval>() as u32,
        );
        let req = Request {
            len: size_of::<Request>() as u32,
            kind: RTM_GETLINK,
            flags: NLM_F_REQUEST,
            seq: 1,
            pid: 0,
            family: libc::AF_UNSPEC as u8,
            _pad: 0,
            ifi_type: 0,
            index: index as i32,
            ifi_flags: 0,
            change: 0,
        };
        let sent = libc::send(fd, &req as *const _ as *const libc::c_void, size_of::<Request>(), 0);
        let mut buf = vec![0u8; 65536];
        let got = if sent == size_of::<Request>() as isize {
            libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0)
        } else {
            -1
        };
        libc::close(fd);
        if got <= 0 {
            return None;
        }
        buf.truncate(got as usize);
        parse(&buf)
    }
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

/// The mode in an `RTM_NEWLINK` answer.
fn parse(msg: &[u8]) -> Option<&'static str> {
    const NLMSG_HDR: usize = 16;
    const IFINFO: usize = 16;
    let kind = u16_at(msg, 4)?;
    if kind == NLMSG_ERROR || kind != RTM_NEWLINK {
        return None;
    }
    let len = u32::from_ne_bytes(msg.get(0..4)?.try_into().ok()?) as usize;
    let attrs = msg.get(NLMSG_HDR + IFINFO..len.min(msg.len()))?;
    let xdp = find_attr(attrs, IFLA_XDP)?;
    let attached = *find_attr(xdp, IFLA_XDP_ATTACHED)?.first()?;
    match attached {
        1 => Some("native"),
        2 => Some("generic"),
        3 => Some("offload"),
        // XDP_ATTACHED_MULTI: programs in several modes at once; not lvsd's doing.
        4 => Some("multi"),
        _ => None,
    }
}

/// The payload of the first attribute of type `kind` in a run of 4-byte-aligned rtattrs.
fn find_attr(mut b: &[u8], kind: u16) -> Option<&[u8]> {
    while b.len() >= 4 {
        let len = u16_at(b, 0)? as usize;
        let t = u16_at(b, 2)? & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            return None;
        }
        if t == kind {
            return Some(&b[4..len]);
        }
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_attached_mode_in_nested_attributes() {
        let mut m = Vec::new();
        // nlmsghdr: len filled below, RTM_NEWLINK.
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&[0; 16]); // ifinfomsg
        // IFLA_MTU (4), 8 bytes, then IFLA_XDP nested (flag 0x8000) holding IFLA_XDP_ATTACHED=2
        // (padded to 8) and IFLA_XDP_PROG_ID.
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&4u16.to_ne_bytes());
        m.extend_from_slice(&1500u32.to_ne_bytes());
        m.extend_from_slice(&20u16.to_ne_bytes());
        m.extend_from_slice(&(IFLA_XDP | 0x8000).to_ne_bytes());
        m.extend_from_slice(&5u16.to_ne_bytes());
        m.extend_from_slice(&IFLA_XDP_ATTACHED.to_ne_bytes());
        m.extend_from_slice(&[2, 0, 0, 0]);
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&4u16.to_ne_bytes());
        m.extend_from_slice(&77u32.to_ne_bytes());
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(parse(&m), Some("generic"));
        m[48] = 1;
        assert_eq!(parse(&m), Some("native"));
        // No XDP attribute at all.
        m.truncate(40);
        m[0..4].copy_from_slice(&40u32.to_ne_bytes());
        assert_eq!(parse(&m), None);
    }
}
