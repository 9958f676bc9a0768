//! The control protocol between lvsd and its clients (ipvsadm, tests, lvsd itself on reload).
//!
//! One JSON object per line over a Unix stream socket: the client writes a [`Request`], lvsd
//! answers with one [`Response`] and keeps the connection open for more. Errors are reported
//! as the errno the kernel's IPVS would have returned for the same operation, so that ipvsadm
//! can print the exact text libipvs prints (`ipvs_strerror`).

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::model::{DestSpec, ServiceKey, ServiceSpec, ServiceStatus};

/// Default control socket path.
pub const DEFAULT_SOCKET: &str = "/run/lvs/lvsd.sock";
/// Environment variable that overrides the socket path for clients.
pub const SOCKET_ENV: &str = "LVS_SOCKET";

/// The socket a client should use: `$LVS_SOCKET` or the default.
pub fn socket_path() -> PathBuf {
    std::env::var_os(SOCKET_ENV).map(PathBuf::from).unwrap_or_else(|| DEFAULT_SOCKET.into())
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// `-A`.
    AddService(ServiceSpec),
    /// `-E`.
    EditService(ServiceSpec),
    /// `-D`.
    DelService(ServiceKey),
    /// `-a`.
    AddDest { service: ServiceKey, dest: DestSpec },
    /// `-e`.
    EditDest { service: ServiceKey, dest: DestSpec },
    /// `-d`; the dest is named by address and port.
    DelDest { service: ServiceKey, addr: std::net::IpAddr, port: u16 },
    /// `-C`.
    Clear,
    /// `-L` of everything: services and dests in kernel order (the client sorts).
    List,
    /// `-L -t VIP:port`: one service.
    GetService(ServiceKey),
    /// Version and connection-table size for the `-L` header.
    GetInfo,
    /// The dataplane's per-verdict counters, summed over CPUs.
    Counters,
    /// `--set tcp tcpfin udp`; a 0 keeps the current value.
    SetTimeouts(Timeouts),
    /// `-L --timeout`.
    GetTimeouts,
    /// `-L -c`: the live connection entries, in table order.
    ListConns,
    /// `-Z`: zero the traffic statistics and rates of one service and its real servers, or of
    /// everything (the totals included) when no service is named.
    Zero(Option<ServiceKey>),
    /// Re-read a config file and apply the difference (`lvsd --reload`, like SIGHUP), or only
    /// say what would change (`dry_run`, `lvsd --check-config`). `path`: another file than
    /// the one lvsd runs with (dry runs only make sense with it).
    Reload {
        dry_run: bool,
        #[serde(default)]
        path: Option<PathBuf>,
    },
    /// `--start-daemon master|backup`: start a connection synchronisation thread.
    StartDaemon(SyncDaemon),
    /// `--stop-daemon master|backup`.
    StopDaemon(SyncRole),
    /// `-L --daemon`: the running sync daemons, master first.
    GetDaemons,
}

/// Which side of connection synchronisation a daemon is (`IP_VS_STATE_MASTER`/`_BACKUP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncRole {
    Master,
    Backup,
}

impl SyncRole {
    pub fn name(self) -> &'static str {
        match self {
            SyncRole::Master => "master",
            SyncRole::Backup => "backup",
        }
    }
}

/// A sync daemon's parameters. In a request, 0 and `None` ask for the kernel's defaults; in
/// `-L --daemon`'s answer every field holds what the daemon runs with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncDaemon {
    pub role: SyncRole,
    /// Interface the multicast goes out of / is joined on (`--mcast-interface`).
    pub mcast_ifn: String,
    /// 0..255; a backup with 0 accepts every master's messages.
    pub syncid: u8,
    /// Largest message (UDP payload) in bytes; 0: from the MTU.
    pub sync_maxlen: u16,
    /// Multicast group; `None`: 224.0.0.81.
    pub mcast_group: Option<std::net::IpAddr>,
    /// 0: 8848.
    pub mcast_port: u16,
    /// 0: 1.
    pub mcast_ttl: u8,
}

