//! Persistent services (`ipvsadm -p`): the template lookup in front of the scheduler
//! (`ip_vs_sched_persist`). Types and key rules are in `lvs_common::persist`.

use lvs_common::{
    flow::{conn_flags, ConnEntry, FlowKey},
    persist::{
        SVC_F_PERSISTENT, fill_template_key, invalidated_key, scope_of, template_dport, template_flags, template_key, Template, TemplateScope,
        INVALID_PORT,
    },
    service::{dest_flags, ServiceConf},
    sip::mark_key,
};

use crate::{
    conntrack::{persist_add, MINUS_ONE, NSEC_PER_SEC},
    maps::{Scratch, DESTS, SCRATCH, SYSCTLS, TEMPLATES},
};

/// The firewall mark a service's templates are keyed on (0: not a fwmark service). A fwmark
/// service's key has protocol 0 and its mark in the first address word (`SvcKey::fwmark`).
/// Volatile reads, for the reason given in [`scope`].
#[inline(always)]
fn service_mark(svc: &ServiceConf) -> u32 {
    let (proto, word) = unsafe { (core::ptr::read_volatile(&svc.key.proto), core::ptr::read_volatile(&svc.key.addr[0])) };
    if proto == 0 {
        word
    } else {
        0
    }
}

/// The scope of `svc`'s templates, or `None` for a service without persistence.
#[inline(always)]
pub fn scope(svc: &ServiceConf, key: &FlowKey) -> Option<TemplateScope> {
    // Volatile reads: called before and after the scheduler, and a value the compiler kept
    // from the first call would be live across `schedule::pick`, making the verifier explore
    // it once with and once without persistence.
    let (flags, port, netmask) = unsafe {
        (
            core::ptr::read_volatile(&svc.flags),
            core::ptr::read_volatile(&svc.key.port),
            core::ptr::read_volatile(&svc.netmask),
        )
    };
    if flags & SVC_F_PERSISTENT == 0 {
        return None;
    }
    Some(scope_of(key.family, port, netmask, service_mark(svc)))
}

/// [`lookup`]'s answer when no template decides.
pub const MISS: u32 = u32::MAX;

/// The template's real server for a new connection of service `svc_id`, if it has a live
/// template whose server is still usable; its timer restarts with its timeout. An unusable
/// one is invalidated. [`MISS`]: the scheduler decides, then [`bind`] makes the template.
///
/// A BPF subprogram (not inlined) returning a plain number: however it misses, the caller
/// continues in one state, so the verifier explores the scheduler after it once. Inlined, each
/// way of missing reached `schedule::pick` in a state of its own, and the program went past
/// the verifier's million instructions.
#[inline(never)]
pub fn lookup(svc_id: u32, scope: &TemplateScope, key: &FlowKey, now: u64, pe: u32) -> u32 {
    // The keys live in a per-CPU scratch map, not on the stack: this frame and the caller's
    // together must stay within BPF's 512 bytes.
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else { return MISS };
    let tkey = unsafe { &mut (*scratch).tkey };
    fill_template_key(tkey, key, scope);
    // --pe sip: the Call-ID's share of the key (0 for any other service).
    mark_key(tkey, pe);
    let Some(t) = TEMPLATES.get_ptr_mut(tkey) else { return MISS };
    // Copies: the entry may be replaced under us by another CPU.
    let (expires, dest_id) = unsafe { ((*t).expires_ns, (*t).dest_id) };
    if expires <= now {
        return MISS;
    }
    if template_usable(svc_id, t) {
        unsafe { (*t).expires_ns = now + (*t).timeout_s as u64 * NSEC_PER_SEC };
        return dest_id;
    }
    invalidate(scratch, t);
    MISS
}

