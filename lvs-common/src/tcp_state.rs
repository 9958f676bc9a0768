//! IPVS's TCP connection state machine (net/netfilter/ipvs/ip_vs_proto_tcp.c, normal table),
//! and the per-state timeouts.
//!
//! Pure data and arithmetic: the dataplane applies it per packet, userspace uses it to name
//! states, count ActiveConn/InActConn and expire entries. UDP has a single state, [`UDP`].

/// State indices as the kernel numbers them (`IP_VS_TCP_S_*`).
pub const NONE: u8 = 0;
pub const ESTABLISHED: u8 = 1;
pub const SYN_SENT: u8 = 2;
pub const SYN_RECV: u8 = 3;
pub const FIN_WAIT: u8 = 4;
pub const TIME_WAIT: u8 = 5;
pub const CLOSE: u8 = 6;
pub const CLOSE_WAIT: u8 = 7;
pub const LAST_ACK: u8 = 8;
pub const LISTEN: u8 = 9;
pub const SYNACK: u8 = 10;
/// Number of TCP states.
pub const TCP_STATE_COUNT: usize = 11;
/// UDP's only state (`NORMAL`, printed as `UDP`). Also the index of the UDP timeout in the
/// `TIMEOUTS` map, right after the TCP states.
pub const UDP: u8 = 11;
/// Slots in the `TIMEOUTS` map: the TCP states, then UDP.
pub const TIMEOUT_SLOTS: u32 = 12;

/// Names as `/proc/net/ip_vs_conn` and `ipvsadm -L -c` print them.
pub const STATE_NAMES: [&str; 12] = [
    "NONE",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "SYNACK",
    "UDP",
];

/// Kernel default timeouts in seconds, indexed like [`STATE_NAMES`] (UDP last).
pub const DEFAULT_TIMEOUTS: [u32; 12] = [2, 900, 120, 60, 120, 120, 10, 60, 30, 120, 120, 300];

/// Timeout of a brand-new entry before its first transition (IPVS uses 3 s).
pub const NEW_CONN_TIMEOUT: u32 = 3;

/// Whether a state counts as ActiveConn (kernel >= 4.8: ESTABLISHED and the three
/// pre-established states). Everything else, and every UDP entry, is InActConn.
#[inline(always)]
pub const fn is_active(state: u8) -> bool {
    matches!(state, ESTABLISHED | SYN_SENT | SYN_RECV | SYNACK)
}

/// Which side a packet came from.
pub const DIR_INPUT: usize = 0;
/// A reply from the real server (seen by the director only in NAT mode).
pub const DIR_OUTPUT: usize = 1;
/// Client packet on a connection without an output path (DR, TUN).
pub const DIR_INPUT_ONLY: usize = 2;

/// Flag rows in the table, in the order the kernel's `tcp_state_idx` yields them.
const ROW_SYN: usize = 0;
const ROW_FIN: usize = 1;
const ROW_ACK: usize = 2;
const ROW_RST: usize = 3;

use self::{
    CLOSE as CL, CLOSE_WAIT as CW, ESTABLISHED as ES, FIN_WAIT as FW, LAST_ACK as LA,
    LISTEN as LI, SYN_RECV as SR, SYN_SENT as SS, TIME_WAIT as TW,
};

/// `tcp_states[dir * 4 + row][state]`: the normal (non-`secure_tcp`) table.
const TABLE: [[u8; TCP_STATE_COUNT]; 12] = [
    //  NO  ES  SS  SR  FW  TW  CL  CW  LA  LI  SA
    [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR], // INPUT syn
    [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW], // INPUT fin
    [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES], // INPUT ack
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR], // INPUT rst
    [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR], // OUTPUT syn
    [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW], // OUTPUT fin
    [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES], // OUTPUT ack
    [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL], // OUTPUT rst
    [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR], // INPUT_ONLY syn
    [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW], // INPUT_ONLY fin
    [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES], // INPUT_ONLY ack
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL], // INPUT_ONLY rst
];

