# dh: four services, one per VIP (203.0.113.10..13), each with the same three servers: every
# connection to a VIP reaches the server its 256-bucket table holds for that address, whatever
# the client's address or port. Weight 0 on the server of a bucket: that VIP's connections are
# refused (no fallback; the table is not rebuilt on an edit) while the others keep their
# server. A server deleted (table rebuilt over two) and added back (now at the head of the
# kernel order, so the table differs from the first one).
topology 3
SP=40000
VIPS="203.0.113.10 203.0.113.11 203.0.113.12 203.0.113.13"
# each VIP, from three client addresses
round() {
    local v s
    for v in $VIPS; do
        for s in $CLIENT 198.51.100.21 198.18.1.20; do c "$1-${v##*.}" $s http://$v:80/; done
    done
}
# one connection to each VIP
round1() { local v; for v in $VIPS; do c "$1-${v##*.}" $CLIENT http://$v:80/; done; }

section "dh on four VIPs, rs1 rs2 rs3 added in that order (kernel order rs3 rs2 rs1)"
for v in $VIPS; do
    run ipvsadm -A -t $v:80 -s dh
    for i in 1 2 3; do run ipvsadm -a -t $v:80 -r 192.0.2.1$i:80 -m; done
done
round a
run ipvsadm -L -n

section "weight 0 on rs3 in every service"
for v in $VIPS; do run ipvsadm -e -t $v:80 -r 192.0.2.13:80 -m -w 0; done
round1 b
section "rs3 back to weight 1"
for v in $VIPS; do run ipvsadm -e -t $v:80 -r 192.0.2.13:80 -m -w 1; done
round1 c
section "weights are not part of the table: rs1 at weight 5"
for v in $VIPS; do run ipvsadm -e -t $v:80 -r 192.0.2.11:80 -m -w 5; done
round1 d

section "rs2 deleted from every service"
for v in $VIPS; do run ipvsadm -d -t $v:80 -r 192.0.2.12:80; done
round1 e
section "rs2 added back (kernel order rs2 rs3 rs1)"
for v in $VIPS; do run ipvsadm -a -t $v:80 -r 192.0.2.12:80 -m; done
round1 f
run ipvsadm -L -n
