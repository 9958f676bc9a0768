//! Connection-table types: the flow key, the connection entry, and the NAT reverse index.
//!
//! `CONNS` maps the client-side 5-tuple (client -> VIP) to a [`ConnEntry`], like IPVS's
//! connection hash keyed on the input direction. For NAT connections `CONNS_OUT` maps the
//! real-server-side 5-tuple (RIP -> client) back to the `CONNS` key, so replies find their
//! connection (IPVS's output lookup). DR/TUN connections have no `CONNS_OUT` entry.

/// Default capacity of `CONNS` (and of `CONNS_OUT`): one million concurrent connections.
pub const DEFAULT_CONN_TABLE_SIZE: u32 = 1 << 20;

/// A directional 5-tuple. 40 bytes, no hidden padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    /// Source address, network order (IPv4 in `src[0]`).
    pub src: [u32; 4],
    /// Destination address, network order.
    pub dst: [u32; 4],
    /// Source port, network order.
    pub sport: u16,
    /// Destination port, network order.
    pub dport: u16,
    /// IP protocol number (6 or 17).
    pub proto: u8,
    /// Address family (`AF_INET` = 2, `AF_INET6` = 10).
    pub family: u8,
    /// Always zero.
    pub _pad: [u8; 2],
}

/// Connection flags (`ConnEntry::flags`).
pub mod conn_flags {
    /// The entry has a `CONNS_OUT` twin (NAT): the state machine uses INPUT/OUTPUT, not
    /// INPUT_ONLY.
    pub const NAT: u16 = 0x1;
    /// The connection was made under a persistence template (IPVS's `cp->control`); its key
    /// is rebuilt from the client key with `ctl_mask`, `ctl_mark` and [`CTL_ANY_PORT`].
    pub const CONTROLLED: u16 = 0x2;
    /// The template's key leaves the virtual port out (`persist::TemplateScope::any_port`).
    pub const CTL_ANY_PORT: u16 = 0x4;
    /// The template has been marked ASSURED through this connection already: later packets
    /// need not look it up again.
    pub const CTL_ASSURED: u16 = 0x8;

    /// The scope of a controlled connection's template.
    #[inline(always)]
    pub fn scope(e: &super::ConnEntry) -> crate::persist::TemplateScope {
        crate::persist::TemplateScope { mask: e.ctl_mask, mark: e.ctl_mark, any_port: e.flags & CTL_ANY_PORT != 0 }
    }
    /// A DR/TUN connection whose reply was seen by the director (routed back through it):
    /// IPVS clears `IP_VS_CONN_F_NOOUTPUT` then, and its client packets use the INPUT table
    /// from then on, not INPUT_ONLY.
    pub const SEEN_OUTPUT: u16 = 0x10;
    /// Installed by a sync backup from a master's message (IPVS's `IP_VS_CONN_F_SYNC`).
    pub const SYNCED: u16 = 0x20;
    /// The template is a sip persistence engine's: `ctl_mark` holds its Call-ID share
    /// (`lvs_common::sip::key_hash`; such services have no firewall mark).
    pub const CTL_PE_SIP: u16 = 0x40;

    /// The Call-ID share of a controlled connection's template key (0: not a sip template).
    /// Arithmetic, not a branch: this runs on the dataplane's per-packet paths, where a branch
    /// doubles the states the verifier walks after it.
    #[inline(always)]
    pub fn pe(e: &super::ConnEntry) -> u32 {
        e.ctl_mark & 0u32.wrapping_sub(((e.flags & CTL_PE_SIP) >> 6) as u32)
    }
}

