# Environment of the oracle VM: kernel IPVS (Debian's kernel modules) driven by Debian's ipvsadm.
ORACLE_ENV=kernel

lb_start() {
    # IPVS keeps one table per network namespace; ipvsadm runs in the director's (see run()).
    # The schedulers' modules load on demand when a service names them.
    modprobe ip_vs || die "cannot load ip_vs"
}

lb_stop() { :; }

# lb_mark MARK PROTO DST [DPORT[:DPORT]]: packets to DST (address or prefix, v4 or v6) with that
# protocol and destination port(s) carry firewall mark MARK. Kernel IPVS reads the mark that
# netfilter's mangle table set before IPVS's hook.
lb_mark() {
    local ipt=iptables port=()
    case $3 in *:*) ipt=ip6tables ;; esac
    [ -n "${4:-}" ] && port=(--dport "$4")
    on director "$ipt" -t mangle -A PREROUTING -d "$3" -p "$2" "${port[@]}" -j MARK --set-mark "$1" ||
        die "cannot install the mark rule"
}
