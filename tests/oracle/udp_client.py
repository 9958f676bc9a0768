#!/usr/bin/env python3
"""usage: udp_client.py SRC SPORT DST DPORT PAYLOAD — one datagram, prints the answer or FAIL."""
import socket
import sys

src, sport, dst, dport, payload = sys.argv[1:6]
family = socket.AF_INET6 if ":" in dst else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.bind((src, int(sport)))
s.settimeout(3)
s.sendto(payload.encode(), (dst, int(dport)))
try:
    print(s.recv(2048).decode())
except socket.timeout:
    print("FAIL(timeout)")
