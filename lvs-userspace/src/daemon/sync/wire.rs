//! IPVS connection synchronisation messages, version 1 (`struct ip_vs_sync_mesg` and
//! `ip_vs_sync_v4`/`_v6`), and the recognition of version 0. Every field is big-endian on the
//! wire; ports are carried as they sit in the packet.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Size of the v1 message header.
pub const HEADER_LEN: usize = 8;
/// Size of an IPv4 entry without options.
pub const V4_LEN: usize = 36;
/// Size of an IPv6 entry without options.
pub const V6_LEN: usize = 72;
/// `STYPE_F_INET6`.
const STYPE_F_INET6: u8 = 0x1;
/// `SVER_MASK`/`SVER_SHIFT`: the entry version in the top 4 bits of `ver_size`.
const SVER_SHIFT: u16 = 12;
const SIZE_MASK: u16 = 0x0fff;
/// `IPVS_OPT_F_PARAM`: an option the receiver may skip when it does not know it.
const OPT_F_PARAM: u8 = 0x40;
/// `IPVS_OPT_SEQ_DATA`, `IPVS_OPT_PE_DATA`, `IPVS_OPT_PE_NAME`.
const OPT_SEQ_DATA: u8 = 1;
const OPT_PE_DATA: u8 = 2;
const OPT_PE_NAME: u8 = 3;

/// `IP_VS_CONN_F_*` bits that travel in `flags`.
pub mod flags {
    /// Forwarding method: 0 masquerading, 1 local, 2 tunnel, 3 direct routing.
    pub const FWD_MASK: u32 = 0x0007;
    pub const HASHED: u32 = 0x0040;
    /// Replies do not pass the director (DR/TUN until one is seen).
    pub const NOOUTPUT: u32 = 0x0080;
    /// The connection counts in InActConn.
    pub const INACTIVE: u32 = 0x0100;
    pub const SEQ_MASK: u32 = 0x0600;
    pub const NO_CPORT: u32 = 0x0800;
    /// A persistence template.
    pub const TEMPLATE: u32 = 0x1000;
    /// Added by the backup to what it installs.
    pub const SYNC: u32 = 0x0020;
    /// `IP_VS_CONN_F_BACKUP_MASK`: what the backup keeps of the received flags.
    pub const BACKUP_MASK: u32 = FWD_MASK | NOOUTPUT | INACTIVE | SEQ_MASK | NO_CPORT | TEMPLATE;
}

/// One connection (or template) as the sync protocol carries it. Addresses share a family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncConn {
    pub protocol: u8,
    /// `IP_VS_CONN_F_*`.
    pub flags: u32,
    /// The protocol's state number (TCP `IP_VS_TCP_S_*`, UDP 0, templates 0/1).
    pub state: u16,
    pub cport: u16,
    pub vport: u16,
    pub dport: u16,
    pub fwmark: u32,
    /// The current state's full timeout, seconds.
    pub timeout: u32,
    pub caddr: IpAddr,
    pub vaddr: IpAddr,
    pub daddr: IpAddr,
}

impl SyncConn {
    fn len(&self) -> usize {
        if self.caddr.is_ipv6() {
            V6_LEN
        } else {
            V4_LEN
        }
    }
}

/// Builds v1 messages of at most `maxlen` bytes for one sync id.
pub struct Encoder {
    syncid: u8,
    maxlen: usize,
    buf: Vec<u8>,
    count: u8,
}

impl Encoder {
    pub fn new(syncid: u8, maxlen: u16) -> Self {
        let mut e = Encoder { syncid, maxlen: usize::from(maxlen).max(HEADER_LEN + V6_LEN), buf: Vec::new(), count: 0 };
        e.reset();
        e
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.buf.extend_from_slice(&[0, self.syncid, 0, 0, 0, 1, 0, 0]);
        self.count = 0;
    }

    /// Appends one entry; returns a finished message first when this one does not fit (or
    /// the count byte is full).
    pub fn push(&mut self, c: &SyncConn) -> Option<Vec<u8>> {
        let pad = (4 - self.buf.len() % 4) % 4;
        let done = if self.count == u8::MAX || self.buf.len() + pad + c.len() > self.maxlen { self.take() } else { None };
        // The kernel pads before appending, and counts the pad in the header's size.
        let pad = (4 - self.buf.len() % 4) % 4;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
        encode_entry(&mut self.buf, c);
        self.count += 1;
        done
    }

