# sh: source hashing over the client's ten IPv4 addresses. Each address sticks to one server
# (any port); the 256-bucket table gives each server `weight` consecutive buckets in kernel
# order (newest first). -b sh-port (the source port joins the hash); weight 0 without a
# fallback (that server's clients are refused) and with -b sh-fallback (they move, the others
# stay); weights; a server deleted (the table is rebuilt: clients of other servers move too);
# IPv6 (the address folded to 32 bits) with sh-port; UDP.
topology 3
SP=40000
CLIENTS="198.51.100.2 198.51.100.20 198.51.100.21 198.51.100.22 198.51.100.23 198.51.100.24
    198.18.1.20 198.18.1.21 198.18.2.20 198.18.2.21"
# each client address once: round LABEL URL
round() { local s; for s in $CLIENTS; do c "$1" $s "$2"; done; }
# svc VIP FLAGS W1 W2 W3: an sh service with rs1 rs2 rs3 added in that order, of those weights
svc() {
    local v=$1 flags=$2 i
    shift 2
    run ipvsadm -A -t $v:80 -s sh $flags
    for i in 1 2 3; do run ipvsadm -a -t $v:80 -r 192.0.2.1$i:80 -m -w $1; shift; done
}

section "sh, three servers of weight 1 (kernel order rs3 rs2 rs1)"
svc 203.0.113.10 "" 1 1 1
round a http://203.0.113.10:80/
section "sh, again from every address, other ports: the same servers"
round b http://203.0.113.10:80/
run ipvsadm -L -n

section "sh -b sh-port: one client address, twelve ports"
svc 203.0.113.11 "-b sh-port" 1 1 1
for i in $(seq 1 12); do c c$i $CLIENT http://203.0.113.11:80/; done
for i in $(seq 1 4); do c d$i 198.51.100.24 http://203.0.113.11:80/; done
run ipvsadm -L -n

section "sh -b sh-fallback, weight 0 on rs2"
svc 203.0.113.12 "-b sh-fallback" 1 1 1
round e http://203.0.113.12:80/
run ipvsadm -e -t 203.0.113.12:80 -r 192.0.2.12:80 -m -w 0
round f http://203.0.113.12:80/
section "sh without fallback, weight 0 on rs2"
run ipvsadm -e -t 203.0.113.10:80 -r 192.0.2.12:80 -m -w 0
round g http://203.0.113.10:80/
run ipvsadm -L -n

section "sh, rs2 deleted (the table is rebuilt over rs3 rs1)"
run ipvsadm -d -t 203.0.113.10:80 -r 192.0.2.12:80
round h http://203.0.113.10:80/

section "sh, weights rs1 w1, rs2 w2, rs3 w3"
svc 203.0.113.13 "" 1 2 3
round j http://203.0.113.13:80/
section "sh, rs3's weight edited to 1 (the table is rebuilt)"
run ipvsadm -e -t 203.0.113.13:80 -r 192.0.2.13:80 -m -w 1
round k http://203.0.113.13:80/
run ipvsadm -L -n

section "sh over IPv6 with -b sh-port"
run ipvsadm -A -t [2001:db8::10]:80 -s sh -b sh-port
for i in 1 2 3; do run ipvsadm -a -t [2001:db8::10]:80 -r [2001:db8:1::1$i]:80 -m; done
for i in $(seq 1 6); do c l$i 2001:db8:2::2 http://[2001:db8::10]:80/; done
run ipvsadm -L -n

section "sh over UDP"
run ipvsadm -A -u 203.0.113.10:53 -s sh
for i in 1 2 3; do run ipvsadm -a -u 203.0.113.10:53 -r 192.0.2.1$i:53 -m; done
for s in 198.51.100.2 198.51.100.20 198.51.100.21 198.51.100.2 198.51.100.20 198.51.100.21; do
    SP=$((SP + 1))
    udp u $s $SP 203.0.113.10 53
done
run ipvsadm -L -n