/// One tracked connection (value of `CONNS`). 72 bytes, no hidden padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ConnEntry {
    /// Virtual address the client talks to, network order.
    pub vaddr: [u32; 4],
    /// Real server address, network order.
    pub daddr: [u32; 4],
    /// Virtual port, network order.
    pub vport: u16,
    /// Real server port, network order.
    pub dport: u16,
    /// Forwarding method (`IP_VS_CONN_F_*` numbering: 0 masq, 2 tunnel, 3 route).
    pub fwd: u8,
    /// TCP state index (`tcp_state`), or `tcp_state::UDP`.
    pub state: u8,
    /// `conn_flags::*`.
    pub flags: u16,
    /// Index of the service in `SERVICES`.
    pub svc_id: u32,
    /// Index of the real server in `DESTS`.
    pub dest_id: u32,
    /// When the entry expires, in `bpf_ktime_get_ns` time (CLOCK_MONOTONIC). An expired entry
    /// no longer matches; userspace reclaims it.
    pub expires_ns: u64,
    /// 1 while the connection counts in its real server's ActiveConn, 0 while in InActConn
    /// (IPVS's `IP_VS_CONN_F_INACTIVE`, inverted). Created as the state its first packet moves
    /// it to has it (1 for a TCP SYN: SYN_RECV is active); after that the state machine changes it
    /// only by atomic exchange, and moves the count only when the exchange changed it, so two
    /// CPUs handling packets of one connection at once move its count once. Whoever removes
    /// the entry takes the count away from the counter this names.
    pub active: u64,
    /// For a `CONTROLLED` connection: the template's client mask (`TemplateScope::mask`).
    pub ctl_mask: u32,
    /// For a `CONTROLLED` connection of a firewall-mark service: the mark; with `CTL_PE_SIP`,
    /// the template's Call-ID share; else 0.
    pub ctl_mark: u32,
}

/// Value of `CONNS_OUT`: the `CONNS` key of the connection this reply belongs to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ConnRef {
    pub in_key: FlowKey,
}

const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);
const _: () = assert!(core::mem::size_of::<ConnEntry>() == 72);
const _: () = assert!(core::mem::size_of::<ConnRef>() == 40);
const _: () = assert!(core::mem::offset_of!(ConnEntry, expires_ns) == 48);

/// Byte offset in a [`ConnEntry`] of the 8-byte word that holds `state` (with the ports, the
/// forwarding method and the flags). The dataplane changes a connection's state by a
/// compare-and-exchange of this word: IPVS changes it under the connection's lock, and without
/// one a CPU handling the client's ACK could write back the ESTABLISHED it read while another
/// CPU moved the connection to FIN_WAIT on the server's FIN. Values of a BPF hash map are
/// 8-byte aligned, so the word is too.
pub const STATE_WORD_OFFSET: usize = 32;
const _: () = assert!(core::mem::offset_of!(ConnEntry, vport) == STATE_WORD_OFFSET);
const _: () = assert!(core::mem::offset_of!(ConnEntry, state) == STATE_WORD_OFFSET + 5);
const _: () = assert!(core::mem::offset_of!(ConnEntry, flags) == STATE_WORD_OFFSET + 6);

/// The flags held in a state word.
#[inline(always)]
pub fn flags_of_word(word: u64) -> u16 {
    let b = word.to_ne_bytes();
    u16::from_ne_bytes([b[6], b[7]])
}

/// A state word with its state replaced.
#[inline(always)]
pub fn with_state(word: u64, state: u8) -> u64 {
    let mut b = word.to_ne_bytes();
    b[5] = state;
    u64::from_ne_bytes(b)
}

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::ConnEntry {}
    unsafe impl aya::Pod for super::ConnRef {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state byte of a state word (the dataplane loads the byte itself, see `update_with`).
    fn state_of_word(word: u64) -> u8 {
        word.to_ne_bytes()[5]
    }

    /// The word as the dataplane reads it from a map value: the entry's bytes at the offset.
    fn word_of(e: &ConnEntry) -> u64 {
        let bytes: [u8; 72] = unsafe { core::mem::transmute(*e) };
        u64::from_ne_bytes(bytes[STATE_WORD_OFFSET..STATE_WORD_OFFSET + 8].try_into().unwrap())
    }

    #[test]
    fn the_state_word_holds_the_entrys_state_and_flags() {
        let e = ConnEntry {
            vport: 0x5000,
            dport: 0x1f90,
            fwd: 3,
            state: 7,
            flags: conn_flags::NAT | conn_flags::SEEN_OUTPUT | conn_flags::CTL_PE_SIP,
            ..Default::default()
        };
        let w = word_of(&e);
        assert_eq!(state_of_word(w), 7);
        assert_eq!(flags_of_word(w), e.flags);
        // Replacing the state leaves every other field of the word as it was.
        let w2 = with_state(w, 4);
        let mut bytes: [u8; 72] = unsafe { core::mem::transmute(e) };
        bytes[STATE_WORD_OFFSET..STATE_WORD_OFFSET + 8].copy_from_slice(&w2.to_ne_bytes());
        let e2: ConnEntry = unsafe { core::mem::transmute(bytes) };
        assert_eq!(e2, ConnEntry { state: 4, ..e });
    }
}
