//! Persistence templates (`ipvsadm -p`), as IPVS keeps them (`ip_vs_sched_persist`).
//!
//! A template says "this client network goes to this real server" for one virtual service.
//! The kernel keeps templates in its connection table with client port 0; here they live in
//! their own map, `TEMPLATES`, keyed by a [`FlowKey`] built by [`template_key`], so a real
//! connection can never be mistaken for one. The scheduler runs only when no valid template
//! exists.
//!
//! What the kernel tracks with a reference count (`n_control`, the connections a template
//! controls) is derived instead: every controlled connection carries what is needed to rebuild
//! its template's key (`ConnEntry::ctl_mask`, `ctl_mark`, `conn_flags::CTL_*`), and userspace,
//! which walks the connection table every second anyway, postpones a template that still
//! controls a live connection. That keeps the dataplane free of a counter that userspace
//! would have to decrement without an atomic on a hash map value.

use crate::flow::FlowKey;

/// The kernel's default persistence timeout when `-p` has no value (`IPVS_SVC_PERSISTENT_TIMEOUT`).
pub const DEFAULT_PERSISTENCE_TIMEOUT: u32 = 360;

/// How far a template is postponed while it still controls connections, and the timeout it
/// keeps from then on (`ip_vs_conn_expire` sets `cp->timeout = 60*HZ` for good).
pub const POSTPONE_SECS: u32 = 60;

/// The FTP control port: its templates have virtual and real port 0, so data connections on
/// other ports follow the control connection.
pub const FTP_PORT: u16 = 21;

/// The port an invalidated template is moved to so that it can no longer match
/// (`ip_vs_check_template` rewrites vport and dport to 0xffff and rehashes it).
pub const INVALID_PORT: u16 = 0xffff;

/// `IP_VS_SVC_F_PERSISTENT`.
pub const SVC_F_PERSISTENT: u32 = 0x1;

/// `Template::flags` bits.
pub mod template_flags {
    /// `IP_VS_CTPL_S_ASSURED`: a controlled TCP connection reached ESTABLISHED, or a reply of a
    /// controlled UDP connection was seen. `-L -c` shows the state as ASSURED instead of NONE.
    pub const ASSURED: u16 = 0x1;
}

/// A persistence template (value of `TEMPLATES`). 48 bytes, no hidden padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Template {
    /// Real server address, network order.
    pub daddr: [u32; 4],
    /// Real server port as the template shows it (network order): the server's port for a
    /// normal service, 0 for port-zero, firewall-mark and FTP services.
    pub dport: u16,
    /// The real server's own port (network order), to tell it from another server on the same
    /// address when its `DESTS` slot is checked.
    pub dest_port: u16,
    /// `template_flags::*`.
    pub flags: u16,
    /// Forwarding method of the real server when the template was made.
    pub fwd: u8,
    pub _pad: u8,
    /// `DESTS` slot of the real server.
    pub dest_id: u32,
    /// Seconds the timer restarts with when a new connection uses the template: the service's
    /// persistence timeout, or [`POSTPONE_SECS`] once it has been postponed.
    pub timeout_s: u32,
    /// When the template expires (`bpf_ktime_get_ns` time).
    pub expires_ns: u64,
    pub _pad2: u64,
}

const _: () = assert!(core::mem::size_of::<Template>() == 48);

/// How a service's templates are keyed, from its configuration (`ServiceConf` fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TemplateScope {
    /// IPv4: the netmask in network order, applied to the address word. IPv6: the prefix
    /// length.
    pub mask: u32,
    /// Firewall mark of a fwmark service, else 0.
    pub mark: u32,
    /// The virtual port is left out of the key (port-zero, fwmark and FTP services): every
    /// port of the virtual address sticks to the same server.
    pub any_port: bool,
}

/// Masks the client address: IPv4 with the netmask, IPv6 keeps `prefix` leading bits.
#[inline(always)]
pub fn mask_addr(addr: [u32; 4], family: u8, mask: u32) -> [u32; 4] {
    if family != crate::AF_INET6 {
        return [addr[0] & mask, 0, 0, 0];
    }
    let mut out = [0u32; 4];
    let mut i = 0;
    while i < 4 {
        let bits = mask.saturating_sub(32 * i as u32);
        // Network order: the leading bits of the word are its first bytes in memory.
        let host_mask = if bits >= 32 { u32::MAX } else if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
        out[i] = addr[i] & host_mask.to_be();
        i += 1;
    }
    out
}

