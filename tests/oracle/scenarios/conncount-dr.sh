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
