# Connection thresholds on one real server (DR, rr over rs1 and rs2): with -x 3 -y 2, the third
# connection held open on rs1 overloads it and new connections go to rs2 (the overload flag is
# not listed, only seen in behaviour); when one held connection ends, the total (2) is not below
# -y, so rs1 stays overloaded; when a second one ends (total 1 < 2), rs1 is readmitted. Then
# with -x 2 and no -y: overloaded at 2, and an edit raising -x clears the flag at once.
# DR with replies going straight to the client keeps the ends short: a closed connection is in
# FIN_WAIT for the tcpfin timeout (--set 0 3 0: 3 s) and stops counting when its entry expires,
# not when it closes.
topology 2
rs_dr



direct_return

state() {
    section "$*"
    run ipvsadm -L -n -c
    run ipvsadm -L -n --thresholds
}

section "setup: rs1 -x 3 -y 2, rs2 without thresholds; tcpfin 3 s"
run ipvsadm --set 0 3 0
run ipvsadm -A -t $VIP:80 -s rr
run ipvsadm -a -t $VIP:80 -r 192.0.2.11:80 -g -x 3 -y 2
run ipvsadm -a -t $VIP:80 -r 192.0.2.12:80 -g
run ipvsadm -L -n --thresholds

section "six connections held open: rr alternates, the third on rs1 overloads it"
note "rs1's connections end at 13.5 s (41302) and 24.5 s (41304); the others are held 60 s"
at 0
tcp_hold $CLIENT 41301 http://$VIP:80 60
at 1.5
tcp_hold $CLIENT 41302 http://$VIP:80 12
at 3
tcp_hold $CLIENT 41303 http://$VIP:80 60
at 4.5
tcp_hold $CLIENT 41304 http://$VIP:80 20
at 6
tcp_hold $CLIENT 41305 http://$VIP:80 60
at 7.5
tcp_hold $CLIENT 41306 http://$VIP:80 60
at 9.5
state "rs1 holds 3 connections (= -x): overloaded"
at 11
tcp p1 $CLIENT 41311 http://$VIP:80/
tcp p2 $CLIENT 41312 http://$VIP:80/

at 19
state "one of rs1's connections ended and expired: 2 left, not below -y 2"
at 20.5
tcp p3 $CLIENT 41313 http://$VIP:80/
tcp p4 $CLIENT 41314 http://$VIP:80/

at 30
state "a second one ended and expired: 1 left, below -y 2: readmitted"
at 31.5
tcp p5 $CLIENT 41315 http://$VIP:80/
tcp p6 $CLIENT 41316 http://$VIP:80/

at 37
section "-x 2 without -y: overloaded at 2 connections"
run ipvsadm -e -t $VIP:80 -r 192.0.2.11:80 -g -x 2
run ipvsadm -L -n --thresholds
at 38.5
tcp_hold $CLIENT 41307 http://$VIP:80 60
at 40
state "rs1 holds 2 connections (= -x)"
at 41.5
tcp p7 $CLIENT 41317 http://$VIP:80/
tcp p8 $CLIENT 41318 http://$VIP:80/
at 43.5
section "raising -x clears the overload at once"
run ipvsadm -e -t $VIP:80 -r 192.0.2.11:80 -g -x 5
tcp p9 $CLIENT 41319 http://$VIP:80/
tcp p10 $CLIENT 41320 http://$VIP:80/
run ipvsadm -L -n --thresholds
