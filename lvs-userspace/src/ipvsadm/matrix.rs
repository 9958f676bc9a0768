//! ipvsadm's legality tables: which options each command requires, allows or forbids, and the
//! same for tunnel types. The names and their order are part of the output: error messages
//! quote them, and when two options break a rule the one with the lower index is reported.

/// Commands, in the order (and with the names) ipvsadm's messages use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    Add,
    Edit,
    Del,
    Flush,
    List,
    AddDest,
    DelDest,
    EditDest,
    Timeout,
    StartDaemon,
    StopDaemon,
    Restore,
    Save,
    Zero,
}

impl Cmd {
    pub fn name(self) -> &'static str {
        CMD_NAMES[self as usize]
    }
}

const CMD_NAMES: [&str; 14] = [
    "add-service",
    "edit-service",
    "delete-service",
    "flush",
    "list",
    "add-server",
    "delete-server",
    "edit-server",
    "set",
    "start-daemon",
    "stop-daemon",
    "restore",
    "save",
    "zero",
];

/// Option classes (bit positions of ipvsadm's option mask).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Optc {
    Numeric,
    Connection,
    Service,
    Scheduler,
    Persistent,
    Netmask,
    Server,
    Forward,
    Weight,
    UThreshold,
    LThreshold,
    Mcast,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    SyncId,
    Exact,
    OnePacket,
    PersistenceEngine,
    SchedFlags,
    McastGroup,
    McastPort,
    McastTtl,
    SyncMaxlen,
    TunInfo,
    TunType,
    TunPort,
    TunNocsum,
    TunCsum,
    TunRemcsum,
}

pub const NUMBER_OF_OPT: usize = 34;

const OPT_NAMES: [&str; NUMBER_OF_OPT] = [
    "numeric",
    "connection",
    "service-address",
    "scheduler",
    "persistent",
    "netmask",
    "real-server",
    "forwarding-method",
    "weight",
    "u-threshold",
    "l-threshold",
    "mcast-interface",
    "timeout",
    "daemon",
    "stats",
    "rate",
    "thresholds",
    "persistent-conn",
    "nosort",
    "syncid",
    "exact",
    "ops",
    "pe",
    "sched-flags",
    "mcast-group",
    "mcast-port",
    "mcast-ttl",
    "sync-maxlen",
    "tun-info",
    "tun-type",
    "tun-port",
    "tun-nocsum",
    "tun-csum",
    "tun-remcsum",
];

impl Optc {
    pub fn name(self) -> &'static str {
        OPT_NAMES[self as usize]
    }

    pub fn bit(self) -> u64 {
        1 << (self as u32)
    }
}

/// One row per command, one column per option class: `+` required, `x` illegal, `1` at most
/// one of the `1`s, blank optional.
///
/// Columns: n c svc s p M r fwd w x y mcast timeout daemon stats rate thr pc nosort syncid
/// exact ops pe b group port ttl maxlen tun-info tun-type tun-port nocsum csum remcsum.
const MATRIX: [&str; 14] = [
    "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx", // add-service
    "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx", // edit-service
    "xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // delete-service
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // flush
    " 11xxxxxxxxx11       xxxxxxx xxxxx", // list
    "xx+xxx+    xxxxxxxxxxxxxxxxxx     ", // add-server
    "xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxx", // delete-server
    "xx+xxx+    xxxxxxxxxxxxxxxxxx     ", // edit-server
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // set
    "xxxxxxxxxxx xxxxxxx xxxx    xxxxxx", // start-daemon
    "xxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxx", // stop-daemon
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // restore
    " xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // save
    "xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // zero
];

/// ipvsadm's `generic_opt_check`: the first violation in column order.
pub fn check_command(cmd: Cmd, options: u64) -> Result<(), String> {
    let row = MATRIX[cmd as usize].as_bytes();
    let mut exclusive: Option<usize> = None;
    for (j, &rule) in row.iter().enumerate() {
        let given = options & (1 << j) != 0;
        if !given {
            if rule == b'+' {
                return Err(format!(
                    "You need to supply the '{}' option for the '{}' command",
                    OPT_NAMES[j],
                    cmd.name()
                ));
            }
            continue;
        }
        if rule == b'x' {
            return Err(format!("Illegal '{}' option with the '{}' command", OPT_NAMES[j], cmd.name()));
        }
        if rule == b'1' {
            if let Some(first) = exclusive {
                return Err(format!(
                    "The option '{}' conflicts with the '{}' option in the '{}' command",
                    OPT_NAMES[j],
                    OPT_NAMES[first],
                    cmd.name()
                ));
            }
            exclusive = Some(j);
        }
    }
    Ok(())
}

/// Tunnel types, as `--tun-type` names them (kernel numbering IPIP 0, GUE 1, GRE 2).
pub const TUN_NAMES: [&str; 3] = ["ipip", "gue", "gre"];

/// Per tunnel type, the rules for tun-port, tun-nocsum, tun-csum, tun-remcsum.
const TUN_MATRIX: [&str; 3] = ["xxxx", "+111", "x11x"];
const TUN_OPTS: [Optc; 4] = [Optc::TunPort, Optc::TunNocsum, Optc::TunCsum, Optc::TunRemcsum];

/// ipvsadm's `tunnel_opt_check`.
pub fn check_tunnel(tun_type: usize, options: u64) -> Result<(), String> {
    let row = TUN_MATRIX[tun_type].as_bytes();
    let tname = TUN_NAMES[tun_type];
    let mut exclusive: Option<Optc> = None;
    for (j, &rule) in row.iter().enumerate() {
        let o = TUN_OPTS[j];
        if options & o.bit() == 0 {
            if rule == b'+' {
                return Err(format!(
                    "You need to supply the '{}' option for the '{tname}' tunnel type",
                    o.name()
                ));
            }
            continue;
        }
        if rule == b'x' {
            return Err(format!("Illegal '{}' option with the '{tname}' tunnel type", o.name()));
        }
        if rule == b'1' {
            if let Some(first) = exclusive {
                return Err(format!(
                    "The option '{}' conflicts with the '{}' option in the '{tname}' tunnel type",
                    o.name(),
                    first.name()
                ));
            }
            exclusive = Some(o);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_cover_every_option() {
        for row in MATRIX {
            assert_eq!(row.len(), NUMBER_OF_OPT, "{row:?}");
        }
        assert_eq!(Optc::TunRemcsum as usize, NUMBER_OF_OPT - 1);
    }

    #[test]
    fn messages() {
        assert_eq!(
            check_command(Cmd::AddDest, Optc::Service.bit()),
            Err("You need to supply the 'real-server' option for the 'add-server' command".into())
        );
        assert_eq!(
            check_command(Cmd::List, Optc::Connection.bit() | Optc::Service.bit()),
            Err("The option 'service-address' conflicts with the 'connection' option in the 'list' command".into())
        );
        assert_eq!(check_command(Cmd::List, Optc::Numeric.bit() | Optc::Service.bit()), Ok(()));
        assert_eq!(
            check_tunnel(1, 0),
            Err("You need to supply the 'tun-port' option for the 'gue' tunnel type".into())
        );
        assert_eq!(
            check_tunnel(2, Optc::TunNocsum.bit() | Optc::TunCsum.bit()),
            Err("The option 'tun-csum' conflicts with the 'tun-nocsum' option in the 'gre' tunnel type".into())
        );
    }
}
