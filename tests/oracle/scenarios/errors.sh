# ipvsadm's refusals and their exit codes: local validation (2), usage and popt errors (255),
# kernel refusals (255, libipvs's text), listing failures (1); a few commands that succeed where
# one would expect a refusal (weights above 65535, a non-contiguous or ignored -M, a short IPv4
# address, -o on a fwmark service, -E/-e falling back to their defaults, a DR port forced to the
# service port, an IPv6 tunnel server of an IPv4 service); -R with empty, broken, duplicate and
# garbage input; the sync daemon's refusals; -h and -v. `ipvsadm -S -n` after the interesting
# ones shows what changed (usually nothing).
topology 1

# restore TITLE LINE...: feeds LINE... to `ipvsadm -R` (the lines are shown as notes).
restore() {
    local f line
    f=$(mktemp)
    note "restore: $1"
    shift
    printf '%s\n' "$@" >"$f"
    for line in "$@"; do note "  | $line"; done
    run ipvsadm -R <"$f"
    rm -f "$f"
}

section "baseline"
run ipvsadm -A -t $VIP:80 -s rr
run ipvsadm -a -t $VIP:80 -r 192.0.2.11:80 -m
run ipvsadm -A -u $VIP:53 -s rr
run ipvsadm -S -n

section "missing and illegal options (exit 2)"
run ipvsadm -a -t $VIP:80
run ipvsadm -a -t $VIP:80 -m
run ipvsadm -d -t $VIP:80
run ipvsadm -A
run ipvsadm -D
run ipvsadm -A -t 203.0.113.20:80 -r 192.0.2.11
run ipvsadm -E -t $VIP:80 -r 192.0.2.11:80
run ipvsadm -e -t $VIP:80 -r 192.0.2.11:80 -m -p 10
run ipvsadm -L -n -w 3
run ipvsadm -D -t $VIP:80 -s rr
run ipvsadm -C -t $VIP:80
run ipvsadm -Z -t $VIP:80 -r 192.0.2.11:80
run ipvsadm -S -t $VIP:80
run ipvsadm --set 10 10 10 -n
run ipvsadm -L -n -c -t $VIP:80
run ipvsadm -L --timeout --daemon
run ipvsadm -L -n -c --stats
run ipvsadm -L --timeout --persistent-conn
run ipvsadm -L --daemon --rate
run ipvsadm -L -n --exact -c -Z
run ipvsadm -A -t 203.0.113.20:80 -L
run ipvsadm -A -t 203.0.113.20:80 -u 203.0.113.20:80
run ipvsadm -a -t $VIP:80 -r 192.0.2.14:80 -g -m
run ipvsadm -A -t 203.0.113.20:80 -s rr extra
run ipvsadm -C extra
run ipvsadm -S -n

