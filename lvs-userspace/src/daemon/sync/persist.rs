//! The running sync daemons, kept in a pinned map beside the dataplane's so that an lvsd
//! restarted after a crash (or SIGKILL) starts them again, as it finds its services again.
//!
//! bpffs holds only BPF objects, so the record is a two-slot BPF array (slot 0 the master,
//! slot 1 the backup) that lvsd creates and pins itself; the eBPF object does not know it.
//! It goes away with the other pins when lvsd stops without `--keep-dataplane`, which stops
//! the daemons too.
//!
//! A slot holds the daemon's parameters as they were asked for (0 for "default", as in
//! `--start-daemon`), so that a restart resolves them the same way and `-L --daemon` shows
//! the same values.

use std::{
    ffi::CString,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{FromRawFd, OwnedFd, AsRawFd},
    path::Path,
};

use anyhow::Context;

use crate::control::{SyncDaemon, SyncRole};

/// Slot layout, byte by byte (integers little-endian; nothing is shared with the kernel):
/// 0 in use (1), 1 syncid, 2 ttl, 3 group family (0 none, 4, 6), 4..6 maxlen, 6..8 port,
/// 8..24 group (IPv4 in the first 4 bytes), 24..40 interface name, NUL-padded.
const VALUE_SIZE: usize = 40;
const SLOTS: u32 = 2;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_MAP_TYPE_ARRAY: u32 = 2;

/// The `bpf()` syscall with a zero-padded attribute block (the kernel checks that the bytes
/// past what a command uses are zero).
fn bpf(cmd: libc::c_long, attr: &[u64]) -> std::io::Result<i64> {
    let mut buf = [0u64; 16];
    buf[..attr.len()].copy_from_slice(attr);
    // SAFETY: the attribute block is ours and large enough for these commands; pointers in it
    // point at live buffers of the caller.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, buf.as_mut_ptr(), std::mem::size_of_val(&buf)) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn slot(role: SyncRole) -> u32 {
    match role {
        SyncRole::Master => 0,
        SyncRole::Backup => 1,
    }
}

/// The pinned record.
pub struct Store {
    fd: OwnedFd,
}

impl Store {
    /// Opens the record pinned at `path`, creating and pinning an empty one if there is none.
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        let c = CString::new(path.as_os_str().as_encoded_bytes()).context("pin path")?;
        let fd = match bpf(BPF_OBJ_GET, &[c.as_ptr() as u64]) {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let attr = [
                    u64::from(BPF_MAP_TYPE_ARRAY) | (4u64 << 32),
                    VALUE_SIZE as u64 | (u64::from(SLOTS) << 32),
                ];
                let fd = bpf(BPF_MAP_CREATE, &attr).context("creating the sync daemon record map")?;
                bpf(BPF_OBJ_PIN, &[c.as_ptr() as u64, fd as u64])
                    .with_context(|| format!("pinning {}", path.display()))?;
                fd
            }
            Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
        };
        // SAFETY: a file descriptor the kernel just gave us, owned from here on.
        Ok(Store { fd: unsafe { OwnedFd::from_raw_fd(fd as i32) } })
    }

    fn write(&self, role: SyncRole, value: &[u8; VALUE_SIZE]) -> anyhow::Result<()> {
        let key = slot(role);
        let attr = [
            self.fd.as_raw_fd() as u64,
            &key as *const u32 as u64,
            value.as_ptr() as u64,
            0, // BPF_ANY
        ];
        bpf(BPF_MAP_UPDATE_ELEM, &attr).context("writing the sync daemon record")?;
        Ok(())
    }

    /// Records `d` (its parameters as asked for) as running.
    pub fn save(&self, d: &SyncDaemon) -> anyhow::Result<()> {
        self.write(d.role, &encode(d))
    }

    /// Records that no daemon of `role` runs.
    pub fn clear(&self, role: SyncRole) -> anyhow::Result<()> {
        self.write(role, &[0; VALUE_SIZE])
    }

    /// The daemons recorded as running, master first.
    pub fn load(&self) -> anyhow::Result<Vec<SyncDaemon>> {
        let mut out = Vec::new();
        for role in [SyncRole::Master, SyncRole::Backup] {
            let key = slot(role);
            let mut v = [0u8; VALUE_SIZE];
            let attr = [self.fd.as_raw_fd() as u64, &key as *const u32 as u64, v.as_mut_ptr() as u64, 0];
            bpf(BPF_MAP_LOOKUP_ELEM, &attr).context("reading the sync daemon record")?;
            if let Some(d) = decode(role, &v) {
                out.push(d);
            }
        }
        Ok(out)
    }
}

fn encode(d: &SyncDaemon) -> [u8; VALUE_SIZE] {
    let mut v = [0u8; VALUE_SIZE];
    v[0] = 1;
    v[1] = d.syncid;
    v[2] = d.mcast_ttl;
    v[4..6].copy_from_slice(&d.sync_maxlen.to_le_bytes());
    v[6..8].copy_from_slice(&d.mcast_port.to_le_bytes());
    match d.mcast_group {
        None => {}
        Some(IpAddr::V4(a)) => {
            v[3] = 4;
            v[8..12].copy_from_slice(&a.octets());
        }
        Some(IpAddr::V6(a)) => {
            v[3] = 6;
            v[8..24].copy_from_slice(&a.octets());
        }
    }
    // Interface names are at most 15 bytes (checked by ipvsadm and the config).
    let n = d.mcast_ifn.len().min(15);
    v[24..24 + n].copy_from_slice(&d.mcast_ifn.as_bytes()[..n]);
    v
}

fn decode(role: SyncRole, v: &[u8; VALUE_SIZE]) -> Option<SyncDaemon> {
    if v[0] != 1 {
        return None;
    }
    let mcast_group = match v[3] {
        4 => Some(IpAddr::V4(Ipv4Addr::new(v[8], v[9], v[10], v[11]))),
        6 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&v[8..24]).ok()?))),
        _ => None,
    };
    let name = &v[24..40];
    let len = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    Some(SyncDaemon {
        role,
        mcast_ifn: String::from_utf8_lossy(&name[..len]).into_owned(),
        syncid: v[1],
        sync_maxlen: u16::from_le_bytes([v[4], v[5]]),
        mcast_group,
        mcast_port: u16::from_le_bytes([v[6], v[7]]),
        mcast_ttl: v[2],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written() {
        let d = SyncDaemon {
            role: SyncRole::Backup,
            mcast_ifn: "veth-sync-long1".into(),
            syncid: 200,
            sync_maxlen: 1400,
            mcast_group: Some("239.1.2.3".parse().unwrap()),
            mcast_port: 9000,
            mcast_ttl: 3,
        };
        assert_eq!(decode(SyncRole::Backup, &encode(&d)), Some(d.clone()));
        let defaults = SyncDaemon { mcast_group: None, sync_maxlen: 0, mcast_port: 0, mcast_ttl: 0, ..d };
        assert_eq!(decode(SyncRole::Backup, &encode(&defaults)), Some(defaults));
        assert_eq!(decode(SyncRole::Master, &[0; VALUE_SIZE]), None);
    }
}
