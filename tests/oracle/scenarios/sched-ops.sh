# --ops (one-packet scheduling, UDP only): ipvsadm refuses -o on a TCP service; on a UDP service
# every datagram is scheduled on its own, so datagrams from one client port follow the
# scheduler (rr alternates, wrr runs its sequence) and leave no entry in -L -c, and
# ActiveConn/InActConn stay 0 (the kernel's one-packet connections are expired at once). Then
# -E without -o: the same client port sticks to one server through its connection entry.
topology 2
section "-o on a TCP service is refused by ipvsadm"
run ipvsadm -A -t 203.0.113.10:80 -s rr -o
run ipvsadm -L -n

section "rr with -o: one client port, six datagrams"
run ipvsadm -A -u 203.0.113.10:53 -s rr -o
run ipvsadm -a -u 203.0.113.10:53 -r 192.0.2.11:53 -m
run ipvsadm -a -u 203.0.113.10:53 -r 192.0.2.12:53 -m
for i in $(seq 1 6); do udp o$i $CLIENT 41700 203.0.113.10 53; done
run ipvsadm -L -n
run ipvsadm -L -n -c
run ipvsadm -S -n

section "wrr with -o: weights 3 and 1, one client port"
run ipvsadm -A -u 203.0.113.11:53 -s wrr -o
run ipvsadm -a -u 203.0.113.11:53 -r 192.0.2.11:53 -m -w 3
run ipvsadm -a -u 203.0.113.11:53 -r 192.0.2.12:53 -m -w 1
for i in $(seq 1 8); do udp w$i $CLIENT 41701 203.0.113.11 53; done
run ipvsadm -L -n

section "-E without -o: the client port keeps one connection"
run ipvsadm -E -u 203.0.113.10:53 -s rr
for i in $(seq 1 3); do udp n$i $CLIENT 41702 203.0.113.10 53; done
run ipvsadm -L -n
run ipvsadm -L -n -c