/// Errors as IPVS reports them (the errno values of the kernel's setsockopt/netlink replies).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Errno {
    /// EPERM
    Perm,
    /// ENOENT: no such destination, or scheduler not found.
    NoEnt,
    /// ESRCH: no such service.
    Srch,
    /// ENOMEM: a table is full.
    NoMem,
    /// EEXIST: service or destination already exists.
    Exist,
    /// EINVAL
    Inval,
    /// ERANGE: l_threshold > u_threshold, negative weight.
    Range,
    /// EOPNOTSUPP: not supported (yet) by this dataplane.
    OpNotSupp,
    /// EAFNOSUPPORT
    AfNoSupport,
    /// ENODEV: no such interface (`--mcast-interface`).
    NoDev,
    /// Kernel IPVS would accept the request but this lvsd does not implement it yet. Not an
    /// IPVS errno: clients print the detail instead of imitating a kernel message.
    NotImplemented,
}

impl Errno {
    /// The numeric errno on Linux.
    pub fn raw(self) -> i32 {
        match self {
            Errno::Perm => libc::EPERM,
            Errno::NoEnt => libc::ENOENT,
            Errno::Srch => libc::ESRCH,
            Errno::NoMem => libc::ENOMEM,
            Errno::Exist => libc::EEXIST,
            Errno::Inval => libc::EINVAL,
            Errno::Range => libc::ERANGE,
            Errno::OpNotSupp => libc::EOPNOTSUPP,
            Errno::AfNoSupport => libc::EAFNOSUPPORT,
            Errno::NoDev => libc::ENODEV,
            Errno::NotImplemented => libc::EOPNOTSUPP,
        }
    }
}

/// Daemon information for the listing header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// IPVS version code reported to ipvsadm (0x010201 = 1.2.1).
    pub version_code: u32,
    /// Capacity of the connection table (`size=` in the `-L` header).
    pub conn_table_size: u32,
}

/// The three timeouts `ipvsadm --set` and `-L --timeout` deal with, in seconds: IPVS's
/// ESTABLISHED, FIN_WAIT and UDP states.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    pub tcp: u32,
    pub tcp_fin: u32,
    pub udp: u32,
}

/// One connection entry as the kernel's `/proc/net/ip_vs_conn` shows it (what ipvsadm's
/// `-L -c` reads). Addresses of one entry share a family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnStatus {
    /// IP protocol number: 6 or 17 (0 for the templates of firewall-mark services).
    pub protocol: u8,
    pub client: std::net::IpAddr,
    pub client_port: u16,
    pub vaddr: std::net::IpAddr,
    pub vport: u16,
    pub daddr: std::net::IpAddr,
    pub dport: u16,
    /// The state's name as the kernel prints it (`ESTABLISHED`, `UDP`; `NONE`/`ASSURED` for
    /// persistence templates).
    pub state: String,
    /// Whole seconds left before the entry expires, truncated.
    pub expires: u32,
    /// Persistence-engine name and data (`sip` and the Call-ID), when the entry has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pe: Option<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Ok,
    /// The operation failed; `detail` is a human explanation for logs (ipvsadm prints only the
    /// errno's text, as the real one does).
    Error { errno: Errno, detail: String },
    Services(Vec<ServiceStatus>),
    Info(Info),
    /// `(counter name, value)` in the dataplane's counter order.
    Counters(Vec<(String, u64)>),
    Timeouts(Timeouts),
    Conns(Vec<ConnStatus>),
    /// A reload's changes, each as the ipvsadm rule that makes it (`daemon::plan`).
    Changes(Vec<String>),
    /// The running sync daemons, master first.
    Daemons(Vec<SyncDaemon>),
}

/// A blocking client connection to lvsd.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    pub fn connect(path: &Path) -> anyhow::Result<Self> {
        let stream = UnixStream::connect(path)
            .with_context(|| format!("cannot connect to lvsd at {}", path.display()))?;
        let writer = stream.try_clone()?;
        Ok(Client { reader: BufReader::new(stream), writer })
    }

    /// Sends one request and waits for its response.
    pub fn call(&mut self, req: &Request) -> anyhow::Result<Response> {
        let mut line = serde_json::to_string(req)?;
        line.push('\n');
        self.writer.write_all(line.as_bytes())?;
        let mut answer = String::new();
        if self.reader.read_line(&mut answer)? == 0 {
            bail!("lvsd closed the control connection");
        }
        serde_json::from_str(&answer).context("malformed response from lvsd")
    }
}
