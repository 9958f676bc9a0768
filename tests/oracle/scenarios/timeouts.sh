# `--set tcp tcpfin udp` and `-L --timeout`: the defaults (900 120 300); --set 10 6 5; an entry
# made before --set keeps its timer until its next packet, which restarts it with the new
# value; new UDP and TCP (ESTABLISHED) entries get the new values; TIME_WAIT is not settable
# (120 s); a 0 keeps the current value; the largest value ipvsadm accepts.
topology 2

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