/// TCP flag bits as they sit in byte 13 of the TCP header.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// The next state for a packet with `flags` seen in direction `dir` on a connection in `state`.
///
/// Classification follows the kernel: RST first, then SYN, then FIN, then ACK. A packet with
/// none of these flags moves the connection to CLOSE (the kernel's default `new_state`).
#[inline(always)]
pub fn next_state(state: u8, dir: usize, flags: u8) -> u8 {
    let row = if flags & TCP_RST != 0 {
        ROW_RST
    } else if flags & TCP_SYN != 0 {
        ROW_SYN
    } else if flags & TCP_FIN != 0 {
        ROW_FIN
    } else if flags & TCP_ACK != 0 {
        ROW_ACK
    } else {
        return CLOSE;
    };
    let s = state as usize;
    if s >= TCP_STATE_COUNT || dir > DIR_INPUT_ONLY {
        return CLOSE;
    }
    // Index through `get` so no bounds-check panic path reaches the eBPF code.
    match TABLE.get(dir * 4 + row) {
        Some(r) => match r.get(s) {
            Some(n) => *n,
            None => CLOSE,
        },
        None => CLOSE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dir_flags: &[(usize, u8)]) -> u8 {
        dir_flags.iter().fold(NONE, |s, &(d, f)| next_state(s, d, f))
    }

    #[test]
    fn nat_client_closes_first() {
        // SYN, SYN/ACK, ACK, client FIN, server ACK, server FIN, client ACK.
        let trace = [
            (DIR_INPUT, TCP_SYN),
            (DIR_OUTPUT, TCP_SYN | TCP_ACK),
            (DIR_INPUT, TCP_ACK),
        ];
        assert_eq!(run(&trace[..1]), SYN_RECV);
        assert_eq!(run(&trace[..2]), SYN_RECV);
        assert_eq!(run(&trace), ESTABLISHED);
        let mut t = trace.to_vec();
        t.push((DIR_INPUT, TCP_FIN | TCP_ACK));
        assert_eq!(run(&t), CLOSE_WAIT);
        t.push((DIR_OUTPUT, TCP_ACK));
        assert_eq!(run(&t), CLOSE_WAIT);
        t.push((DIR_OUTPUT, TCP_FIN | TCP_ACK));
        assert_eq!(run(&t), TIME_WAIT);
        t.push((DIR_INPUT, TCP_ACK));
        assert_eq!(run(&t), TIME_WAIT);
    }

    #[test]
    fn nat_server_closes_first() {
        let t = [
            (DIR_INPUT, TCP_SYN),
            (DIR_OUTPUT, TCP_SYN | TCP_ACK),
            (DIR_INPUT, TCP_ACK),
            (DIR_OUTPUT, TCP_FIN | TCP_ACK),
        ];
        assert_eq!(run(&t), FIN_WAIT);
        let mut t = t.to_vec();
        t.push((DIR_INPUT, TCP_ACK));
        assert_eq!(run(&t), FIN_WAIT);
        t.push((DIR_INPUT, TCP_FIN | TCP_ACK));
        assert_eq!(run(&t), TIME_WAIT);
    }

    #[test]
    fn dr_trace_ends_in_fin_wait() {
        let t = [
            (DIR_INPUT_ONLY, TCP_SYN),
            (DIR_INPUT_ONLY, TCP_ACK),
            (DIR_INPUT_ONLY, TCP_FIN | TCP_ACK),
            (DIR_INPUT_ONLY, TCP_ACK),
        ];
        assert_eq!(run(&t), FIN_WAIT);
    }

    #[test]
    fn rst_closes_and_flagless_packet_closes() {
        assert_eq!(next_state(ESTABLISHED, DIR_INPUT, TCP_RST | TCP_ACK), CLOSE);
        assert_eq!(next_state(ESTABLISHED, DIR_INPUT, 0), CLOSE);
    }

    /// The dataplane writes a new connection in the state its first packet (a SYN without
    /// RST) moves it to, and marks no persistence template assured on the way: that holds
    /// only while the first transition from NONE is SYN_RECV, never ESTABLISHED.
    #[test]
    fn first_transition_never_assures() {
        for flags in 0..=u8::MAX {
            if flags & (TCP_SYN | TCP_RST) != TCP_SYN {
                continue;
            }
            for dir in [DIR_INPUT, DIR_INPUT_ONLY] {
                assert_eq!(next_state(NONE, dir, flags), SYN_RECV, "flags {flags:#x} dir {dir}");
            }
        }
        assert!(is_active(SYN_RECV));
    }

    #[test]
    fn activity_classes() {
        let active: [u8; 4] = [ESTABLISHED, SYN_SENT, SYN_RECV, SYNACK];
        for s in 0..TIMEOUT_SLOTS as u8 {
            assert_eq!(is_active(s), active.contains(&s), "{}", STATE_NAMES[s as usize]);
        }
    }
}
