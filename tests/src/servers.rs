//! Real-server emulation: an HTTP/1.1 server and a UDP echo server, each on threads whose
//! sockets live in a namespace. Dropping a server stops its threads and closes its sockets.

use anyhow::{Context, Result};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::netns::Netns;

/// Byte `i` of the deterministic `/bytes/N` body (period 251, so it never lines up with
/// power-of-two segment or page sizes).
pub fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// The body `GET /bytes/N` returns.
pub fn expected_bytes(n: u64) -> Vec<u8> {
    (0..n).map(pattern_byte).collect()
}

/// Idle keep-alive connections are closed after this long.
const IDLE_LIMIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

/// What both servers are: a named thread serving one socket, counting what it answered, and
/// stopped (and joined) when dropped.
pub struct ServerThread {
    name: String,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    hits: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Runs `serve(name, stop, hits)` on a thread named `<kind>-<name>`.
    fn spawn(
        kind: &str,
        name: &str,
        addr: SocketAddr,
        serve: impl FnOnce(String, Arc<AtomicBool>, Arc<AtomicU64>) + Send + 'static,
    ) -> Result<ServerThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(AtomicU64::new(0));
        let (s, h, n) = (stop.clone(), hits.clone(), name.to_string());
        let thread = std::thread::Builder::new().name(format!("{kind}-{name}")).spawn(move || serve(n, s, h))?;
        Ok(ServerThread { name: name.to_string(), addr, stop, hits, thread: Some(thread) })
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// Requests (HTTP, any route) or datagrams (UDP) answered so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// HTTP/1.1 server bound in a namespace. Routes:
/// - `GET /` -> `200`, body `<name>\n`
/// - `GET /bytes/N` -> `200`, N bytes of [`pattern_byte`]
/// - `GET /peer` -> `200`, body `<client ip>:<port>\n` as the server sees it (NAT checks)
/// - anything else -> `404`
///
/// Keep-alive by default, closing after `Connection: close` (or HTTP/1.0). Every response has
/// `X-Server: <name>`.
pub struct HttpServer(ServerThread);

impl std::ops::Deref for HttpServer {
    type Target = ServerThread;
    fn deref(&self) -> &ServerThread {
        &self.0
    }
}

impl HttpServer {
    /// Binds `bind` (e.g. `0.0.0.0:80`) inside `ns` and serves until dropped.
    pub fn start(ns: &Netns, bind: SocketAddr, name: &str) -> Result<HttpServer> {
        let listener = ns
            .enter(|| TcpListener::bind(bind))?
            .with_context(|| format!("HTTP server {name}: binding {bind} in {}", ns.name()))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let t = ServerThread::spawn("http", name, addr, move |n, s, h| accept_loop(listener, n, s, h))?;
        Ok(HttpServer(t))
    }
}

fn accept_loop(listener: TcpListener, name: String, stop: Arc<AtomicBool>, hits: Arc<AtomicU64>) {
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let (n, s, h) = (name.clone(), stop.clone(), hits.clone());
                match std::thread::Builder::new().name(format!("http-{name}-conn")).spawn(move || {
                    if let Err(e) = serve_conn(stream, peer, &n, &s, &h) {
                        if !s.load(Ordering::SeqCst) {
                            eprintln!("http server {n}: connection from {peer}: {e:#}");
                        }
                    }
                }) {
                    Ok(t) => conns.push(t),
                    Err(e) => eprintln!("http server {name}: spawning connection thread: {e}"),
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                eprintln!("http server {name}: accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        conns.retain(|t| !t.is_finished());
    }
    for t in conns {
        let _ = t.join();
    }
}

fn find_header_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn serve_conn(mut s: TcpStream, peer: SocketAddr, name: &str, stop: &AtomicBool, hits: &AtomicU64) -> Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(POLL))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    let _ = s.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::new();
    let mut last_activity = Instant::now();
    let mut chunk = [0u8; 4096];
    loop {
        // Read until a full request head is buffered.
        let head_end = loop {
            if let Some(e) = find_header_end(&buf) {
                break e;
            }
            if stop.load(Ordering::SeqCst) || last_activity.elapsed() > IDLE_LIMIT || buf.len() > 64 * 1024 {
                return Ok(());
            }
            match s.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    last_activity = Instant::now();
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or("");
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let version = parts.next().unwrap_or("HTTP/1.0").to_string();
        let mut close = version != "HTTP/1.1";
        let mut content_length = 0usize;
        for l in lines {
            let Some((k, v)) = l.split_once(':') else { continue };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
            match k.as_str() {
                "connection" if v == "close" => close = true,
                "connection" if v == "keep-alive" => close = false,
                "content-length" => content_length = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        // Discard any request body.
        let mut rest = buf.split_off(head_end);
        while rest.len() < content_length {
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            match s.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => rest.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(e) => return Err(e.into()),
            }
        }
        buf = rest.split_off(content_length);

        hits.fetch_add(1, Ordering::SeqCst);
        let conn_hdr = if close { "close" } else { "keep-alive" };
        let (status, body_len, body): (&str, u64, Option<Vec<u8>>) = if method != "GET" && method != "HEAD" {
            ("405 Method Not Allowed", 0, Some(Vec::new()))
        } else if path == "/" {
            let b = format!("{name}\n").into_bytes();
            ("200 OK", b.len() as u64, Some(b))
        } else if path == "/peer" {
            let b = format!("{peer}\n").into_bytes();
            ("200 OK", b.len() as u64, Some(b))
        } else if let Some(n) = path.strip_prefix("/bytes/").and_then(|n| n.parse::<u64>().ok()) {
            ("200 OK", n, None)
        } else {
            let b = b"not found\n".to_vec();
            ("404 Not Found", b.len() as u64, Some(b))
        };
        let header = format!(
            "HTTP/1.1 {status}\r\nServer: lvs-tests\r\nX-Server: {name}\r\nContent-Type: {}\r\nContent-Length: {body_len}\r\nConnection: {conn_hdr}\r\n\r\n",
            if body.is_none() { "application/octet-stream" } else { "text/plain" }
        );
        s.write_all(header.as_bytes())?;
        if method != "HEAD" {
            match body {
                Some(b) => s.write_all(&b)?,
                None => {
                    let mut sent = 0u64;
                    let mut out = vec![0u8; 64 * 1024];
                    while sent < body_len {
                        if stop.load(Ordering::SeqCst) {
                            return Ok(());
                        }
                        let n = (body_len - sent).min(out.len() as u64) as usize;
                        for (j, byte) in out[..n].iter_mut().enumerate() {
                            *byte = pattern_byte(sent + j as u64);
                        }
                        s.write_all(&out[..n])?;
                        sent += n as u64;
                    }
                }
            }
        }
        s.flush()?;
        last_activity = Instant::now();
        if close {
            let _ = s.shutdown(std::net::Shutdown::Write);
            return Ok(());
        }
    }
}

/// UDP echo server bound in a namespace: answers each datagram with `<name>:<payload>`.
///
/// Replies leave from the address the datagram was sent to (IP_PKTINFO), as a real UDP
/// service does, so a `0.0.0.0` bind also answers correctly for a VIP on `lo` (DR/TUN).
pub struct UdpEchoServer(ServerThread);

impl std::ops::Deref for UdpEchoServer {
    type Target = ServerThread;
    fn deref(&self) -> &ServerThread {
        &self.0
    }
}

impl UdpEchoServer {
    /// Binds `bind` (e.g. `0.0.0.0:53`) inside `ns` and serves until dropped.
    pub fn start(ns: &Netns, bind: SocketAddr, name: &str) -> Result<UdpEchoServer> {
        let sock = ns
            .enter(|| UdpSocket::bind(bind))?
            .with_context(|| format!("UDP echo {name}: binding {bind} in {}", ns.name()))?;
        let one: libc::c_int = 1;
        // SAFETY: valid fd and option buffer.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_PKTINFO,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("setsockopt IP_PKTINFO");
        }
        sock.set_read_timeout(Some(POLL))?;
        let addr = sock.local_addr()?;
        let t = ServerThread::spawn("udp", name, addr, move |n, s, h| {
            let mut buf = vec![0u8; 65536];
            while !s.load(Ordering::SeqCst) {
                match recv_with_dst(&sock, &mut buf) {
                    Ok((len, peer, dst)) => {
                        h.fetch_add(1, Ordering::SeqCst);
                        let mut reply = format!("{n}:").into_bytes();
                        reply.extend_from_slice(&buf[..len]);
                        if let Err(e) = send_from(&sock, &reply, peer, dst) {
                            eprintln!("udp echo {n}: reply to {peer}: {e}");
                        }
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                    Err(e) => {
                        eprintln!("udp echo {n}: recv: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        })?;
        Ok(UdpEchoServer(t))
    }
}

const CMSG_BUF: usize = 64;

/// recvmsg returning (length, source, destination address of the datagram).
fn recv_with_dst(sock: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr, Option<libc::in_addr>)> {
    // SAFETY: all pointers reference live, correctly sized buffers for the duration of the call.
    unsafe {
        let mut src: libc::sockaddr_in = std::mem::zeroed();
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: buf.len() };
        let mut cbuf = [0u64; CMSG_BUF / 8];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = &mut src as *mut _ as *mut libc::c_void;
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = CMSG_BUF as _;
        let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, 0);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut dst = None;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IP && (*c).cmsg_type == libc::IP_PKTINFO {
                let pi = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::in_pktinfo);
                dst = Some(pi.ipi_addr);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        let peer = SocketAddr::from((
            std::net::Ipv4Addr::from(u32::from_be(src.sin_addr.s_addr)),
            u16::from_be(src.sin_port),
        ));
        Ok((n as usize, peer, dst))
    }
}

/// sendmsg from source address `src` (when known) to `peer`.
fn send_from(sock: &UdpSocket, data: &[u8], peer: SocketAddr, src: Option<libc::in_addr>) -> std::io::Result<()> {
    let Some(src) = src else {
        sock.send_to(data, peer)?;
        return Ok(());
    };
    let SocketAddr::V4(p4) = peer else {
        sock.send_to(data, peer)?;
        return Ok(());
    };
    // SAFETY: as in recv_with_dst.
    unsafe {
        let mut dst: libc::sockaddr_in = std::mem::zeroed();
        dst.sin_family = libc::AF_INET as libc::sa_family_t;
        dst.sin_port = p4.port().to_be();
        dst.sin_addr.s_addr = u32::from(*p4.ip()).to_be();
        let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
        let mut cbuf = [0u64; CMSG_BUF / 8];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = &mut dst as *mut _ as *mut libc::c_void;
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<libc::in_pktinfo>() as u32) as _;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::IPPROTO_IP;
        (*c).cmsg_type = libc::IP_PKTINFO;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::in_pktinfo>() as u32) as _;
        let pi = libc::in_pktinfo { ipi_ifindex: 0, ipi_spec_dst: src, ipi_addr: libc::in_addr { s_addr: 0 } };
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut libc::in_pktinfo, pi);
        if libc::sendmsg(sock.as_raw_fd(), &msg, 0) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A TCP echo server on `bind` in a namespace (every byte read is written back, one thread per
/// connection), until dropped.
pub struct TcpEchoServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpEchoServer {
    pub fn start(ns: &Netns, bind: SocketAddr) -> Result<TcpEchoServer> {
        let l = ns.enter(|| TcpListener::bind(bind))?.with_context(|| format!("binding echo server {bind}"))?;
        l.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        if c.set_nonblocking(false).is_err() || c.set_read_timeout(Some(Duration::from_secs(30))).is_err() {
                            continue;
                        }
                        std::thread::spawn(move || {
                            let mut buf = [0u8; 65536];
                            while let Ok(n) = c.read(&mut buf) {
                                if n == 0 || c.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(TcpEchoServer { stop, thread: Some(thread) })
    }
}

impl Drop for TcpEchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
