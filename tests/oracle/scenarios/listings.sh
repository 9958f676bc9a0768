# Every listing mode over a rich state: TCP, UDP, fwmark IPv4 (persistent: an `IP` template)
# and IPv6, IPv6 services and servers, persistence with -M (IPv4 mask and IPv6 prefix), a
# port-0 persistent service, --pe sip on UDP (a SIP request makes a template carrying its
# Call-ID), sh/mh flags, -o, thresholds, Route/Tunnel/Masq, ipip/gue/gre tunnels with their
# checksum options, an IPv6 tunnel server of an IPv4 service, weights 0..65535. A little
# deterministic NAT traffic, one connection held open, then: -L -n -c (and --persistent-conn),
# -L -n, -L, -l, -Ln, --stats, --exact, --rate, --thresholds, --persistent-conn, --tun-info,
# --nosort (one service at a time), single services (-t/-u/-f/-f -6), -Z, -S, -S -n, --timeout, --daemon (none, master
# and backup; refused while a server of the other address family exists).
topology 3
lb_mark 7 tcp 203.0.113.12 443
lb_mark 8 tcp 2001:db8::10 8080


# sip LABEL SRC SPORT DST DPORT CALLID: one SIP OPTIONS request over UDP (no answer awaited:
# nothing listens on 5060); records `sip LABEL SRC:SPORT`.
sip() {
    on client python3 -c '
import socket, sys
src, sport, dst, dport, callid = sys.argv[1:6]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, int(sport)))
msg = ("OPTIONS sip:rs@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s:%s\r\nFrom: <sip:c@%s>\r\n"
       "To: <sip:rs@%s>\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
       % (dst, src, sport, src, dst, callid))
s.sendto(msg.encode(), (dst, int(dport)))
' "$2" "$3" "$4" "$5" "$6"
    echo "sip $1 $2:$3"
}

section "setup"
run ipvsadm -A -t $VIP:80 -s wrr
run ipvsadm -a -t $VIP:80 -r 192.0.2.11:80 -m -w 5
run ipvsadm -a -t $VIP:80 -r 192.0.2.12:80 -m -w 4 -x 200 -y 100
run ipvsadm -a -t $VIP:80 -r 192.0.2.13:80 -m -w 0
run ipvsadm -A -t $VIP:8080 -s dh
run ipvsadm -a -t $VIP:8080 -r 192.0.2.12:8080 -m -w 65535
run ipvsadm -A -u $VIP:53 -s rr
run ipvsadm -a -u $VIP:53 -r 192.0.2.11:53 -m -w 3
run ipvsadm -a -u $VIP:53 -r 192.0.2.12:53 -m -w 2
run ipvsadm -A -t 203.0.113.11:443 -s wlc -p 300 -M 255.255.255.0
run ipvsadm -a -t 203.0.113.11:443 -r 192.0.2.11:443 -m -w 1
run ipvsadm -a -t 203.0.113.11:443 -r 192.0.2.12:443 -m -w 1 -x 10 -y 5
run ipvsadm -A -t 203.0.113.12:80 -s sh -b sh-fallback,sh-port
run ipvsadm -a -t 203.0.113.12:80 -r 192.0.2.11:80 -g -w 1
run ipvsadm -a -t 203.0.113.12:80 -r 192.0.2.12:80 -i -w 2
run ipvsadm -a -t 203.0.113.12:80 -r 192.0.2.13:80 -m -w 3
run ipvsadm -A -t 203.0.113.12:8080 -s wrr
run ipvsadm -a -t 203.0.113.12:8080 -r 192.0.2.11 -i --tun-type gue --tun-port 6080 -w 100
run ipvsadm -a -t 203.0.113.12:8080 -r 192.0.2.12 -i --tun-type gue --tun-port 6081 --tun-csum
run ipvsadm -a -t 203.0.113.12:8080 -r 192.0.2.13 -i --tun-type gue --tun-port 6082 --tun-remcsum
run ipvsadm -A -u 203.0.113.12:53 -s lc
run ipvsadm -a -u 203.0.113.12:53 -r 192.0.2.11 -i --tun-type gre
run ipvsadm -a -u 203.0.113.12:53 -r 192.0.2.12 -i --tun-type gre --tun-csum
run ipvsadm -a -u 203.0.113.12:53 -r 192.0.2.13 -i --tun-type ipip -w 10
run ipvsadm -a -u 203.0.113.12:53 -r [2001:db8:1::13]:53 -i -w 20
run ipvsadm -A -t 203.0.113.13:0 -s rr -p
run ipvsadm -a -t 203.0.113.13:0 -r 192.0.2.13:0 -m
run ipvsadm -A -u 203.0.113.13:53 -s mh -b mh-fallback,mh-port -o
run ipvsadm -a -u 203.0.113.13:53 -r 192.0.2.13:53 -m
run ipvsadm -A -u 203.0.113.13:5060 -s rr -p 30 --pe sip
run ipvsadm -a -u 203.0.113.13:5060 -r 192.0.2.11:5060 -m
run ipvsadm -A -t [2001:db8::10]:80 -s rr
run ipvsadm -a -t [2001:db8::10]:80 -r [2001:db8:1::11]:80 -m -w 1
run ipvsadm -a -t [2001:db8::10]:80 -r [2001:db8:1::12]:80 -m -w 2
run ipvsadm -A -t [2001:db8::10]:443 -s sh -b sh-port -p 600 -M 64
run ipvsadm -a -t [2001:db8::10]:443 -r [2001:db8:1::13]:443 -m
run ipvsadm -A -f 7 -s lc -p 60
run ipvsadm -a -f 7 -r 192.0.2.11 -m -w 1
run ipvsadm -a -f 7 -r 192.0.2.12 -m -w 2
run ipvsadm -a -f 7 -r 198.18.0.5 -i -w 0
run ipvsadm -A -f 8 -6 -s wlc
run ipvsadm -a -f 8 -6 -r 2001:db8:1::11 -g -w 0
run ipvsadm -a -f 8 -6 -r 2001:db8:1::12 -m -w 3

