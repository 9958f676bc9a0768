#!/bin/bash
# Runs inside the oracle VM (started by the image's init with the host's share on /mnt/oracle):
# every scenario named in scenarios.list, against kernel IPVS, transcripts into out/.
cd /mnt/oracle || exit 1
mkdir -p out
echo "kernel $(uname -r)" >out/versions.txt
dpkg-query -W -f '${Package} ${Version}\n' ipvsadm iproute2 python3 curl >>out/versions.txt
for s in $(cat scenarios.list); do
    t0=$(cut -d' ' -f1 /proc/uptime)
    timeout 900 bash tree/run-scenario.sh kernel "tree/scenarios/$s.sh" >"out/$s.txt" 2>"out/$s.err"
    rc=$?
    echo "$s rc=$rc start=$t0 end=$(cut -d' ' -f1 /proc/uptime)" >>out/timing.txt
done
