# Library of the oracle scenarios: the namespace topology, the application servers, the
# clients and the transcript recorder. Sourced by run-scenario.sh after an environment file
# (env-kernel.sh: kernel IPVS + Debian's ipvsadm inside the oracle VM; env-lvsd.sh: lvsd + our
# ipvsadm on the host), so that one scenario script runs unchanged against both.
#
# Topology (the same as the Rust test harness's director rig, plus extra client addresses and
# IPv6):
#
#  [client] eth0 ---- to-clients [director] to-servers ---- p-dir [lan: br0] p-rs1 -- eth0 [rs1]
#  198.51.100.2/24         198.51.100.1/24  192.0.2.1/24                     p-rs2 -- eth0 [rs2]
#  198.51.100.20-24/24     VIPs on lo:                                       ...   192.0.2.1N/24
#  198.18.1.20-21/32       203.0.113.10-13/32, 2001:db8::10/128                    2001:db8:1::1N/64
#  198.18.2.20-21/32       2001:db8:2::1/64 2001:db8:1::1/64                       default via .1
#  2001:db8:2::2/64
#
# Transcript format (what the differential runner reads): `### title` headings, `$ command`
# followed by its stdout, `--- stderr` and its stderr when there is any, and `[exit N]`; other
# lines are records written by the scenario (which real server a connection reached).