section "traffic"
note "paced by the scenario clock (at N): expiry columns do not depend on the machine's speed"
at 0
for i in 1 2 3; do tcp wrr$i $CLIENT $((41000 + i)) http://$VIP:80/; done
at 3
for i in 1 2; do udp rr$i $CLIENT $((41010 + i)) $VIP 53; done
for i in 1 2; do tcp v6-$i 2001:db8:2::2 $((41020 + i)) "http://[2001:db8::10]:80/"; done
at 6
tcp pm1 198.51.100.20 41031 http://203.0.113.11:443/
tcp pm2 198.51.100.21 41032 http://203.0.113.11:443/
tcp pm3 198.18.1.20 41033 http://203.0.113.11:443/
at 9
tcp fwm7 $CLIENT 41041 http://203.0.113.12:443/
tcp fwm8 2001:db8:2::2 41051 "http://[2001:db8::10]:8080/"
tcp port0 $CLIENT 41061 http://203.0.113.13:8080/
at 12
udp ops $CLIENT 41071 203.0.113.13 53
sip callid $CLIENT 41081 203.0.113.13 5060 a84b4c76e66710
tcp_hold $CLIENT 41091 http://$VIP:80 120

section "connections"
at 14
run ipvsadm -L -n -c
at 15
run ipvsadm -L -n -c --persistent-conn
at 16
run ipvsadm -L -c

section "services and servers"
run ipvsadm -L -n
run ipvsadm -L
run ipvsadm -l
run ipvsadm -Ln
run ipvsadm -L -n --thresholds
run ipvsadm -L -n --persistent-conn
run ipvsadm -L -n --tun-info
note "--nosort: servers newest first (services come in hash order, salted per boot: one at a time)"
run ipvsadm -L -n --nosort -t $VIP:80
run ipvsadm -L -n --nosort -u 203.0.113.12:53
run ipvsadm -L -n --nosort -f 7
run ipvsadm -L -n --sort

section "one service"
run ipvsadm -L -n -t $VIP:80
run ipvsadm -L -n -u $VIP:53
run ipvsadm -L -n -t [2001:db8::10]:80
run ipvsadm -L -n -f 7
run ipvsadm -L -n -f 8 -6
run ipvsadm -L -n --tun-info -t 203.0.113.12:8080
run ipvsadm -L -n --thresholds -t 203.0.113.11:443
run ipvsadm -L -n --persistent-conn -f 7
run ipvsadm -L -t 203.0.113.13:0

section "counters"
note "(after 3 s: the counters are read through the 2 s estimator)"
pause 3
run ipvsadm -L -n --stats
run ipvsadm -L -n --stats --exact
run ipvsadm -L -n --rate
run ipvsadm -L -n --rate --exact
run ipvsadm -L -n --stats -t $VIP:80
run ipvsadm -Z -t $VIP:80
run ipvsadm -L -n --stats -t $VIP:80
run ipvsadm -Z
run ipvsadm -L -n --stats --exact

section "save"
run ipvsadm -S -n
run ipvsadm -S

section "timeouts and sync daemons"
run ipvsadm -L --timeout
run ipvsadm -L --daemon
note "the sync protocol cannot carry servers of another address family than their service"
run ipvsadm --start-daemon master --mcast-interface to-clients
run ipvsadm -d -u 203.0.113.12:53 -r [2001:db8:1::13]:53
run ipvsadm --start-daemon master --mcast-interface to-clients
run ipvsadm --start-daemon backup --mcast-interface to-servers --syncid 9 --mcast-port 8849 --sync-maxlen 1200
run ipvsadm -L --daemon
run ipvsadm -L -n --daemon
run ipvsadm -a -u 203.0.113.12:53 -r [2001:db8:1::13]:53 -i -w 20
run ipvsadm --stop-daemon backup
run ipvsadm -L --daemon
run ipvsadm --stop-daemon master
run ipvsadm -L --daemon