    /// The message built so far, if it holds any entry; the encoder starts a new one.
    pub fn take(&mut self) -> Option<Vec<u8>> {
        if self.count == 0 {
            return None;
        }
        let size = self.buf.len() as u16;
        self.buf[2..4].copy_from_slice(&size.to_be_bytes());
        self.buf[4] = self.count;
        let out = std::mem::take(&mut self.buf);
        self.reset();
        Some(out)
    }
}

fn put_addr(buf: &mut Vec<u8>, a: &IpAddr) {
    match a {
        IpAddr::V4(a) => buf.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => buf.extend_from_slice(&a.octets()),
    }
}

/// One entry without options (lvsd has no sequence adjustment and no persistence engine).
pub fn encode_entry(buf: &mut Vec<u8>, c: &SyncConn) {
    let v6 = c.caddr.is_ipv6();
    buf.push(if v6 { STYPE_F_INET6 } else { 0 });
    buf.push(c.protocol);
    // Entry version 0 in the top bits, the length below.
    buf.extend_from_slice(&(c.len() as u16 & SIZE_MASK).to_be_bytes());
    buf.extend_from_slice(&(c.flags & !flags::HASHED).to_be_bytes());
    buf.extend_from_slice(&c.state.to_be_bytes());
    buf.extend_from_slice(&c.cport.to_be_bytes());
    buf.extend_from_slice(&c.vport.to_be_bytes());
    buf.extend_from_slice(&c.dport.to_be_bytes());
    buf.extend_from_slice(&c.fwmark.to_be_bytes());
    buf.extend_from_slice(&c.timeout.to_be_bytes());
    put_addr(buf, &c.caddr);
    put_addr(buf, &c.vaddr);
    put_addr(buf, &c.daddr);
}

/// Why a message (or the rest of it) was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Shorter than a header, or the header's size is not the datagram's.
    BadLength { got: usize, header: usize },
    /// A version 0 message (`sync_version=0` master): recognised, not installed.
    Version0,
    /// Another master's sync id.
    OtherSyncId(u8),
    /// Entry `index` runs past the message, has a bad length, a version other than 0, or an
    /// unknown mandatory option.
    BadEntry { index: usize, why: &'static str },
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::BadLength { got, header } => write!(f, "message of {got} bytes says {header}"),
            Refused::Version0 => write!(f, "version 0 message (set the master's sync_version to 1)"),
            Refused::OtherSyncId(id) => write!(f, "message for sync id {id}"),
            Refused::BadEntry { index, why } => write!(f, "entry {index}: {why}"),
        }
    }
}

