# fo and ovf with connections held open. fo: every connection to the available server of the
# highest weight (ties to the first in kernel order, newest first; weight 0 and servers over
# their upper threshold skipped), whatever its load. ovf: the highest weight while its active
# connections do not exceed its weight, then the next weight down; none left: refused.
topology 3
SP=40000
V1=http://203.0.113.10:80 V2=http://203.0.113.11:80

section "fo: rs1 w1, rs2 w3, rs3 w2 (kernel order rs3 rs2 rs1)"
run ipvsadm -A -t 203.0.113.10:80 -s fo
run ipvsadm -a -t 203.0.113.10:80 -r 192.0.2.11:80 -m -w 1
run ipvsadm -a -t 203.0.113.10:80 -r 192.0.2.12:80 -m -w 3
run ipvsadm -a -t 203.0.113.10:80 -r 192.0.2.13:80 -m -w 2
for i in $(seq 1 3); do c a$i $CLIENT $V1/; done
hold h1 $CLIENT $V1
hold h2 $CLIENT $V1
hold h3 $CLIENT $V1
hold h4 $CLIENT $V1
for i in $(seq 1 2); do c b$i $CLIENT $V1/; done
run ipvsadm -L -n
section "fo, weight 0 on rs2"
run ipvsadm -e -t 203.0.113.10:80 -r 192.0.2.12:80 -m -w 0
for i in $(seq 1 3); do c c$i $CLIENT $V1/; done
section "fo, rs1 at weight 2 too: a tie, the first in kernel order wins"
run ipvsadm -e -t 203.0.113.10:80 -r 192.0.2.11:80 -m -w 2
for i in $(seq 1 3); do c d$i $CLIENT $V1/; done
section "fo, rs3 deleted"
run ipvsadm -d -t 203.0.113.10:80 -r 192.0.2.13:80
for i in $(seq 1 2); do c e$i $CLIENT $V1/; done
section "fo, rs2 back at weight 3 with an upper threshold of 12 connections"
run ipvsadm -e -t 203.0.113.10:80 -r 192.0.2.12:80 -m -w 3 -x 12
run ipvsadm -L -n
for i in $(seq 1 5); do c f$i $CLIENT $V1/; done
run ipvsadm -L -n --thresholds

section "ovf: rs1 w1, rs2 w3, rs3 w2 (kernel order rs3 rs2 rs1)"
run ipvsadm -A -t 203.0.113.11:80 -s ovf
run ipvsadm -a -t 203.0.113.11:80 -r 192.0.2.11:80 -m -w 1
run ipvsadm -a -t 203.0.113.11:80 -r 192.0.2.12:80 -m -w 3
run ipvsadm -a -t 203.0.113.11:80 -r 192.0.2.13:80 -m -w 2
for i in $(seq 1 3); do c j$i $CLIENT $V2/; done
section "ovf, connections held open until every server is full"
for i in $(seq 1 4); do hold i$i $CLIENT $V2; done
c k1 $CLIENT $V2/
for i in $(seq 5 7); do hold i$i $CLIENT $V2; done
c k2 $CLIENT $V2/
for i in $(seq 8 9); do hold i$i $CLIENT $V2; done
run ipvsadm -L -n
c k3 $CLIENT $V2/
section "ovf, rs2 at weight 5: room again"
run ipvsadm -e -t 203.0.113.11:80 -r 192.0.2.12:80 -m -w 5
for i in $(seq 1 2); do c l$i $CLIENT $V2/; done
section "ovf, rs1 at weight 5 too: a tie, the first in kernel order wins"
run ipvsadm -e -t 203.0.113.11:80 -r 192.0.2.11:80 -m -w 5
for i in $(seq 1 2); do c m$i $CLIENT $V2/; done
section "ovf, weight 0 on rs2"
run ipvsadm -e -t 203.0.113.11:80 -r 192.0.2.12:80 -m -w 0
for i in $(seq 1 2); do c n$i $CLIENT $V2/; done
section "ovf, rs1 deleted"
run ipvsadm -d -t 203.0.113.11:80 -r 192.0.2.11:80
c o1 $CLIENT $V2/
run ipvsadm -L -n
