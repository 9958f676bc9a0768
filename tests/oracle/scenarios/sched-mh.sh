# mh (Maglev hashing, 4093 slots) over the client's ten IPv4 addresses: each address sticks to
# one server; -b mh-port (the source port joins the hash); weights (slots per turn); weight 0
# without a fallback (that server's clients are refused; it keeps its slots) and with
# -b mh-fallback (they move elsewhere, and come back when the weight does); a server deleted
# (only its own clients move) and added back; IPv6 with mh-port.
topology 3
SP=40000
CLIENTS="198.51.100.2 198.51.100.20 198.51.100.21 198.51.100.22 198.51.100.23 198.51.100.24
    198.18.1.20 198.18.1.21 198.18.2.20 198.18.2.21"
# each client address once: round LABEL URL
round() { local s; for s in $CLIENTS; do c "$1" $s "$2"; done; }
# svc VIP FLAGS W1 W2 W3: an mh service with rs1 rs2 rs3 added in that order, of those weights
svc() {
    local v=$1 flags=$2 i
    shift 2
    run ipvsadm -A -t $v:80 -s mh $flags
    for i in 1 2 3; do run ipvsadm -a -t $v:80 -r 192.0.2.1$i:80 -m -w $1; shift; done
}

section "mh, three servers of weight 1 (kernel order rs3 rs2 rs1)"
svc 203.0.113.10 "" 1 1 1
round a http://203.0.113.10:80/
section "mh, again from every address, other ports: the same servers"
round b http://203.0.113.10:80/
run ipvsadm -L -n

section "mh -b mh-port: one client address, twelve ports"
svc 203.0.113.11 "-b mh-port" 1 1 1
for i in $(seq 1 12); do c c$i $CLIENT http://203.0.113.11:80/; done
for i in $(seq 1 4); do c d$i 198.51.100.24 http://203.0.113.11:80/; done
run ipvsadm -L -n

section "mh -b mh-fallback, weight 0 on rs2, then weight 1 again"
svc 203.0.113.12 "-b mh-fallback" 1 1 1
round e http://203.0.113.12:80/
run ipvsadm -e -t 203.0.113.12:80 -r 192.0.2.12:80 -m -w 0
round f http://203.0.113.12:80/
run ipvsadm -e -t 203.0.113.12:80 -r 192.0.2.12:80 -m -w 1
round g http://203.0.113.12:80/
section "mh without fallback, weight 0 on rs2"
run ipvsadm -e -t 203.0.113.10:80 -r 192.0.2.12:80 -m -w 0
round h http://203.0.113.10:80/
run ipvsadm -L -n

section "mh, rs2 deleted: only its clients move"
run ipvsadm -d -t 203.0.113.10:80 -r 192.0.2.12:80
round j http://203.0.113.10:80/
section "mh, rs2 added back (kernel order rs2 rs3 rs1)"
run ipvsadm -a -t 203.0.113.10:80 -r 192.0.2.12:80 -m -w 1
round k http://203.0.113.10:80/
run ipvsadm -L -n

section "mh, weights rs1 w1, rs2 w2, rs3 w4, with mh-port"
svc 203.0.113.13 "-b mh-port" 1 2 4
for i in $(seq 1 14); do c l$i $CLIENT http://203.0.113.13:80/; done
run ipvsadm -L -n

section "mh over IPv6 with -b mh-port"
run ipvsadm -A -t [2001:db8::10]:80 -s mh -b mh-port
for i in 1 2 3; do run ipvsadm -a -t [2001:db8::10]:80 -r [2001:db8:1::1$i]:80 -m; done
for i in $(seq 1 6); do c m$i 2001:db8:2::2 http://[2001:db8::10]:80/; done
run ipvsadm -L -n
