# twos (power of two choices) came after kernel 6.1: Debian's 6.1 kernel has no ip_vs_twos
# module, so adding a twos service fails. This records the kernel's refusal, so the gap
# between lvsd (which offers twos) and the 6.1 oracle is on record; the allow-list's
# kernel-without-twos rule tolerates exactly that gap and nothing else.
topology 1
section "twos is not a scheduler of kernel 6.1"
run ipvsadm -A -t 203.0.113.10:80 -s twos
run ipvsadm -L -n
