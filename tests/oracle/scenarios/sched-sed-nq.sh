# sed and nq with connections held open. sed: the least (active+1)/weight, inactive connections
# ignored, ties to the first server in kernel order (newest first). nq: the same, except that
# the first idle server (no active connection) in kernel order is taken at once, whatever its
# weight. Weight 0 (sed never picks it, nq skips it) and a server deleted.
topology 3
SP=40000
V1=http://203.0.113.10:80 V2=http://203.0.113.11:80

section "sed: rs1 w1, rs2 w2, rs3 w3 (kernel order rs3 rs2 rs1)"
run ipvsadm -A -t 203.0.113.10:80 -s sed
for i in 1 2 3; do run ipvsadm -a -t 203.0.113.10:80 -r 192.0.2.1$i:80 -m -w $i; done
for i in $(seq 1 3); do c a$i $CLIENT $V1/; done
section "sed, connections held open"
for i in $(seq 1 6); do hold h$i $CLIENT $V1; done
run ipvsadm -L -n
for i in $(seq 1 3); do c b$i $CLIENT $V1/; done
section "sed, weight 0 on rs3"
run ipvsadm -e -t 203.0.113.10:80 -r 192.0.2.13:80 -m -w 0
for i in $(seq 1 3); do c c$i $CLIENT $V1/; done
hold h7 $CLIENT $V1
hold h8 $CLIENT $V1
run ipvsadm -L -n
section "sed, equal weights: rs1 and rs2 at weight 2"
run ipvsadm -e -t 203.0.113.10:80 -r 192.0.2.11:80 -m -w 2
for i in $(seq 1 2); do c d$i $CLIENT $V1/; done
section "sed, rs2 deleted"
run ipvsadm -d -t 203.0.113.10:80 -r 192.0.2.12:80
for i in $(seq 1 2); do c e$i $CLIENT $V1/; done
run ipvsadm -L -n

section "nq: rs1 w1, rs2 w2, rs3 w3 (kernel order rs3 rs2 rs1)"
run ipvsadm -A -t 203.0.113.11:80 -s nq
for i in 1 2 3; do run ipvsadm -a -t 203.0.113.11:80 -r 192.0.2.1$i:80 -m -w $i; done
for i in $(seq 1 3); do c f$i $CLIENT $V2/; done
section "nq, connections held open"
for i in $(seq 1 7); do hold i$i $CLIENT $V2; done
run ipvsadm -L -n
for i in $(seq 1 3); do c g$i $CLIENT $V2/; done
section "nq, weight 0 on rs1"
run ipvsadm -e -t 203.0.113.11:80 -r 192.0.2.11:80 -m -w 0
for i in $(seq 1 3); do c j$i $CLIENT $V2/; done
section "nq, rs3 deleted, then added back (from the trash, with its held connections)"
run ipvsadm -d -t 203.0.113.11:80 -r 192.0.2.13:80
for i in $(seq 1 2); do c k$i $CLIENT $V2/; done
run ipvsadm -a -t 203.0.113.11:80 -r 192.0.2.13:80 -m -w 1
hold i8 $CLIENT $V2
hold i9 $CLIENT $V2
run ipvsadm -L -n
