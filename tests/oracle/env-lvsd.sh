# Environment of the host: lvsd (XDP on the director's two interfaces) driven by our ipvsadm.
# Needs LVS_BIN_DIR, the directory holding the lvsd and ipvsadm binaries.
ORACLE_ENV=lvsd
: "${LVS_BIN_DIR:?LVS_BIN_DIR must name the directory holding lvsd and ipvsadm}"
export PATH="$LVS_BIN_DIR:$PATH"
LVSD_PID=
LVSD_DIR=
LVSD_PIN=

lb_start() {
    LVSD_DIR=$(mktemp -d)
    LVSD_PIN=/sys/fs/bpf/${ORACLE_NS}pin
    export LVS_SOCKET=$LVSD_DIR/lvsd.sock
    printf 'interfaces: [to-clients, to-servers]\n' >"$LVSD_DIR/lvsd.yaml"
    # nsenter, not `ip netns exec`: the latter remounts /sys and would hide /sys/fs/bpf.
    nsenter --net="/run/netns/$(ns_name director)" "$LVS_BIN_DIR/lvsd" --config "$LVSD_DIR/lvsd.yaml" \
        --pin-dir "$LVSD_PIN" --socket "$LVS_SOCKET" 2>"$LVSD_DIR/lvsd.log" &
    LVSD_PID=$!
    local t
    for t in $(seq 1 300); do
        [ -S "$LVS_SOCKET" ] && return 0
        kill -0 "$LVSD_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$LVSD_DIR/lvsd.log" >&2
    die "lvsd did not open its control socket"
}

lb_stop() {
    if [ -n "$LVSD_PID" ]; then
        kill "$LVSD_PID" 2>/dev/null
        wait "$LVSD_PID" 2>/dev/null
        LVSD_PID=
    fi
    [ -n "$LVSD_PIN" ] && rm -rf "$LVSD_PIN"
    [ -n "$LVSD_DIR" ] && rm -rf "$LVSD_DIR"
    LVSD_DIR=
    LVSD_RULES=
}

# lb_mark MARK PROTO DST [DPORT[:DPORT]]: the firewall-mark classifier. XDP runs before
# netfilter, so marks cannot come from iptables: each call appends a rule to lvsd's config
# (`classifier:`, first match wins as with iptables' first MARK target) and reloads it
# (SIGHUP), waiting until lvsd has applied it.
LVSD_RULES=
lb_mark() {
    local ports=
    [ -n "${4:-}" ] && ports=", ports: ${4/:/-}"
    LVSD_RULES+="  - { mark: $1, protocol: $2, destination: '$3'$ports }"$'\n'
    printf 'interfaces: [to-clients, to-servers]\nclassifier:\n%s' "$LVSD_RULES" >"$LVSD_DIR/lvsd.yaml"
    local before t
    before=$(grep -c 'configuration reloaded' "$LVSD_DIR/lvsd.log")
    kill -HUP "$LVSD_PID" || die "lvsd is not running"
    for t in $(seq 1 100); do
        [ "$(grep -c 'configuration reloaded' "$LVSD_DIR/lvsd.log")" -gt "$before" ] && return 0
        grep -q 'reload refused' "$LVSD_DIR/lvsd.log" && break
        sleep 0.05
    done
    cat "$LVSD_DIR/lvsd.log" >&2
    die "lvsd did not apply the classifier rule (lb_mark $*)"
}