section "addresses and ports"
run ipvsadm -A -t 203.0.113.300:80
run ipvsadm -A -t foo.invalid:80
run ipvsadm -A -t 203.0.113.20:99999
run ipvsadm -A -t 203.0.113.20:http-nope
run ipvsadm -A -t 203.0.113.20
run ipvsadm -A -u 203.0.113.20:0
run ipvsadm -A -t 80
run ipvsadm -A -t [2001:db8::10:80
run ipvsadm -A -t 2001:db8::10
run ipvsadm -a -t $VIP:80 -r 192.0.2.300:80 -m
run ipvsadm -a -t $VIP:80 -r 192.0.2.14:99999 -m
run ipvsadm -a -t $VIP:80 -r [2001:db8:1::11]:80 -m
run ipvsadm -a -t $VIP:80 -r 224.0.0.1:80 -m
run ipvsadm -a -t $VIP:80 -r 255.255.255.255:80 -m
run ipvsadm -S -n
note "a short IPv4 address is completed the inet_aton way: 203.0.113 is 203.0.0.113"
run ipvsadm -A -t 203.0.113:80
run ipvsadm -S -n
run ipvsadm -D -t 203.0.0.113:80

section "numbers"
run ipvsadm -a -t $VIP:80 -r 192.0.2.12:80 -w -1
run ipvsadm -a -t $VIP:80 -r 192.0.2.12:80 -w abc
run ipvsadm -a -t $VIP:80 -r 192.0.2.12:80 -w 2147483648
run ipvsadm -a -t $VIP:80 -r 192.0.2.12:80 -x -5
run ipvsadm -a -t $VIP:80 -r 192.0.2.12:80 -x abc
run ipvsadm -a -t $VIP:80 -r 192.0.2.12:80 -y abc
run ipvsadm -a -t $VIP:80 -r 192.0.2.12:80 -y 10
run ipvsadm -a -t $VIP:80 -r 192.0.2.13:80 -x 10 -y 20
run ipvsadm -S -n
note "weights above 65535 pass both ipvsadm and the kernel"
run ipvsadm -a -t $VIP:80 -r 192.0.2.12:80 -w 65536
run ipvsadm -S -n
run ipvsadm -e -t $VIP:80 -r 192.0.2.12:80 -w 2147483647
run ipvsadm -L -n -t $VIP:80
run ipvsadm -d -t $VIP:80 -r 192.0.2.12:80
run ipvsadm --set 10 20
run ipvsadm --set 10 20 30 40
run ipvsadm --set a b c
run ipvsadm --set 2678401 0 0
run ipvsadm --set -1 0 0
run ipvsadm -L --timeout
run ipvsadm -A -t 203.0.113.20:80 -p 0
run ipvsadm -A -t 203.0.113.20:80 -p abc
run ipvsadm -A -t 203.0.113.20:80 -p 2678401
run ipvsadm -A -t 203.0.113.20:80 -p 60 -M 300.0.0.0
run ipvsadm -A -t [2001:db8::10]:80 -p 10 -M 255.255.255.0
run ipvsadm -A -t [2001:db8::10]:80 -p 10 -M 129
run ipvsadm -A -t [2001:db8::10]:80 -p 10 -M 0
run ipvsadm -A -f 0 -s rr
run ipvsadm -A -f abc -s rr
run ipvsadm -A -f 4294967296 -s rr
run ipvsadm -A -6 -f 1 -s rr
run ipvsadm -A -t 203.0.113.20:80 -6
run ipvsadm -S -n
note "accepted: the longest persistence, a non-contiguous mask, and a mask without -p (ignored)"
run ipvsadm -A -t 203.0.113.20:80 -p 2678400
run ipvsadm -A -t 203.0.113.21:80 -p 60 -M 255.0.255.0
run ipvsadm -A -t 203.0.113.22:80 -M 255.255.255.0
run ipvsadm -A -f 4294967295 -s rr
run ipvsadm -S -n
run ipvsadm -L -n -f 4294967295
for s in 203.0.113.20:80 203.0.113.21:80 203.0.113.22:80; do run ipvsadm -D -t $s; done
run ipvsadm -D -f 4294967295

section "schedulers, flags, persistence engines"
run ipvsadm -A -t 203.0.113.20:80 -s foo
run ipvsadm -A -t 203.0.113.20:80 -s sh -b sh-foo
run ipvsadm -A -t 203.0.113.20:80 -s rr -b sh-port
run ipvsadm -A -t 203.0.113.20:80 -b sh-port
run ipvsadm -A -t 203.0.113.20:80 -s mh -b sh-port
run ipvsadm -A -t 203.0.113.20:80 -s sh -b mh-fallback
run ipvsadm -A -t 203.0.113.20:80 -o
run ipvsadm -A -t 203.0.113.20:80 --pe nope -p 60
run ipvsadm -E -t $VIP:80 -s foo
run ipvsadm -S -n
note "accepted: -o on a fwmark service, --pe without -p"
run ipvsadm -A -f 5 -s rr -o
run ipvsadm -A -u 203.0.113.20:5060 -s rr --pe sip
run ipvsadm -S -n
run ipvsadm -D -f 5
run ipvsadm -D -u 203.0.113.20:5060

section "tunnels"
run ipvsadm -a -t $VIP:80 -r 192.0.2.14:80 -i --tun-type gue
run ipvsadm -a -t $VIP:80 -r 192.0.2.14:80 -i --tun-type foo
run ipvsadm -a -t $VIP:80 -r 192.0.2.14:80 -i --tun-type gue --tun-port 0
run ipvsadm -a -t $VIP:80 -r 192.0.2.14:80 -i --tun-type gue --tun-port 70000
run ipvsadm -a -t $VIP:80 -r 192.0.2.14:80 -i --tun-type gue --tun-port 6080 --tun-csum --tun-remcsum
run ipvsadm -a -t $VIP:80 -r 192.0.2.14:80 -i --tun-type gre --tun-port 6080
run ipvsadm -a -t $VIP:80 -r 192.0.2.14:80 -i --tun-type gre --tun-remcsum
run ipvsadm -a -t $VIP:80 -r 192.0.2.14:80 -i --tun-type gre --tun-csum --tun-nocsum
run ipvsadm -a -t $VIP:80 -r 192.0.2.14:80 -i --tun-type ipip --tun-csum
run ipvsadm -a -t $VIP:80 -r 192.0.2.14:80 -i --tun-port 6080
run ipvsadm -a -t $VIP:80 -r 192.0.2.14:80 -m --tun-type gre
run ipvsadm -a -t $VIP:80 -r 192.0.2.14:80 --tun-type ipip
run ipvsadm -S -n

section "defaults that surprise"
note "a DR server's port is forced to the service port; an IPv6 tunnel server of an IPv4 service"
run ipvsadm -a -t $VIP:80 -r 192.0.2.13:8080 -g
run ipvsadm -a -t $VIP:80 -r [2001:db8:1::13]:80 -i
run ipvsadm -S -n
run ipvsadm -d -t $VIP:80 -r 192.0.2.13:80
run ipvsadm -d -t $VIP:80 -r [2001:db8:1::13]:80
note "-e without -m or -w: back to DR and weight 1; -E without -s: back to wlc"
run ipvsadm -e -t $VIP:80 -r 192.0.2.11:80 -w 3 -m
run ipvsadm -e -t $VIP:80 -r 192.0.2.11:80
run ipvsadm -E -t $VIP:80 -s rr -p 30
run ipvsadm -E -t $VIP:80
run ipvsadm -S -n
run ipvsadm -E -t $VIP:80 -s rr
run ipvsadm -e -t $VIP:80 -r 192.0.2.11:80 -m

section "kernel refusals (exit 255) and failed listings (exit 1)"
run ipvsadm -A -t $VIP:80 -s rr
run ipvsadm -a -t $VIP:80 -r 192.0.2.11:80 -m
run ipvsadm -D -t 203.0.113.99:80
run ipvsadm -E -t 203.0.113.99:80 -s wrr
run ipvsadm -d -t $VIP:80 -r 192.0.2.99:80
run ipvsadm -e -t $VIP:80 -r 192.0.2.99:80 -w 2
run ipvsadm -a -t 203.0.113.99:80 -r 192.0.2.11:80
run ipvsadm -a -u $VIP:80 -r 192.0.2.11:80
run ipvsadm -Z -t 203.0.113.99:80
run ipvsadm -D -f 99
run ipvsadm -L -t 203.0.113.99:80
run ipvsadm -L -n -u $VIP:80
run ipvsadm -L -n -f 99
run ipvsadm -L -n --stats -t 203.0.113.99:80
run ipvsadm -S -n

section "sync daemon"
run ipvsadm --start-daemon foo
run ipvsadm --stop-daemon foo
run ipvsadm --start-daemon master --syncid 256
run ipvsadm --start-daemon master --mcast-group 192.0.2.1
run ipvsadm --start-daemon master --mcast-group ff02::1:2:3 --mcast-port 0
run ipvsadm --start-daemon master --mcast-ttl 0
run ipvsadm --start-daemon master --sync-maxlen 0
run ipvsadm --start-daemon master --mcast-interface nosuch0
run ipvsadm --stop-daemon master
run ipvsadm -L --daemon
run ipvsadm --start-daemon master --mcast-interface to-clients --syncid 7
run ipvsadm --start-daemon master --mcast-interface to-clients --syncid 7
run ipvsadm -L --daemon
run ipvsadm --stop-daemon master
run ipvsadm --stop-daemon master
run ipvsadm -L --daemon

section "usage (exit 255)"
run ipvsadm -n -L
run ipvsadm --foo
run ipvsadm -Q
run ipvsadm -A -t
run ipvsadm -A -t 203.0.113.20:80 --foo
run ipvsadm -L --nosuch
run ipvsadm -S -n

section "restore"
restore "empty"
restore "a broken line stops the restore; the lines before it stay" \
    "-A -t 203.0.113.30:80 -s rr" \
    "-a -t 203.0.113.30:80 -r 192.0.2.11:80 -m" \
    "-a -t 203.0.113.30:80 -r 192.0.2.300:80 -m" \
    "-a -t 203.0.113.30:80 -r 192.0.2.12:80 -m" \
    "-A -t 203.0.113.31:80 -s rr"
run ipvsadm -S -n
restore "a kernel error does not stop it; the exit code is the last line's" \
    "-A -t 203.0.113.40:80 -s rr" \
    "-a -t 203.0.113.40:80 -r 192.0.2.11:80 -m" \
    "-A -t 203.0.113.40:80 -s rr" \
    "-a -t 203.0.113.40:80 -r 192.0.2.12:80 -m"
run ipvsadm -S -n
restore "a kernel error on the last line" \
    "-A -t 203.0.113.41:80 -s rr" \
    "-A -t 203.0.113.41:80 -s rr"
restore "garbage" \
    "-A -t 203.0.113.50:80 -s rr" \
    "bogus line here" \
    "-A -t 203.0.113.51:80 -s rr"
restore "ipvsadm words are dropped" \
    "ipvsadm -A -t 203.0.113.52:80 -s rr"
run ipvsadm -S -n

section "help and version"
run ipvsadm -h
run ipvsadm -v
run ipvsadm
