# lc and wlc (also as the default scheduler: ipvsadm -A without -s) with connections held open:
# the overhead is active*256 + inactive, so one held connection outweighs many finished ones;
# ties go to the first server in kernel order (newest first); lc ignores weights, wlc divides
# by them; weight 0 (lc skips it, wlc never picks it); a server deleted.
topology 3
SP=40000
V1=http://203.0.113.10:80 V2=http://203.0.113.11:80

section "lc, three servers of weight 1 (kernel order rs3 rs2 rs1)"
run ipvsadm -A -t 203.0.113.10:80 -s lc
for i in 1 2 3; do run ipvsadm -a -t 203.0.113.10:80 -r 192.0.2.1$i:80 -m; done
for i in $(seq 1 6); do c a$i $CLIENT $V1/; done
section "lc, two connections held open"
hold h1 $CLIENT $V1
hold h2 $CLIENT $V1
run ipvsadm -L -n
for i in $(seq 1 4); do c b$i $CLIENT $V1/; done
section "lc ignores weights"
run ipvsadm -e -t 203.0.113.10:80 -r 192.0.2.13:80 -m -w 5
for i in $(seq 1 2); do c c$i $CLIENT $V1/; done
run ipvsadm -L -n
section "lc, weight 0 on rs1"
run ipvsadm -e -t 203.0.113.10:80 -r 192.0.2.11:80 -m -w 0
for i in $(seq 1 4); do c d$i $CLIENT $V1/; done
section "lc, rs3 deleted"
run ipvsadm -d -t 203.0.113.10:80 -r 192.0.2.13:80
for i in $(seq 1 3); do c e$i $CLIENT $V1/; done
run ipvsadm -L -n

section "no -s: the default scheduler (wlc); rs1 w3, rs2 w2, rs3 w1 (kernel order rs3 rs2 rs1)"
run ipvsadm -A -t 203.0.113.11:80
run ipvsadm -a -t 203.0.113.11:80 -r 192.0.2.11:80 -m -w 3
run ipvsadm -a -t 203.0.113.11:80 -r 192.0.2.12:80 -m -w 2
run ipvsadm -a -t 203.0.113.11:80 -r 192.0.2.13:80 -m -w 1
run ipvsadm -L -n
for i in $(seq 1 8); do c f$i $CLIENT $V2/; done
section "wlc, connections held open"
for i in $(seq 1 4); do hold i$i $CLIENT $V2; done
run ipvsadm -L -n
for i in $(seq 1 6); do c g$i $CLIENT $V2/; done
section "wlc, rs1 and rs2 down to weight 1"
run ipvsadm -e -t 203.0.113.11:80 -r 192.0.2.11:80 -m -w 1
run ipvsadm -e -t 203.0.113.11:80 -r 192.0.2.12:80 -m -w 1
run ipvsadm -L -n
for i in $(seq 1 4); do c j$i $CLIENT $V2/; done
section "wlc, weight 0 on rs3"
run ipvsadm -e -t 203.0.113.11:80 -r 192.0.2.13:80 -m -w 0
for i in $(seq 1 4); do c k$i $CLIENT $V2/; done
section "wlc, rs2 deleted"
run ipvsadm -d -t 203.0.113.11:80 -r 192.0.2.12:80
for i in $(seq 1 3); do c l$i $CLIENT $V2/; done
run ipvsadm -L -n
