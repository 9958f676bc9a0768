# wrr: weights 4,3,2 added heaviest first and lightest first (two services: kernel order is the
# reverse of the adds), over more than two full cycles; the scheduler bound while the servers
# already exist (-E from rr: the pass starts at the highest weight); -E with the same scheduler
# (no re-init); a weight edit mid-sequence (the position goes back to the head of the list);
# weight 0; a server deleted; every weight 0 (no destination: the connection is refused).
topology 3
SP=40000
V1=http://203.0.113.10:80/ V2=http://203.0.113.11:80/ V3=http://203.0.113.12:80/

section "wrr, weights added heaviest first: rs1 w4, rs2 w3, rs3 w2 (kernel order rs3 rs2 rs1)"
run ipvsadm -A -t 203.0.113.10:80 -s wrr
run ipvsadm -a -t 203.0.113.10:80 -r 192.0.2.11:80 -m -w 4
run ipvsadm -a -t 203.0.113.10:80 -r 192.0.2.12:80 -m -w 3
run ipvsadm -a -t 203.0.113.10:80 -r 192.0.2.13:80 -m -w 2
for i in $(seq 1 24); do c a$i $CLIENT $V1; done
run ipvsadm -L -n

section "edit rs2's weight to 1 mid-cycle"
run ipvsadm -e -t 203.0.113.10:80 -r 192.0.2.12:80 -m -w 1
for i in $(seq 1 10); do c b$i $CLIENT $V1; done

section "weight 0 on rs1"
run ipvsadm -e -t 203.0.113.10:80 -r 192.0.2.11:80 -m -w 0
for i in $(seq 1 6); do c c$i $CLIENT $V1; done

section "delete rs3"
run ipvsadm -d -t 203.0.113.10:80 -r 192.0.2.13:80
for i in $(seq 1 3); do c d$i $CLIENT $V1; done
run ipvsadm -L -n

section "weight 0 on rs2 too: no server left with a weight"
run ipvsadm -e -t 203.0.113.10:80 -r 192.0.2.12:80 -m -w 0
c e1 $CLIENT $V1
run ipvsadm -L -n

section "wrr, weights added lightest first: rs3 w2, rs2 w3, rs1 w4 (kernel order rs1 rs2 rs3)"
run ipvsadm -A -t 203.0.113.11:80 -s wrr
run ipvsadm -a -t 203.0.113.11:80 -r 192.0.2.13:80 -m -w 2
run ipvsadm -a -t 203.0.113.11:80 -r 192.0.2.12:80 -m -w 3
run ipvsadm -a -t 203.0.113.11:80 -r 192.0.2.11:80 -m -w 4
for i in $(seq 1 21); do c f$i $CLIENT $V2; done
run ipvsadm -L -n

section "rr service switched to wrr after its servers exist (rs1 w4, rs2 w3, rs3 w2)"
run ipvsadm -A -t 203.0.113.12:80 -s rr
run ipvsadm -a -t 203.0.113.12:80 -r 192.0.2.11:80 -m -w 4
run ipvsadm -a -t 203.0.113.12:80 -r 192.0.2.12:80 -m -w 3
run ipvsadm -a -t 203.0.113.12:80 -r 192.0.2.13:80 -m -w 2
run ipvsadm -E -t 203.0.113.12:80 -s wrr
for i in $(seq 1 5); do c g$i $CLIENT $V3; done
section "-E with the same scheduler mid-cycle"
run ipvsadm -E -t 203.0.113.12:80 -s wrr
for i in $(seq 6 13); do c g$i $CLIENT $V3; done
run ipvsadm -L -n
