# `--set tcp tcpfin udp` and `-L --timeout`: the defaults (900 120 300); --set 10 6 5; an entry
# made before --set keeps its timer until its next packet, which restarts it with the new
# value; new UDP and TCP (ESTABLISHED) entries get the new values; TIME_WAIT is not settable
# (120 s); a 0 keeps the current value; the largest value ipvsadm accepts.
topology 2


section "defaults"
run ipvsadm -L --timeout
run ipvsadm -A -u $VIP:53 -s rr
run ipvsadm -a -u $VIP:53 -r 192.0.2.11:53 -m
run ipvsadm -A -t $VIP:80 -s rr
run ipvsadm -a -t $VIP:80 -r 192.0.2.11:80 -m
at 0
udp u1 $CLIENT 41401 $VIP 53
at 1.5
run ipvsadm -L -n -c

section "--set 10 6 5"
run ipvsadm --set 10 6 5
run ipvsadm -L --timeout
at 3.5
note "the entry made before keeps its timer"
run ipvsadm -L -n -c
at 5
note "its next packet restarts it with 5 s; new entries: UDP 5 s, ESTABLISHED 10 s"
udp u1 $CLIENT 41401 $VIP 53
at 6
udp u2 $CLIENT 41402 $VIP 53
at 7
tcp_hold $CLIENT 41411 http://$VIP:80 3
at 8
run ipvsadm -L -n -c
at 14
note "the UDP entries have expired; the held connection ended in TIME_WAIT (120 s, not settable)"
run ipvsadm -L -n -c
run ipvsadm -L -n

section "0 keeps a value"
run ipvsadm --set 0 0 0
run ipvsadm -L --timeout
run ipvsadm --set 0 0 60
run ipvsadm -L --timeout
run ipvsadm --set 0 45 0
run ipvsadm -l --timeout
run ipvsadm --set 2678400 2678400 2678400
run ipvsadm -L -n --timeout
run ipvsadm --set 900 120 300
run ipvsadm -L --timeout