/// Makes the template for a client the scheduler just sent to `dest_id`
/// (`ip_vs_sched_persist`). `None` when the template table is full.
///
/// `pe` gives the Call-ID share of the key (sip.rs), asked for only where it is written: a
/// value held across the body costs stack that `lvs_xdp` does not have.
#[inline(always)]
pub fn bind<P: FnOnce() -> u32>(svc: &ServiceConf, scope: &TemplateScope, key: &FlowKey, dest_id: u32, now: u64, pe: P) -> Option<()> {
    let dest = DESTS.get(dest_id)?;
    let mut tkey = template_key(key, scope);
    mark_key(&mut tkey, pe());
    let t = Template {
        daddr: dest.addr,
        dport: template_dport(scope, dest.port),
        dest_port: dest.port,
        flags: 0,
        fwd: dest.fwd,
        _pad: 0,
        dest_id,
        timeout_s: svc.timeout,
        expires_ns: now + svc.timeout as u64 * NSEC_PER_SEC,
        _pad2: 0,
    };
    // An expired template not reclaimed yet is replaced: its server loses its PersistConn.
    let replaced: Option<u32> = unsafe { TEMPLATES.get(&tkey) }.map(|o| o.dest_id);
    TEMPLATES.insert(&tkey, &t, 0).ok()?;
    if let Some(old) = replaced {
        persist_add(old, MINUS_ONE);
    }
    persist_add(dest_id, 1);
    Some(())
}

/// `ip_vs_check_template`: the server must still be in this service and available, and, with
/// `expire_quiescent_template`, have a weight. Its OVERLOAD mark is not looked at: a client
/// with a template keeps going to an overloaded server.
#[inline(always)]
fn template_usable(svc_id: u32, t: *const Template) -> bool {
    let (dest_id, daddr, dport) = unsafe { ((*t).dest_id, (*t).daddr, (*t).dest_port) };
    let Some(d) = DESTS.get(dest_id) else { return false };
    if d.flags & dest_flags::AVAILABLE == 0 || d.svc_id != svc_id || d.addr != daddr || d.port != dport {
        return false;
    }
    !(d.weight == 0 && matches!(SYSCTLS.get(0), Some(s) if s.expire_quiescent_template != 0))
}

/// Moves an unusable template out of the way, as the kernel rehashes it with ports 0xffff: it
/// stays listed (and counted in its server's PersistConn) until its timer runs out, but
/// matches nothing.
#[inline(always)]
fn invalidate(scratch: *mut Scratch, t: *const Template) {
    let (tkey, ikey, moved) = unsafe { (&(*scratch).tkey, &mut (*scratch).ikey, &mut (*scratch).moved) };
    *moved = unsafe { *t };
    moved.dport = INVALID_PORT;
    *ikey = invalidated_key(tkey);
    let displaced: Option<u32> = unsafe { TEMPLATES.get(&*ikey) }.map(|o| o.dest_id);
    if TEMPLATES.insert(&*ikey, &*moved, 0).is_ok() {
        if let Some(old) = displaced {
            persist_add(old, MINUS_ONE);
        }
    } else {
        persist_add(moved.dest_id, MINUS_ONE);
    }
    let _ = TEMPLATES.remove(tkey);
}

/// Marks the template of controlled connection `e` ASSURED (`ip_vs_control_assure_ct`): its
/// TCP connection reached ESTABLISHED, or its UDP connection saw a reply. `client` is the
/// client's address and port as the connection's key holds them.
#[inline(always)]
pub fn assure(e: *mut ConnEntry, client: [u32; 4], client_port: u16, proto: u8, family: u8) {
    let (flags, vaddr, vport) = unsafe { ((*e).flags, (*e).vaddr, (*e).vport) };
    if flags & conn_flags::CONTROLLED == 0 || flags & conn_flags::CTL_ASSURED != 0 {
        return;
    }
    let conn = FlowKey { src: client, dst: vaddr, sport: client_port, dport: vport, proto, family, _pad: [0; 2] };
    let scope = unsafe { conn_flags::scope(&*e) };
    let mut tkey = template_key(&conn, &scope);
    mark_key(&mut tkey, unsafe { conn_flags::pe(&*e) });
    if let Some(t) = TEMPLATES.get_ptr_mut(&tkey) {
        unsafe { (*t).flags |= template_flags::ASSURED };
    }
    unsafe { (*e).flags |= conn_flags::CTL_ASSURED };
}
