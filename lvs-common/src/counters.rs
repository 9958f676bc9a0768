//! Per-CPU counters of every verdict and every drop reason.
//!
//! The dataplane counts each packet once, in `STATS` (a per-CPU array indexed by [`Counter`]);
//! userspace sums over CPUs. The names double as metric labels.

/// One counter slot. The discriminant is the index in the `STATS` map.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Passed: not IPv4 (ARP, IPv6, ...), or an Ethernet frame too short to parse.
    PassNotIp = 0,
    /// Passed: IPv4 or IPv6 but neither TCP nor UDP (ICMP, ICMPv6 and so neighbour discovery),
    /// or TCP/UDP behind an IPv6 extension header that is not walked (ESP, AH, mobility, more
    /// than `MAX_EXT_HEADERS` of them).
    PassNotTcpUdp = 1,
    /// Passed: an IPv4 fragment that does not carry the ports (offset != 0) and whose first
    /// fragment was not forwarded here within the fragment table's lifetime (it arrived
    /// first, was lost, or is not for a virtual service): the kernel gets it, as no real
    /// server can be chosen for it.
    PassFragment = 2,
    /// Passed: malformed header (bad IHL, truncated L4 header, bad total length).
    PassMalformed = 3,
    /// Passed: no connection and no virtual service for the destination.
    PassNoService = 4,
    /// Passed: TCP packet without SYN for a service and no connection (IPVS NF_ACCEPTs these).
    PassNotSyn = 5,
    /// Forwarded by the kernel: rewritten packet handed to the stack because the FIB lookup
    /// found no neighbour yet (or asked for the stack's help).
    PassFibFallback = 6,
    /// Forwarded: rewritten and redirected to the egress interface.
    Redirect = 7,
    /// Dropped: the scheduler found no usable real server.
    DropNoDest = 8,
    /// Dropped: the connection table is full.
    DropConnTableFull = 9,
    /// Dropped: the service's configuration could not be read (inconsistent maps).
    DropServiceMissing = 10,
    /// Passed: TTL would reach zero when forwarding; the kernel sends the ICMP error.
    PassTtlExceeded = 11,
    /// Dropped: a forwarding method this build does not implement.
    DropUnsupportedForward = 12,
    /// Passed: the FIB lookup failed (no route, blackhole, forwarding disabled).
    PassFibFailed = 13,
    /// Informational (not a verdict): a new connection was scheduled.
    NewConn = 14,
    /// Informational: a packet matched an existing connection (either direction).
    ConnHit = 15,
    /// Dropped: a client packet of a connection whose real server has been deleted (IPVS
    /// drops these while `expire_nodest_conn` is 0).
    DropDestUnavailable = 16,
    /// Answered: no real server could take a new connection, so the client got ICMP port
    /// unreachable from the VIP (redirected out the ingress interface), as IPVS sends it; the
    /// packet itself is not forwarded.
    TxIcmpUnreachable = 17,
    /// Answered: a tunnelled packet would exceed the MTU towards its real server once
    /// encapsulated and forbids fragmentation (DF), so the client got ICMP fragmentation
    /// needed with that MTU minus the outer header (IPVS's `pmtu_disc`); not forwarded.
    TxIcmpFragNeeded = 18,
    /// Dropped: direct routing towards a real server whose link-layer address the director
    /// has not resolved yet (the kernel cannot forward it for us: it would deliver the packet
    /// to the local VIP). The next hop is reported in `NEIGH_MISS` and lvsd asks the kernel to
    /// resolve it; the client's retransmission goes through.
    DropNoNeigh = 19,
    /// Dropped: a DR or TUN packet whose TTL would reach zero (IPVS sends time exceeded).
    DropTtlExceeded = 20,
    /// Dropped: no route to a DR or TUN real server (IPVS drops these too; handing them to
    /// the kernel would deliver them to the local VIP).
    DropNoRoute = 21,
    /// Passed: an IPv6 fragment like `PassFragment` (offset != 0, first fragment not seen),
    /// or a first fragment whose transport header does not directly follow the fragment
    /// header.
    PassFragmentV6 = 22,
    /// Dropped: a packet that would have been answered with ICMP port unreachable, over the
    /// ICMP budget (`icmp_limit.rs`, the kernel's `icmp_msgs_per_sec`/`icmp_msgs_burst`).
    DropIcmpRateLimited = 23,
    /// Informational: a first fragment (offset 0, more fragments) was forwarded and its
    /// datagram entered in the fragment table, IPv4 or IPv6.
    FragTracked = 24,
    /// Informational: a later fragment matched the fragment table and was sent where its
    /// first fragment went (its verdict is counted as well), IPv4 or IPv6.
    FragHit = 25,
    /// Dropped: a new datagram of a persistent `--pe sip` service without a usable SIP
    /// Call-ID in its first `sip::SCAN_MAX` bytes, or a new TCP connection of such a service
    /// (the kernel's `ip_vs_sip_fill_param` fails and `ip_vs_sched_persist` drops).
    DropSipNoCallId = 26,
    /// Passed: a new datagram of a `--pe sip` service while the Call-ID search program
    /// (`lvs_xdp_sip`) is not installed (only between loading and filling its slot).
    PassSipUnscanned = 27,
}

