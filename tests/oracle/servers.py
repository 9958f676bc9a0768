#!/usr/bin/env python3
"""Application servers of one real server in an oracle scenario.

usage: servers.py NAME

Answers NAME on every listening socket, so a scenario can tell which real server a connection
reached:
- HTTP on [::]:80, [::]:443 and [::]:8080 (dual stack): `GET /` answers `NAME`;
  `GET /hold/S` keeps the connection open S seconds first (connections held open on chosen
  servers drive the lc/wlc/sed/nq schedulers and the ActiveConn counters);
  `GET /bytes/N` answers N bytes.
- UDP on [::]:53 (dual stack): answers `NAME:<payload>`.
Prints `ready` on stdout once every socket is bound.
"""
import http.server
import socket
import socketserver
import sys
import threading
import time

NAME = sys.argv[1]
TCP_PORTS = (80, 443, 8080)
UDP_PORT = 53


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        body = NAME.encode()
        if self.path.startswith("/hold/"):
            time.sleep(float(self.path.split("/")[2]))
        elif self.path.startswith("/bytes/"):
            body = b"x" * int(self.path.split("/")[2])
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class DualStackServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def udp_loop(sock):
    while True:
        data, peer = sock.recvfrom(2048)
        sock.sendto(NAME.encode() + b":" + data, peer)


def main():
    for port in TCP_PORTS:
        srv = DualStackServer(("::", port), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    udp.bind(("::", UDP_PORT))
    threading.Thread(target=udp_loop, args=(udp,), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
