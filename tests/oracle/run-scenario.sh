#!/usr/bin/env bash
# usage: run-scenario.sh ENV SCENARIO
#   ENV: kernel (in the oracle VM) or lvsd (on the host; needs LVS_BIN_DIR)
#   SCENARIO: path of a scenario script (scenarios/*.sh)
# Builds the topology in fresh namespaces named $ORACLE_NS* (default lvso-), runs the scenario
# and writes its transcript on stdout. Everything is torn down on exit, also on failure.
set -u
[ $# -eq 2 ] || { echo "usage: $0 kernel|lvsd SCENARIO" >&2; exit 2; }
ORACLE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
case $1 in
    kernel | lvsd) . "$ORACLE_DIR/env-$1.sh" ;;
    *) echo "unknown environment '$1'" >&2; exit 2 ;;
esac
. "$ORACLE_DIR/lib.sh"
trap oracle_cleanup EXIT
trap 'exit 130' INT TERM
. "$2"
