# ActiveConn/InActConn and the -L -n -c states over time, NAT (rr over three servers): three
# TCP connections held open (SYN_RECV then ESTABLISHED: active) and one UDP flow (always
# inactive); the server answers and closes first, the client closes after (TIME_WAIT, 120 s,
# inactive); a client that gives up first (CLOSE_WAIT), then resets when the server answers
# its closed socket (CLOSE, 10 s) until the entry expires. --set 30 14 18 keeps the settable
# timeouts short; samples are taken at fixed times of the scenario clock, away from any
# transition. The TIME_WAIT entries are left to expire after the end (120 s).
topology 3




section "setup"
run ipvsadm --set 30 14 18
run ipvsadm -A -t $VIP:80 -s rr
run ipvsadm -A -u $VIP:53 -s rr
for i in 1 2 3; do
    run ipvsadm -a -t $VIP:80 -r 192.0.2.1$i:80 -m
    run ipvsadm -a -u $VIP:53 -r 192.0.2.1$i:53 -m
done
at 0
sample "before"
at 1
udp u1 $CLIENT 41511 $VIP 53
note "three connections held 8 s, one every second and a half"
at 2
tcp_hold $CLIENT 41501 http://$VIP:80 8
at 3.5
tcp_hold $CLIENT 41502 http://$VIP:80 8
at 5
tcp_hold $CLIENT 41503 http://$VIP:80 8
at 6.5
udp u1 $CLIENT 41511 $VIP 53
at 8
sample "three connections held open, one UDP flow"
at 16
sample "the server answered and closed, then the client (FIN)"
at 17
giveup g1 $CLIENT 41504 http://$VIP:80/hold/6 2
at 21.5
sample "the client gave up and closed first"
at 30
sample "the server answered the closed socket, the client reset (CLOSE); the UDP flow expired"
at 36
sample "the reset connection expired; TIME_WAIT remains"
