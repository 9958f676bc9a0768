# rr over three real servers: kernel order (newest first), weight 0 skipped, the position kept
# across deleting and adding a server.
topology 3
section "rr, three servers"
run ipvsadm -A -t $VIP:80 -s rr
for i in 1 2 3; do run ipvsadm -a -t $VIP:80 -r 192.0.2.1$i:80 -m; done
for i in $(seq 1 6); do tcp $i $CLIENT $((40000 + i)) http://$VIP:80/; done
run ipvsadm -L -n
section "weight 0 quiesces rs2"
run ipvsadm -e -t $VIP:80 -r 192.0.2.12:80 -m -w 0
for i in $(seq 7 10); do tcp $i $CLIENT $((40000 + i)) http://$VIP:80/; done
section "delete rs3, add it back"
run ipvsadm -d -t $VIP:80 -r 192.0.2.13:80
for i in $(seq 11 13); do tcp $i $CLIENT $((40000 + i)) http://$VIP:80/; done
run ipvsadm -a -t $VIP:80 -r 192.0.2.13:80 -m -w 2
for i in $(seq 14 18); do tcp $i $CLIENT $((40000 + i)) http://$VIP:80/; done
run ipvsadm -L -n