/// Number of slots in `STATS`.
pub const COUNTER_COUNT: u32 = 28;

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; COUNTER_COUNT as usize] = [
        Counter::PassNotIp,
        Counter::PassNotTcpUdp,
        Counter::PassFragment,
        Counter::PassMalformed,
        Counter::PassNoService,
        Counter::PassNotSyn,
        Counter::PassFibFallback,
        Counter::Redirect,
        Counter::DropNoDest,
        Counter::DropConnTableFull,
        Counter::DropServiceMissing,
        Counter::PassTtlExceeded,
        Counter::DropUnsupportedForward,
        Counter::PassFibFailed,
        Counter::NewConn,
        Counter::ConnHit,
        Counter::DropDestUnavailable,
        Counter::TxIcmpUnreachable,
        Counter::TxIcmpFragNeeded,
        Counter::DropNoNeigh,
        Counter::DropTtlExceeded,
        Counter::DropNoRoute,
        Counter::PassFragmentV6,
        Counter::DropIcmpRateLimited,
        Counter::FragTracked,
        Counter::FragHit,
        Counter::DropSipNoCallId,
        Counter::PassSipUnscanned,
    ];

    /// Stable snake_case name (metric label).
    pub const fn name(self) -> &'static str {
        match self {
            Counter::PassNotIp => "pass_not_ip",
            Counter::PassNotTcpUdp => "pass_not_tcp_udp",
            Counter::PassFragment => "pass_fragment",
            Counter::PassMalformed => "pass_malformed",
            Counter::PassNoService => "pass_no_service",
            Counter::PassNotSyn => "pass_not_syn",
            Counter::PassFibFallback => "pass_fib_fallback",
            Counter::Redirect => "redirect",
            Counter::DropNoDest => "drop_no_dest",
            Counter::DropConnTableFull => "drop_conn_table_full",
            Counter::DropServiceMissing => "drop_service_missing",
            Counter::PassTtlExceeded => "pass_ttl_exceeded",
            Counter::DropUnsupportedForward => "drop_unsupported_forward",
            Counter::PassFibFailed => "pass_fib_failed",
            Counter::NewConn => "new_conn",
            Counter::ConnHit => "conn_hit",
            Counter::DropDestUnavailable => "drop_dest_unavailable",
            Counter::TxIcmpUnreachable => "tx_icmp_unreachable",
            Counter::TxIcmpFragNeeded => "tx_icmp_frag_needed",
            Counter::DropNoNeigh => "drop_no_neigh",
            Counter::DropTtlExceeded => "drop_ttl_exceeded",
            Counter::DropNoRoute => "drop_no_route",
            Counter::PassFragmentV6 => "pass_fragment_v6",
            Counter::DropIcmpRateLimited => "drop_icmp_rate_limited",
            Counter::FragTracked => "frag_tracked",
            Counter::FragHit => "frag_hit",
            Counter::DropSipNoCallId => "drop_sip_no_callid",
            Counter::PassSipUnscanned => "pass_sip_unscanned",
        }
    }
}

/// XDP actions (`enum xdp_action`), for [`Counter::verdict`].
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_REDIRECT: u32 = 4;

impl Counter {
    /// The XDP action a packet ending in this counter gets: the dataplane returns it, and the
    /// metrics label packets with it (one table, so the two cannot disagree). The
    /// informational counters (`NewConn`, `ConnHit`) end no packet; they map to pass.
    pub const fn verdict(self) -> u32 {
        match self {
            Counter::Redirect | Counter::TxIcmpUnreachable | Counter::TxIcmpFragNeeded => XDP_REDIRECT,
            Counter::DropNoDest
            | Counter::DropConnTableFull
            | Counter::DropServiceMissing
            | Counter::DropUnsupportedForward
            | Counter::DropDestUnavailable
            | Counter::DropNoNeigh
            | Counter::DropTtlExceeded
            | Counter::DropNoRoute
            | Counter::DropIcmpRateLimited
            | Counter::DropSipNoCallId => XDP_DROP,
            _ => XDP_PASS,
        }
    }

    /// Whether the counter is informational (counted besides a packet's final counter).
    pub const fn is_informational(self) -> bool {
        matches!(self, Counter::NewConn | Counter::ConnHit | Counter::FragTracked | Counter::FragHit)
    }
}

impl TryFrom<u32> for Counter {
    type Error = u32;
    fn try_from(v: u32) -> Result<Self, u32> {
        Counter::ALL.get(v as usize).copied().ok_or(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_drop_counter_is_an_xdp_drop_and_only_those() {
        for c in Counter::ALL {
            assert_eq!(c.name().starts_with("drop_"), c.verdict() == XDP_DROP, "{c:?}");
            if c.name().starts_with("tx_") || c == Counter::Redirect {
                assert_eq!(c.verdict(), XDP_REDIRECT, "{c:?}");
            }
        }
    }
}
