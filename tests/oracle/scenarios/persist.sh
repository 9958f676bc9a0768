# Persistence: templates in -L -n -c (the client's address, masked, with port 0; ASSURED once
# the server answered) and their expiry; a short timeout (-p 8 on UDP, udp timeout 3 s) expiring
# once its connection is gone, and postponed by 60 s while it still controls a live connection
# (the kernel has no minimum for -p: a template simply cannot go before its connections); -p
# without a value (360 s): rr advances once per client, not per connection; -p 60 -M
# 255.255.255.0: one template per client /24; a port-0 persistent service (every port of the
# VIP sticks to one server, dport kept); weight 0 keeps serving clients with a template while
# new clients go elsewhere; `ipvsadm -C` leaves the templates, and a service re-created with the
# same servers (in another order) reuses them.
topology 3


section "setup"
run ipvsadm --set 0 0 3
run ipvsadm -A -u 203.0.113.13:53 -s rr -p 8
for i in 1 2 3; do run ipvsadm -a -u 203.0.113.13:53 -r 192.0.2.1$i:53 -m; done
run ipvsadm -A -t $VIP:80 -s rr -p
for i in 1 2 3; do run ipvsadm -a -t $VIP:80 -r 192.0.2.1$i:80 -m; done
run ipvsadm -A -t 203.0.113.11:80 -s rr -p 60 -M 255.255.255.0
for i in 1 2 3; do run ipvsadm -a -t 203.0.113.11:80 -r 192.0.2.1$i:80 -m; done
run ipvsadm -A -t 203.0.113.12:0 -s rr -p 120
for i in 1 2 3; do run ipvsadm -a -t 203.0.113.12:0 -r 192.0.2.1$i:0 -m; done
run ipvsadm -S -n
run ipvsadm -L -n

section "-p 8 on UDP: a template lasts 8 s from its last use, or 60 s more while it controls a connection"
note "one datagram from .20; a flow from .21 kept alive every 2 s"
at 0
udp once 198.51.100.20 41241 203.0.113.13 53
at 1
udp kept-1 198.51.100.21 41251 203.0.113.13 53
at 2
run ipvsadm -L -n -c
at 3
udp kept-2 198.51.100.21 41251 203.0.113.13 53
at 5
udp kept-3 198.51.100.21 41251 203.0.113.13 53
at 5.5
note "the first client's connection has expired (udp timeout 3 s), its template has not"
run ipvsadm -L -n -c
run ipvsadm -L -n --persistent-conn -u 203.0.113.13:53
at 7
udp kept-4 198.51.100.21 41251 203.0.113.13 53
at 9
udp kept-5 198.51.100.21 41251 203.0.113.13 53
at 11
note "the first template has expired; the second one, due at 9 s, controls a live connection: +60 s"
run ipvsadm -L -n -c
run ipvsadm -L -n --persistent-conn -u 203.0.113.13:53
at 12
note "no template any more: scheduled again (rr moves on)"
udp again 198.51.100.20 41242 203.0.113.13 53
run ipvsadm --set 0 0 300

section "-p without a value: 360 s, rr advances once per client"
at 14
for i in 0 1 2; do tcp r1 198.51.100.2$i $((41201 + i)) http://$VIP:80/; done
at 17
for i in 0 1 2; do tcp r2 198.51.100.2$i $((41204 + i)) http://$VIP:80/; done

section "-p 60 -M 255.255.255.0: one template per client /24"
at 20
tcp m1 198.51.100.20 41211 http://203.0.113.11:80/
tcp m1 198.18.1.20 41212 http://203.0.113.11:80/
tcp m1 198.18.2.20 41213 http://203.0.113.11:80/
at 23
tcp m2 198.51.100.23 41214 http://203.0.113.11:80/
tcp m2 198.18.1.21 41215 http://203.0.113.11:80/
tcp m2 198.18.2.21 41216 http://203.0.113.11:80/

section "port 0 persistent: every port of the VIP goes to the client's server"
at 26
tcp p0 198.51.100.20 41221 http://203.0.113.12:80/
tcp p0 198.51.100.20 41222 http://203.0.113.12:443/
tcp p0 198.51.100.20 41223 http://203.0.113.12:8080/
at 29
tcp p0 198.51.100.21 41224 http://203.0.113.12:8080/
tcp p0 198.51.100.21 41225 http://203.0.113.12:80/

section "templates"
at 32
run ipvsadm -L -n -c
run ipvsadm -L -n
run ipvsadm -L -n --persistent-conn

section "weight 0: clients with a template keep their server, new clients go elsewhere"
run ipvsadm -e -t $VIP:80 -r 192.0.2.13:80 -m -w 0
at 35
tcp w0 198.51.100.20 41231 http://$VIP:80/
tcp w0 198.51.100.23 41232 http://$VIP:80/
tcp w0 198.51.100.24 41233 http://$VIP:80/
at 38
run ipvsadm -L -n --persistent-conn -t $VIP:80

section "ipvsadm -C leaves the templates; a re-created service reuses them"
run ipvsadm -C
run ipvsadm -L -n
at 40
run ipvsadm -L -n -c
run ipvsadm -A -t $VIP:80 -s rr -p
for i in 3 2 1; do run ipvsadm -a -t $VIP:80 -r 192.0.2.1$i:80 -m; done
at 44
tcp again 198.51.100.20 41234 http://$VIP:80/
tcp again 198.51.100.22 41235 http://$VIP:80/
tcp new 198.18.1.20 41236 http://$VIP:80/
at 47
run ipvsadm -L -n --persistent-conn