/// The template key for a connection `conn` (client-side key) of a service with `scope`
/// (`ip_vs_sched_persist`): `<proto, caddr & mask, 0, vaddr, vport>`, with vport 0 when the
/// port is not part of the key, and protocol 0 (`IPPROTO_IP`) and the mark as the address for
/// a firewall-mark service.
#[inline(always)]
pub fn template_key(conn: &FlowKey, scope: &TemplateScope) -> FlowKey {
    let (dst, proto) = if scope.mark != 0 { ([scope.mark.to_be(), 0, 0, 0], 0) } else { (conn.dst, conn.proto) };
    FlowKey {
        src: mask_addr(conn.src, conn.family, scope.mask),
        dst,
        sport: 0,
        dport: if scope.any_port { 0 } else { conn.dport },
        proto,
        family: conn.family,
        _pad: [0; 2],
    }
}

/// [`template_key`] written in place (the dataplane builds keys in map memory, not on its
/// small stack).
#[inline(always)]
pub fn fill_template_key(out: &mut FlowKey, conn: &FlowKey, scope: &TemplateScope) {
    out.src = mask_addr(conn.src, conn.family, scope.mask);
    if scope.mark != 0 {
        out.dst = [scope.mark.to_be(), 0, 0, 0];
        out.proto = 0;
    } else {
        out.dst = conn.dst;
        out.proto = conn.proto;
    }
    out.sport = 0;
    out.dport = if scope.any_port { 0 } else { conn.dport };
    out.family = conn.family;
    out._pad = [0; 2];
}

/// The scope of a service: `port` is the service's virtual port (network order, 0 for a
/// port-zero or fwmark service), `netmask` as `ServiceConf::netmask` (IPv4 mask in host
/// order, IPv6 prefix length).
#[inline(always)]
pub fn scope_of(family: u8, port: u16, netmask: u32, mark: u32) -> TemplateScope {
    let mask = if family == crate::AF_INET6 { netmask } else { netmask.to_be() };
    TemplateScope { mask, mark, any_port: mark != 0 || port == 0 || port == FTP_PORT.to_be() }
}

/// The port a new connection is forwarded to (`ip_vs_sched_persist`): the client's destination
/// port, replaced by the server's port when the client came to the service's own port and the
/// server has one. (So a port-zero service keeps every port.)
#[inline(always)]
pub fn conn_dport(client_dport: u16, svc_port: u16, dest_port: u16) -> u16 {
    if client_dport == svc_port && dest_port != 0 {
        dest_port
    } else {
        client_dport
    }
}

/// The port a new template records for its real server: the server's port for a normal
/// service, 0 when the virtual port is not part of the key.
#[inline(always)]
pub fn template_dport(scope: &TemplateScope, dest_port: u16) -> u16 {
    if scope.any_port {
        0
    } else {
        dest_port
    }
}

/// The key an invalidated template moves to: ports 0xffff, so it matches nothing while it
/// waits for its timer.
#[inline(always)]
pub fn invalidated_key(k: &FlowKey) -> FlowKey {
    FlowKey { dport: INVALID_PORT, ..*k }
}