ORACLE_NS=${ORACLE_NS:-lvso-}
ORACLE_DIR=${ORACLE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
RS_COUNT=0
BG_PIDS=()

VIP=203.0.113.10
CLIENT=198.51.100.2

ns_name() { printf '%s%s' "$ORACLE_NS" "$1"; }
# on NS CMD...: runs CMD in namespace NS (client, director, lan, rs1..rsN).
on() { local n=$1; shift; ip netns exec "$(ns_name "$n")" "$@"; }

die() { echo "oracle: $*" >&2; exit 1; }

# Every namespace and process the scenario made goes away, whatever happened.
oracle_cleanup() {
    local pid
    lb_stop 2>/dev/null || true
    for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${BG_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    # The servers and clients started inside our namespaces are children of the subshells
    # killed above, not the subshells themselves: end every process left in them.
    local n
    for n in $(ip netns list | awk '{print $1}'); do
        case $n in "$ORACLE_NS"*)
            for pid in $(ip netns pids "$n" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
            ip netns del "$n" 2>/dev/null || true ;;
        esac
    done
}

veth() { # veth NS_A DEV_A NS_B DEV_B
    ip link add "$2" netns "$(ns_name "$1")" type veth peer name "$4" netns "$(ns_name "$3")"
}

# topology [N]: client, director, lan and N (default 3) real servers, addressed as above, with
# the application servers (servers.py) running on every real server.
topology() {
    local n=${1:-3} i x
    RS_COUNT=$n
    for x in client director lan $(seq -f 'rs%g' 1 "$n"); do
        ip netns add "$(ns_name "$x")"
        on "$x" ip link set lo up
        on "$x" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
    done
    veth client eth0 director to-clients
    veth director to-servers lan p-dir
    on lan ip link add br0 type bridge
    on lan ip link set p-dir master br0
    for i in $(seq 1 "$n"); do
        veth "rs$i" eth0 lan "p-rs$i"
        on lan ip link set "p-rs$i" master br0
        on lan ip link set "p-rs$i" up
    done
    on lan ip link set p-dir up
    on lan ip link set br0 up
    # veth rules for native XDP on the director (harmless for kernel IPVS): NAPI on the peers of
    # the director's interfaces, full checksums on packets the client and servers originate.
    on lan ethtool -K p-dir gro on >/dev/null

    on client ip addr add 198.51.100.2/24 dev eth0
    for i in 20 21 22 23 24; do on client ip addr add "198.51.100.$i/24" dev eth0; done
    for x in 198.18.1.20 198.18.1.21 198.18.2.20 198.18.2.21; do on client ip addr add "$x/32" dev eth0; done
    on client ip addr add 2001:db8:2::2/64 dev eth0 nodad
    on client ip link set eth0 up
    on client ip route add default via 198.51.100.1
    on client ip -6 route add default via 2001:db8:2::1
    on client ethtool -K eth0 gro on tx off >/dev/null

    on director ip addr add 198.51.100.1/24 dev to-clients
    on director ip addr add 2001:db8:2::1/64 dev to-clients nodad
    on director ip addr add 192.0.2.1/24 dev to-servers
    on director ip addr add 2001:db8:1::1/64 dev to-servers nodad
    for x in 10 11 12 13; do on director ip addr add "203.0.113.$x/32" dev lo; done
    on director ip addr add 2001:db8::10/128 dev lo
    on director ip link set to-clients up
    on director ip link set to-servers up
    on director ip route add 198.18.0.0/15 via 198.51.100.2
    on director sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
        net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
        net.ipv4.conf.to-clients.rp_filter=0 net.ipv4.conf.to-servers.rp_filter=0 \
        net.ipv4.conf.to-clients.accept_local=1 net.ipv4.conf.to-servers.accept_local=1

    for i in $(seq 1 "$n"); do
        on "rs$i" ip addr add "192.0.2.1$i/24" dev eth0
        on "rs$i" ip addr add "2001:db8:1::1$i/64" dev eth0 nodad
        on "rs$i" ip link set eth0 up
        on "rs$i" ip route add default via 192.0.2.1
        on "rs$i" ip -6 route add default via 2001:db8:1::1
        on "rs$i" ethtool -K eth0 gro on tx off >/dev/null
    done
    start_servers
    lb_start
}

start_servers() {
    local i fifo line
    for i in $(seq 1 "$RS_COUNT"); do
        fifo=$(mktemp -u)
        mkfifo "$fifo"
        on "rs$i" python3 "$ORACLE_DIR/servers.py" "rs$i" >"$fifo" 2>/dev/null &
        BG_PIDS+=($!)
        read -r -t 20 line <"$fifo" || true
        rm -f "$fifo"
        [ "$line" = ready ] || die "servers on rs$i did not start"
    done
}

# run CMD...: runs CMD in the director's namespace and records it in the transcript.
run() {
    local out err rc
    out=$(mktemp) err=$(mktemp)
    echo "\$ $*"
    on director "$@" >"$out" 2>"$err"
    rc=$?
    cat "$out"
    if [ -s "$err" ]; then
        echo "--- stderr"
        cat "$err"
    fi
    echo "[exit $rc]"
    rm -f "$out" "$err"
}

# quiet CMD...: runs CMD in the director's namespace; fails the scenario if it fails.
quiet() { on director "$@" >/dev/null || die "failed: $*"; }

section() { echo "### $*"; }
note() { echo "# $*"; }

# tcp LABEL SRC SPORT URL: one HTTP request from the client, from SRC:SPORT; records
# `tcp LABEL SRC:SPORT -> <answer>` (the answering real server's name, or FAIL(curl's code)).
tcp() {
    local label=$1 src=$2 sport=$3 url=$4 body rc
    body=$(on client curl -s -g --max-time 5 --interface "$src" --local-port "$sport" "$url")
    rc=$?
    [ $rc -eq 0 ] || body="FAIL($rc)"
    echo "tcp $label $src:$sport -> $body"
}

# tcp_hold SRC SPORT URL SECONDS: opens a connection that the server holds for SECONDS, in the
# background; waits until it is established (the scenario records nothing here).
tcp_hold() {
    local src=$1 sport=$2 url=$3 secs=$4
    on client curl -s -g --max-time $((secs + 10)) --interface "$src" --local-port "$sport" \
        "$url/hold/$secs" >/dev/null 2>&1 &
    BG_PIDS+=($!)
    local t
    for t in $(seq 1 50); do
        on client ss -Htn state established "( sport = :$sport )" | grep -q . && return 0
        sleep 0.1
    done
    die "held connection from $src:$sport was not established"
}

# udp LABEL SRC SPORT DST DPORT: one datagram; records `udp LABEL SRC:SPORT -> <answer>`.
udp() {
    local label=$1 src=$2 sport=$3 dst=$4 dport=$5 body
    body=$(on client python3 "$ORACLE_DIR/udp_client.py" "$src" "$sport" "$dst" "$dport" "$label")
    echo "udp $label $src:$sport -> ${body%%:*}"
}

# pause SECONDS: lets timers run (connection timeouts, persistence templates).
pause() { sleep "$1"; }

# snapshot TITLE: the counters and the connection table at this moment.
snapshot() {
    section "$*"
    run ipvsadm -L -n
    run ipvsadm -L -n -c
}

# rs_dr: prepares every real server for direct routing and tunnelling: the VIPs on lo, and no
# ARP answers for them (arp_ignore=1, arp_announce=2), as LVS-DR real servers are set up.
rs_dr() {
    local i x
    for i in $(seq 1 "$RS_COUNT"); do
        for x in 10 11 12 13; do on "rs$i" ip addr add "203.0.113.$x/32" dev lo; done
        on "rs$i" ip addr add 2001:db8::10/128 dev lo
        on "rs$i" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
            net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2 \
            net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0
    done
}

# Helpers shared by several scenarios.

# at SECONDS: the scenario clock. `at 0` starts it; `at N` waits until N s after that, so that
# expiry columns and expirations do not depend on how fast the machine runs the commands. A
# step that overran its slot is noted (notes are not compared).
at() {
    local now s=${1%.*} f=0 left
    now=$(date +%s%N)
    [[ $1 == *.* ]] && f=${1#*.}
    if [ "$1" = 0 ]; then CLOCK0=$now; return; fi
    left=$((CLOCK0 + s * 1000000000 + f * 100000000 - now))
    if [ $left -lt 0 ]; then note "clock: late for at $1 by $((-left / 1000000)) ms"; return; fi
    sleep "$((left / 1000000000)).$(printf '%09d' $((left % 1000000000)))"
}

# sample TITLE: the connection table first (its expiry column is the time-sensitive part), then
# the counters.
sample() {
    section "$*"
    run ipvsadm -L -n -c
    run ipvsadm -L -n
}

# giveup LABEL SRC SPORT URL SECONDS: a request the client abandons after SECONDS (curl
# --max-time), so that the client closes first; records `tcp LABEL SRC:SPORT -> <answer>`.
giveup() {
    local body rc
    body=$(on client curl -s -g --max-time "$5" --interface "$2" --local-port "$3" "$4")
    rc=$?
    [ $rc -eq 0 ] || body="FAIL($rc)"
    echo "tcp $1 $2:$3 -> $body"
}

# c LABEL SRC URL: one connection (tcp) from the next client source port.
c() { SP=$((SP + 1)); tcp "$1" "$2" "$SP" "$3"; }

# hold LABEL SRC URL: a connection from the next client source port that the server holds open
# (300 s, longer than the scenario), like tcp_hold; records `hold LABEL SRC:SPORT -> rsN`, the
# real server that has the connection established, or FAIL when none has it within 5 s (or
# the client gave up before).
hold() {
    local label=$1 src=$2 url=$3 t i pid d=FAIL
    SP=$((SP + 1))
    on client curl -s -g --max-time 310 --interface "$src" --local-port "$SP" "$url/hold/300" \
        >/dev/null 2>&1 &
    pid=$!
    BG_PIDS+=($pid)
    for t in $(seq 1 50); do
        for i in $(seq 1 "$RS_COUNT"); do
            if on "rs$i" ss -Htn state established "( dport = :$SP )" | grep -q .; then
                d=rs$i
                break 2
            fi
        done
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "hold $label $src:$SP -> $d"
}

# direct_return: a second link from the client to the servers' LAN (client eth1, 192.0.2.100),
# and the servers' routes to the client networks through it, so that DR replies go straight to
# the client and the director only sees the client's packets, as in a classic LVS-DR set-up.
# (With replies routed back through the director, kernel IPVS sees them too: it looks DR
# connections up by VIP:port for packets from inside, and their states follow the NAT table.)
direct_return() {
    local i
    veth client eth1 lan p-client
    on lan ip link set p-client master br0
    on lan ip link set p-client up
    on client ip addr add 192.0.2.100/24 dev eth1
    on client ip link set eth1 up
    on client sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0 \
        net.ipv4.conf.eth1.rp_filter=0
    for i in $(seq 1 "$RS_COUNT"); do
        on "rs$i" ip route add 198.51.100.0/24 via 192.0.2.100
        on "rs$i" ip route add 198.18.0.0/15 via 192.0.2.100
    done
}
