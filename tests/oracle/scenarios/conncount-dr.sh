# ActiveConn/InActConn and the -L -n -c states over time, direct routing (rr over three servers
# holding the VIPs, replies going straight to the client over a second link): the director only
# sees the client's packets (the input-only state table). Three TCP connections held open
# (SYN_RECV then ESTABLISHED: active) and one UDP flow (always inactive); the server answers
# and closes first, the client closes after: FIN_WAIT (the tcpfin timeout, inactive) until the
# entry expires; a client that gives up first (FIN_WAIT), then resets when the server answers
# its closed socket (CLOSE, 10 s); every entry expires. Last, the servers' replies are routed
# back through the director: kernel IPVS then matches them to the DR connection (by VIP:port)
# and the connection ends in TIME_WAIT as with NAT. --set 30 14 18 keeps the settable timeouts
# short; samples are taken at fixed times of the scenario clock, away from any transition.
topology 3
rs_dr

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

direct_return

section "setup"
run ipvsadm --set 30 14 18
run ipvsadm -A -t $VIP:80 -s rr
run ipvsadm -A -u $VIP:53 -s rr
for i in 1 2 3; do
    run ipvsadm -a -t $VIP:80 -r 192.0.2.1$i:80 -g
    run ipvsadm -a -u $VIP:53 -r 192.0.2.1$i:53 -g
done
at 0
sample "before"
at 1
udp u1 $CLIENT 41611 $VIP 53
note "three connections held 8 s, one every second and a half"
at 2
tcp_hold $CLIENT 41601 http://$VIP:80 8
at 3.5
tcp_hold $CLIENT 41602 http://$VIP:80 8
at 5
tcp_hold $CLIENT 41603 http://$VIP:80 8
at 6.5
udp u1 $CLIENT 41611 $VIP 53
at 8
sample "three connections held open, one UDP flow"
at 16
sample "the server answered and closed, then the client (FIN): FIN_WAIT"
at 17
giveup g1 $CLIENT 41604 http://$VIP:80/hold/6 2
at 21.5
sample "the client gave up and closed first"
at 30
sample "the server answered the closed socket, the client reset (CLOSE); the FIN_WAIT entries and the UDP flow expired"
at 36
sample "every entry expired"

section "replies routed back through the director"
for i in 1 2 3; do on rs$i ip route del 198.51.100.0/24 via 192.0.2.100; done
at 38
tcp_hold $CLIENT 41605 http://$VIP:80 3
at 40
sample "held open"
at 44.5
sample "the server answered and closed (seen by the director), then the client: TIME_WAIT"