/// The expiry a template gets when userspace finds it due while a connection it controls is
/// still alive past that moment: postponed by [`POSTPONE_SECS`] at a time from when it was
/// due, as the kernel's timer does, as often as `alive_until` requires but never further
/// ahead than the kernel's next check after `now`. `None`: it expires.
pub fn postponed(expires_ns: u64, alive_until_ns: u64, now_ns: u64) -> Option<u64> {
    const STEP: u64 = POSTPONE_SECS as u64 * 1_000_000_000;
    let mut e = expires_ns;
    if alive_until_ns <= e {
        return None;
    }
    // Each check the kernel would have made up to now found a controlled connection alive.
    while e <= now_ns && alive_until_ns > e {
        e += STEP;
    }
    if e <= now_ns {
        return None;
    }
    if e == expires_ns {
        e += STEP;
    }
    Some(e)
}

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::Template {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, proto: u8) -> FlowKey {
        FlowKey {
            src: [u32::from_ne_bytes(src), 0, 0, 0],
            dst: [u32::from_ne_bytes(dst), 0, 0, 0],
            sport: sport.to_be(),
            dport: dport.to_be(),
            proto,
            family: crate::AF_INET,
            _pad: [0; 2],
        }
    }

    #[test]
    fn a_normal_service_keys_on_the_masked_client_and_the_virtual_port() {
        let scope = scope_of(crate::AF_INET, 80u16.to_be(), 0xffff_ff00, 0);
        let t = template_key(&key([198, 51, 100, 23], [203, 0, 113, 11], 41214, 80, 6), &scope);
        assert_eq!(t, key([198, 51, 100, 0], [203, 0, 113, 11], 0, 80, 6));
        let mut filled = key([1, 2, 3, 4], [5, 6, 7, 8], 9, 10, 17);
        fill_template_key(&mut filled, &key([198, 51, 100, 23], [203, 0, 113, 11], 41214, 80, 6), &scope);
        assert_eq!(filled, t);
        assert_eq!(template_dport(&scope, 8080u16.to_be()), 8080u16.to_be());
    }

    #[test]
    fn port_zero_fwmark_and_ftp_services_leave_the_port_out() {
        let p0 = scope_of(crate::AF_INET, 0, u32::MAX, 0);
        let c = key([198, 51, 100, 20], [203, 0, 113, 12], 41222, 443, 6);
        assert_eq!(template_key(&c, &p0), key([198, 51, 100, 20], [203, 0, 113, 12], 0, 0, 6));
        assert_eq!(template_dport(&p0, 0), 0);
        let fwm = scope_of(crate::AF_INET, 0, u32::MAX, 7);
        let t = template_key(&c, &fwm);
        assert_eq!((t.dst, t.proto, t.dport), ([7u32.to_be(), 0, 0, 0], 0, 0));
        assert!(scope_of(crate::AF_INET, 21u16.to_be(), u32::MAX, 0).any_port);
    }

    #[test]
    fn ipv6_keeps_the_prefix() {
        let a = [0x2001_0db8u32.to_be(), 0x1234_5678u32.to_be(), 0x9abc_def0u32.to_be(), 1u32.to_be()];
        assert_eq!(mask_addr(a, crate::AF_INET6, 48), [0x2001_0db8u32.to_be(), 0x1234_0000u32.to_be(), 0, 0]);
        assert_eq!(mask_addr(a, crate::AF_INET6, 128), a);
        assert_eq!(mask_addr(a, crate::AF_INET6, 64), [a[0], a[1], 0, 0]);
    }

    #[test]
    fn connection_port_follows_the_kernel() {
        let (svc, dest) = (80u16.to_be(), 8080u16.to_be());
        assert_eq!(conn_dport(80u16.to_be(), svc, dest), dest);
        // Port-zero service: the client's port is kept, whatever the server's port.
        assert_eq!(conn_dport(443u16.to_be(), 0, 0), 443u16.to_be());
        assert_eq!(conn_dport(80u16.to_be(), svc, 0), 80u16.to_be());
    }

    /// The spec's UDP example: template due at 9 s while its connection lives until 12 s:
    /// postponed to 69 s; due again at 69 s with nothing alive: gone.
    #[test]
    fn postponement_steps_sixty_seconds_from_the_due_time() {
        let s = 1_000_000_000u64;
        assert_eq!(postponed(9 * s, 12 * s, 8 * s), Some(69 * s));
        assert_eq!(postponed(9 * s, 12 * s, 10 * s), Some(69 * s));
        assert_eq!(postponed(69 * s, 12 * s, 70 * s), None);
        assert_eq!(postponed(9 * s, 9 * s, 10 * s), None);
        // Found late (daemon restarted): every check since found the connection alive.
        assert_eq!(postponed(9 * s, 200 * s, 130 * s), Some(189 * s));
        // A connection that ended between two checks: the second one drops the template.
        assert_eq!(postponed(9 * s, 30 * s, 100 * s), None);
    }
}