/// Parses one received datagram as the kernel's `ip_vs_process_message` does for a backup
/// with sync id `own_syncid`. Entries before a bad one are returned with the error, as the
/// kernel has installed them by then.
pub fn decode(msg: &[u8], own_syncid: u8) -> (Vec<SyncConn>, Option<Refused>) {
    let mut out = Vec::new();
    if msg.len() < 4 {
        return (out, Some(Refused::BadLength { got: msg.len(), header: 0 }));
    }
    let size = usize::from(u16::from_be_bytes([msg[2], msg[3]]));
    if msg.len() < HEADER_LEN || msg[0] != 0 || msg[5] != 1 || msg[6] != 0 || msg[7] != 0 {
        // reserved != 0, version != 1 or spare != 0: the kernel's v0 fallback. A v0 header is
        // {nr_conns, syncid, size}: its size is at the same place.
        if size != msg.len() {
            return (out, Some(Refused::BadLength { got: msg.len(), header: size }));
        }
        if own_syncid != 0 && msg[1] != own_syncid {
            return (out, Some(Refused::OtherSyncId(msg[1])));
        }
        return (out, Some(Refused::Version0));
    }
    if size != msg.len() {
        return (out, Some(Refused::BadLength { got: msg.len(), header: size }));
    }
    if own_syncid != 0 && msg[1] != own_syncid {
        return (out, Some(Refused::OtherSyncId(msg[1])));
    }
    let nr = usize::from(msg[4]);
    let mut off = HEADER_LEN;
    for index in 0..nr {
        let bad = |why| Some(Refused::BadEntry { index, why });
        // The kernel aligns each entry to 4 bytes from the start of the message.
        off = (off + 3) & !3;
        if off + 4 > msg.len() {
            return (out, bad("runs past the message"));
        }
        let e = &msg[off..];
        let ver_size = u16::from_be_bytes([e[2], e[3]]);
        if ver_size >> SVER_SHIFT != 0 {
            return (out, bad("entry version is not 0"));
        }
        let len = usize::from(ver_size & SIZE_MASK);
        let v6 = e[0] & STYPE_F_INET6 != 0;
        let base = if v6 { V6_LEN } else { V4_LEN };
        if len < base || off + len > msg.len() {
            return (out, bad("runs past the message"));
        }
        let e = &e[..len];
        let be16 = |i: usize| u16::from_be_bytes([e[i], e[i + 1]]);
        let be32 = |i: usize| u32::from_be_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]);
        let addr = |i: usize| -> IpAddr {
            if v6 {
                let mut o = [0u8; 16];
                o.copy_from_slice(&e[i..i + 16]);
                IpAddr::V6(Ipv6Addr::from(o))
            } else {
                IpAddr::V4(Ipv4Addr::new(e[i], e[i + 1], e[i + 2], e[i + 3]))
            }
        };
        let (ca, va, da) = if v6 { (24, 40, 56) } else { (24, 28, 32) };
        // Options: SEQ_DATA and the PE ones are understood (and not used: lvsd has neither
        // sequence adjustment nor a persistence engine); unknown ones are skipped only when
        // they say they are optional.
        let mut o = base;
        while o < len {
            if o + 2 > len {
                return (out, bad("option header runs past the entry"));
            }
            let (ty, olen) = (e[o], usize::from(e[o + 1]));
            if o + 2 + olen > len {
                return (out, bad("option runs past the entry"));
            }
            match ty {
                OPT_SEQ_DATA | OPT_PE_DATA | OPT_PE_NAME => {}
                t if t & OPT_F_PARAM != 0 => {}
                _ => return (out, bad("unknown mandatory option")),
            }
            o += 2 + olen;
        }
        out.push(SyncConn {
            protocol: e[1],
            flags: be32(4),
            state: be16(8),
            cport: be16(10),
            vport: be16(12),
            dport: be16(14),
            fwmark: be32(16),
            timeout: be32(20),
            caddr: addr(ca),
            vaddr: addr(va),
            daddr: addr(da),
        });
        off += len;
    }
    (out, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> SyncConn {
        SyncConn {
            protocol: 6,
            flags: flags::NOOUTPUT | 3,
            state: 1,
            cport: 37008,
            vport: 80,
            dport: 80,
            fwmark: 0,
            timeout: 900,
            caddr: "198.51.100.2".parse().unwrap(),
            vaddr: "203.0.113.10".parse().unwrap(),
            daddr: "192.0.2.11".parse().unwrap(),
        }
    }

    /// The entry of `conn()` written out field by field from the spec's table.
    const V4_ENTRY: [u8; 36] = [
        0x00, 0x06, 0x00, 0x24, // type IPv4, TCP, ver 0 / size 36
        0x00, 0x00, 0x00, 0x83, // flags DR | NOOUTPUT
        0x00, 0x01, 0x90, 0x90, // ESTABLISHED, cport 37008
        0x00, 0x50, 0x00, 0x50, // vport 80, dport 80
        0x00, 0x00, 0x00, 0x00, // fwmark
        0x00, 0x00, 0x03, 0x84, // timeout 900
        198, 51, 100, 2, 203, 0, 113, 10, 192, 0, 2, 11,
    ];

    #[test]
    fn v4_entry_and_header_byte_exact() {
        let mut e = Encoder::new(7, 1472);
        assert_eq!(e.push(&conn()), None);
        let msg = e.take().unwrap();
        assert_eq!(&msg[..8], &[0, 7, 0, 44, 1, 1, 0, 0]);
        assert_eq!(&msg[8..], &V4_ENTRY);
        assert_eq!(e.take(), None, "nothing left after a take");
    }

    #[test]
    fn hashed_flag_is_never_sent() {
        let mut c = conn();
        c.flags |= flags::HASHED;
        let mut buf = Vec::new();
        encode_entry(&mut buf, &c);
        assert_eq!(&buf[4..8], &[0, 0, 0, 0x83]);
    }

    #[test]
    fn v6_entry_is_72_bytes_with_the_inet6_type_bit() {
        let mut c = conn();
        c.caddr = "2001:db8::2".parse().unwrap();
        c.vaddr = "2001:db8::10".parse().unwrap();
        c.daddr = "2001:db8:1::11".parse().unwrap();
        let mut buf = Vec::new();
        encode_entry(&mut buf, &c);
        assert_eq!(buf.len(), 72);
        assert_eq!(&buf[..4], &[1, 6, 0, 72]);
        assert_eq!(&buf[24..28], &[0x20, 0x01, 0x0d, 0xb8]);
        let (got, err) = decode(&[&[0u8, 0, 0, 80, 1, 1, 0, 0][..], &buf].concat(), 0);
        assert_eq!((got, err), (vec![c], None));
    }

    #[test]
    fn messages_split_at_maxlen() {
        // 8 + 36 = 44; a second entry would make 80 > 79.
        let mut e = Encoder::new(0, 79);
        let mut sent = Vec::new();
        for _ in 0..3 {
            sent.extend(e.push(&conn()));
        }
        sent.extend(e.take());
        // The encoder never goes below one IPv6 entry per message.
        assert!(sent.iter().all(|m| m.len() <= HEADER_LEN + V6_LEN));
        let total: usize = sent.iter().map(|m| usize::from(m[4])).sum();
        assert_eq!(total, 3);
        for m in &sent {
            let (got, err) = decode(m, 0);
            assert_eq!(err, None);
            assert_eq!(got.len(), usize::from(m[4]));
        }
    }

    /// An entry with an option of 2 + 2 bytes is 40 long but 36 + 4 = 40: no pad. One with a
    /// 3-byte option (39) is padded to 40 before the next, and the receiver skips the pad.
    #[test]
    fn options_are_skipped_and_padding_is_honoured() {
        let mut entry = V4_ENTRY.to_vec();
        entry.extend_from_slice(&[OPT_F_PARAM | 9, 1, 0xee]); // optional, unknown: skipped
        entry[3] = 39;
        let mut msg = vec![0, 7, 0, 0, 2, 1, 0, 0];
        msg.extend_from_slice(&entry);
        msg.push(0); // pad to 4
        msg.extend_from_slice(&V4_ENTRY);
        let n = msg.len() as u16;
        msg[2..4].copy_from_slice(&n.to_be_bytes());
        let (got, err) = decode(&msg, 7);
        assert_eq!(err, None);
        assert_eq!(got, vec![conn(), conn()]);

        // The same with a mandatory unknown option: the first entry is refused.
        msg[8 + 36] = 9;
        let (got, err) = decode(&msg, 7);
        assert!(got.is_empty());
        assert_eq!(err, Some(Refused::BadEntry { index: 0, why: "unknown mandatory option" }));

        // SEQ_DATA (24 bytes) is understood.
        let mut entry = V4_ENTRY.to_vec();
        entry.extend_from_slice(&[OPT_SEQ_DATA, 24]);
        entry.extend_from_slice(&[0u8; 24]);
        entry[3] = 62;
        let mut msg = vec![0, 7, 0, 70, 1, 1, 0, 0];
        msg.extend_from_slice(&entry);
        assert_eq!(decode(&msg, 0), (vec![conn()], None));
    }

    #[test]
    fn receiver_checks_like_the_kernel() {
        let mut e = Encoder::new(7, 1472);
        e.push(&conn());
        let msg = e.take().unwrap();
        // Sync id filter, unless our own is 0.
        assert_eq!(decode(&msg, 8).1, Some(Refused::OtherSyncId(7)));
        assert_eq!(decode(&msg, 0).1, None);
        // The header's size must be the datagram's.
        assert_eq!(decode(&msg[..40], 7).1, Some(Refused::BadLength { got: 40, header: 44 }));
        let mut long = msg.clone();
        long.push(0);
        assert_eq!(decode(&long, 7).1, Some(Refused::BadLength { got: 45, header: 44 }));
        // An entry saying it is longer than the message.
        let mut bad = msg.clone();
        bad[8 + 3] = 40;
        assert_eq!(decode(&bad, 7).1, Some(Refused::BadEntry { index: 0, why: "runs past the message" }));
        // Entry version 1.
        let mut bad = msg.clone();
        bad[8 + 2] = 0x10;
        assert_eq!(decode(&bad, 7).1, Some(Refused::BadEntry { index: 0, why: "entry version is not 0" }));
        // nr_conns larger than what is there.
        let mut bad = msg.clone();
        bad[4] = 2;
        let (got, err) = decode(&bad, 7);
        assert_eq!(got.len(), 1);
        assert_eq!(err, Some(Refused::BadEntry { index: 1, why: "runs past the message" }));
    }

    #[test]
    fn version0_is_recognised_and_refused() {
        // v0: {nr_conns 1, syncid 7, size 28} + one 24-byte entry.
        let mut msg = vec![1, 7, 0, 28];
        msg.extend_from_slice(&[0u8; 24]);
        assert_eq!(decode(&msg, 7).1, Some(Refused::Version0));
        assert_eq!(decode(&msg, 9).1, Some(Refused::OtherSyncId(7)));
        // A v1 header with a non-zero spare is read as v0 too.
        let mut e = Encoder::new(7, 1472);
        e.push(&conn());
        let mut m = e.take().unwrap();
        m[7] = 1;
        assert_eq!(decode(&m, 7).1, Some(Refused::Version0));
    }
}
