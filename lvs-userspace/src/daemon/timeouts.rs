//! The per-state timeouts in the `TIMEOUTS` map: `ipvsadm --set`, `-L --timeout`, and how the
//! config's `timeouts:` combines with them.
//!
//! The dataplane reads the map at every packet and restarts the entry's timer with its new
//! state's value, so a change reaches an existing entry at its next packet and not before,
//! as in the kernel, whose `ip_vs_set_timeout` changes the table, not the running timers.
//! A slot that holds 0 (never written) means the kernel default, here as in the dataplane.
//!
//! The config and `--set` meet at start and on SIGHUP: the states the file names get the
//! file's values; a state the previous file named and this one leaves out goes back to the
//! kernel default; every other state keeps what it has, so a `--set` value for a state the
//! file does not name survives reloads and restarts (like services added with ipvsadm).

use lvs_common::tcp_state::{DEFAULT_TIMEOUTS, ESTABLISHED, FIN_WAIT, TIMEOUT_SLOTS, UDP};

use super::{state::OpError, tables::Tables};
use crate::{
    config::Config,
    control::{Errno, Timeouts},
};

/// The kernel refuses a timeout above `INT_MAX / HZ` seconds (its jiffies must fit an int);
/// with Debian's HZ=250 that is 8589934 s. ipvsadm itself stops at 2678400.
pub const MAX_TIMEOUT: u32 = i32::MAX as u32 / 250;

/// Per state (indexed like `tcp_state::STATE_NAMES`), the value a config sets, if it names it.
pub type Named = [Option<u32>; TIMEOUT_SLOTS as usize];

/// The states `cfg` names, with their values.
pub fn named(cfg: &Config) -> Named {
    std::array::from_fn(|i| cfg.timeouts_named[i].then_some(cfg.timeouts[i]))
}

/// The timeout in force for `slot`: the map's value, or the default where it holds 0.
fn read(t: &Tables, slot: u8) -> Result<u32, OpError> {
    let v = t.timeouts.get(&u32::from(slot), 0).map_err(map_error)?;
    Ok(if v == 0 { DEFAULT_TIMEOUTS[slot as usize] } else { v })
}

fn write(t: &mut Tables, slot: u8, secs: u32) -> Result<(), OpError> {
    t.timeouts.set(u32::from(slot), secs, 0).map_err(map_error)
}

fn map_error(e: impl std::fmt::Display) -> OpError {
    OpError { errno: Errno::NoMem, detail: format!("TIMEOUTS map: {e}") }
}

/// `-L --timeout` (`__ip_vs_get_timeouts`).
pub fn get(t: &Tables) -> Result<Timeouts, OpError> {
    Ok(Timeouts { tcp: read(t, ESTABLISHED)?, tcp_fin: read(t, FIN_WAIT)?, udp: read(t, UDP)? })
}

/// `--set` (`ip_vs_set_timeout`): ESTABLISHED, FIN_WAIT and UDP only, a 0 keeps the value,
/// and nothing changes unless all three are in range.
pub fn set(t: &mut Tables, new: Timeouts) -> Result<(), OpError> {
    let merged = merge(get(t)?, new)?;
    for (slot, v) in [(ESTABLISHED, merged.tcp), (FIN_WAIT, merged.tcp_fin), (UDP, merged.udp)] {
        write(t, slot, v)?;
    }
    tracing::info!(tcp = merged.tcp, tcpfin = merged.tcp_fin, udp = merged.udp, "timeouts set");
    Ok(())
}

/// The values after `--set new` on `current`: EINVAL if any is above the kernel's limit,
/// else each non-zero value replaces the current one.
pub fn merge(current: Timeouts, new: Timeouts) -> Result<Timeouts, OpError> {
    for v in [new.tcp, new.tcp_fin, new.udp] {
        if v > MAX_TIMEOUT {
            return Err(OpError {
                errno: Errno::Inval,
                detail: format!("timeout {v} s is above the kernel's limit of {MAX_TIMEOUT} s"),
            });
        }
    }
    let pick = |new: u32, old: u32| if new == 0 { old } else { new };
    Ok(Timeouts {
        tcp: pick(new.tcp, current.tcp),
        tcp_fin: pick(new.tcp_fin, current.tcp_fin),
        udp: pick(new.udp, current.udp),
    })
}

/// The kernel's defaults for the three (900 120 300).
pub const DEFAULTS: Timeouts = Timeouts {
    tcp: DEFAULT_TIMEOUTS[ESTABLISHED as usize],
    tcp_fin: DEFAULT_TIMEOUTS[FIN_WAIT as usize],
    udp: DEFAULT_TIMEOUTS[UDP as usize],
};

/// Applies a config's `timeouts:` (see the module comment). `previous` is what the last
/// loaded file named (nothing at start). Slots never written get their default, so the map
/// reads true values.
pub fn apply_config(t: &mut Tables, now: &Named, previous: &Named) -> anyhow::Result<()> {
    for slot in 0..TIMEOUT_SLOTS as u8 {
        let i = slot as usize;
        let value = match (now[i], previous[i]) {
            (Some(v), _) => Some(v),
            (None, Some(_)) => Some(DEFAULT_TIMEOUTS[i]),
            (None, None) => {
                let v = t.timeouts.get(&u32::from(slot), 0)?;
                (v == 0).then_some(DEFAULT_TIMEOUTS[i])
            }
        };
        if let Some(v) = value {
            write(t, slot, v).map_err(|e| anyhow::anyhow!(e.detail))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_limit_with_debian_hz() {
        assert_eq!(MAX_TIMEOUT, 8_589_934);
    }

    /// The `--set` sequences of the kernel's transcripts (05-listings and the oracle's
    /// timeouts scenario), each followed by what `-L --timeout` printed.
    #[test]
    fn merge_follows_the_kernel_transcripts() {
        let t = |tcp, tcp_fin, udp| Timeouts { tcp, tcp_fin, udp };
        let steps = [
            (t(900, 120, 300), t(900, 120, 300)),
            (t(0, 0, 60), t(900, 120, 60)),
            (t(0, 0, 0), t(900, 120, 60)),
            (t(10, 6, 5), t(10, 6, 5)),
            (t(0, 0, 0), t(10, 6, 5)),
            (t(0, 0, 60), t(10, 6, 60)),
            (t(0, 45, 0), t(10, 45, 60)),
            (t(2_678_400, 2_678_400, 2_678_400), t(2_678_400, 2_678_400, 2_678_400)),
            (t(900, 120, 300), t(900, 120, 300)),
        ];
        let mut cur = DEFAULTS;
        assert_eq!(cur, t(900, 120, 300));
        for (set, want) in steps {
            cur = merge(cur, set).unwrap();
            assert_eq!(cur, want, "after --set {set:?}");
        }
        // Out of range: refused whole, nothing changes.
        let e = merge(cur, t(5, MAX_TIMEOUT + 1, 0)).unwrap_err();
        assert_eq!(e.errno, Errno::Inval);
        assert_eq!(merge(cur, t(MAX_TIMEOUT, 0, 0)).unwrap().tcp, MAX_TIMEOUT);
    }

    #[test]
    fn named_takes_only_what_the_file_says() {
        let cfg = crate::config::parse("interfaces: [e]\ntimeouts: {tcpfin: 7, close: 3}\n", "t").unwrap();
        let n = named(&cfg);
        assert_eq!(n[FIN_WAIT as usize], Some(7));
        assert_eq!(n[lvs_common::tcp_state::CLOSE as usize], Some(3));
        assert_eq!(n.iter().flatten().count(), 2);
    }
}
