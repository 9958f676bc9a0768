# lblc and lblcr, one VIP each, with connections held open. lblc keeps one server per
# destination address and sticks to it until it is "overloaded" (more active connections than
# its weight while some server has fewer than half its own weight), then picks a new one by
# weighted least connections; weight 0 or deletion of the cached server also moves it. lblcr
# keeps a set of servers per destination address: it takes the least loaded member of the set,
# and adds a server (weighted least connections over the service) when that member is
# overloaded. (The cache expiry, minutes to hours, is not shown.)
topology 3
SP=40000
V1=http://203.0.113.10:80 V2=http://203.0.113.11:80

section "lblc, three servers of weight 1 (kernel order rs3 rs2 rs1)"
run ipvsadm -A -t 203.0.113.10:80 -s lblc
for i in 1 2 3; do run ipvsadm -a -t 203.0.113.10:80 -r 192.0.2.1$i:80 -m; done
for i in $(seq 1 4); do c a$i $CLIENT $V1/; done
section "lblc, connections held open on the cached server"
hold h1 $CLIENT $V1
c b1 $CLIENT $V1/
hold h2 $CLIENT $V1
run ipvsadm -L -n
for i in $(seq 1 3); do c b$((i + 1)) 198.51.100.20 $V1/; done
hold h3 $CLIENT $V1
hold h4 $CLIENT $V1
for i in $(seq 1 3); do c c$i $CLIENT $V1/; done
hold h5 $CLIENT $V1
hold h6 $CLIENT $V1
run ipvsadm -L -n
section "lblc, every server overloaded: none below half its weight, so the cached one stays"
for i in $(seq 1 3); do c d$i $CLIENT $V1/; done
section "lblc, weight 5 on rs2: its active connections are below half its weight"
run ipvsadm -e -t 203.0.113.10:80 -r 192.0.2.12:80 -m -w 5
for i in $(seq 1 3); do c e$i $CLIENT $V1/; done
section "lblc, weight 0 on the cached server"
run ipvsadm -e -t 203.0.113.10:80 -r 192.0.2.12:80 -m -w 0
for i in $(seq 1 3); do c f$i $CLIENT $V1/; done
run ipvsadm -e -t 203.0.113.10:80 -r 192.0.2.12:80 -m -w 5
for i in $(seq 1 2); do c g$i $CLIENT $V1/; done
section "lblc, the cached server deleted"
run ipvsadm -L -n
run ipvsadm -d -t 203.0.113.10:80 -r 192.0.2.12:80
for i in $(seq 1 3); do c j$i $CLIENT $V1/; done
run ipvsadm -L -n

section "lblcr, three servers of weight 1 (kernel order rs3 rs2 rs1)"
run ipvsadm -A -t 203.0.113.11:80 -s lblcr
for i in 1 2 3; do run ipvsadm -a -t 203.0.113.11:80 -r 192.0.2.1$i:80 -m; done
for i in $(seq 1 4); do c k$i $CLIENT $V2/; done
section "lblcr, connections held open: the set grows"
hold i1 $CLIENT $V2
hold i2 $CLIENT $V2
for i in $(seq 1 3); do c l$i $CLIENT $V2/; done
hold i3 $CLIENT $V2
hold i4 $CLIENT $V2
run ipvsadm -L -n
for i in $(seq 1 3); do c m$i $CLIENT $V2/; done
hold i5 $CLIENT $V2
hold i6 $CLIENT $V2
hold i7 $CLIENT $V2
run ipvsadm -L -n
section "lblcr, every server overloaded: the least loaded member of the set"
for i in $(seq 1 4); do c n$i $CLIENT $V2/; done
section "lblcr, weight 0 on rs3, then rs2 deleted"
run ipvsadm -e -t 203.0.113.11:80 -r 192.0.2.13:80 -m -w 0
for i in $(seq 1 3); do c o$i $CLIENT $V2/; done
run ipvsadm -d -t 203.0.113.11:80 -r 192.0.2.12:80
for i in $(seq 1 3); do c p$i $CLIENT $V2/; done
run ipvsadm -L -n
