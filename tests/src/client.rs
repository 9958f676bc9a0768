//! Clients that run inside a namespace: curl, a small Rust HTTP client, UDP requests, and raw
//! socket constructors.

use anyhow::{anyhow, bail, Context, Result};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use crate::netns::Netns;

/// Default time limit of one HTTP request.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Status and body of an HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Response headers (names lower-cased); empty for curl responses.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// Body as (lossy) UTF-8 text, trimmed: `"rs1"` for `GET /` on rs1.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim().to_string()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
}

impl Netns {
    /// `curl URL` from this namespace (proxies disabled, `--max-time 10`, plus `extra` args).
    /// Fails when curl fails (connection refused, timeout, ...), with curl's message.
    pub fn curl(&self, url: &str, extra: &[&str]) -> Result<HttpResponse> {
        let max = HTTP_TIMEOUT.as_secs().to_string();
        let mut args: Vec<&str> = vec!["-sS", "--noproxy", "*", "--max-time", &max, "-o", "-", "-w", "\n%{http_code}"];
        args.extend_from_slice(extra);
        args.push(url);
        let out = self.output_timeout("curl", &args, HTTP_TIMEOUT + Duration::from_secs(5))?;
        if !out.success() {
            bail!("curl {url} from {}: {} ({})", self.role(), out.stderr_str().trim(), out.status);
        }
        let mut body = out.stdout;
        let nl = body.iter().rposition(|&b| b == b'\n').ok_or_else(|| anyhow!("curl output without status"))?;
        let code = String::from_utf8_lossy(&body[nl + 1..]).trim().to_string();
        let status = code.parse::<u16>().with_context(|| format!("curl status {code:?}"))?;
        body.truncate(nl);
        Ok(HttpResponse { status, headers: Vec::new(), body })
    }

    /// TCP connection created inside this namespace (usable from any thread afterwards).
    pub fn tcp_connect(&self, dst: SocketAddr, timeout: Duration) -> Result<TcpStream> {
        self.enter(|| TcpStream::connect_timeout(&dst, timeout))?
            .with_context(|| format!("connecting to {dst} from {}", self.role()))
    }

    /// UDP socket bound to `bind` inside this namespace (`0.0.0.0:0` for an ephemeral port).
    pub fn udp_socket(&self, bind: SocketAddr) -> Result<UdpSocket> {
        self.enter(|| UdpSocket::bind(bind))?.with_context(|| format!("binding UDP {bind} in {}", self.role()))
    }

    /// One `GET path` with `Connection: close` over a fresh TCP connection, by a Rust client
    /// (no process per request; fast for many requests).
    pub fn http_get(&self, dst: SocketAddr, path: &str) -> Result<HttpResponse> {
        let s = self.tcp_connect(dst, Duration::from_secs(5))?;
        http_get_on(s, &dst.to_string(), path).with_context(|| format!("GET http://{dst}{path} from {}", self.role()))
    }

    /// Sends `payload` to `dst` from an ephemeral port and returns the first reply.
    pub fn udp_request(&self, dst: SocketAddr, payload: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        let s = self.udp_socket("0.0.0.0:0".parse().expect("addr"))?;
        udp_request_on(&s, dst, payload, timeout).with_context(|| format!("UDP request to {dst} from {}", self.role()))
    }
}

/// Sends `payload` on `sock` to `dst` and waits up to `timeout` for a datagram from anywhere.
pub fn udp_request_on(sock: &UdpSocket, dst: SocketAddr, payload: &[u8], timeout: Duration) -> Result<Vec<u8>> {
    sock.send_to(payload, dst)?;
    sock.set_read_timeout(Some(timeout))?;
    let mut buf = vec![0u8; 65536];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) => Ok(buf[..n].to_vec()),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            bail!("no reply within {timeout:?}")
        }
        Err(e) => Err(e.into()),
    }
}

/// Sends `GET path` (Connection: close) on an established stream and reads the whole response.
pub fn http_get_on(mut s: TcpStream, host: &str, path: &str) -> Result<HttpResponse> {
    s.set_write_timeout(Some(HTTP_TIMEOUT))?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lvs-tests\r\nConnection: close\r\n\r\n")?;
    s.flush()?;
    let deadline = Instant::now() + HTTP_TIMEOUT;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if Instant::now() > deadline {
            bail!("response not complete within {HTTP_TIMEOUT:?} ({} bytes so far)", buf.len());
        }
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no complete response head in {} bytes", buf.len()))?;
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = buf[head_end + 4..].to_vec();
    let resp = HttpResponse { status, headers, body };
    if let Some(cl) = resp.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if cl != resp.body.len() {
            bail!("short body: content-length {cl}, got {}", resp.body.len());
        }
    }
    Ok(resp)
}

/// One `GET path` on a keep-alive connection (HTTP/1.1, the connection stays open); returns
/// the body, trimmed, or the I/O error that ended the exchange (`UnexpectedEof` when the peer
/// closed it).
pub fn keepalive_get(s: &mut std::io::BufReader<TcpStream>, path: &str) -> std::io::Result<String> {
    use std::io::BufRead;
    write!(s.get_mut(), "GET {path} HTTP/1.1\r\nHost: vip\r\n\r\n")?;
    s.get_mut().flush()?;
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if s.read_line(&mut line)? == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().map_err(|_| std::io::Error::new(ErrorKind::InvalidData, line.clone()))?;
        }
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok(String::from_utf8_lossy(&body).trim().to_string())
}

/// Sends `n` pattern bytes (`servers::expected_bytes`) to `dst` from `ns` and checks that exactly
/// the same bytes come back from the echo server behind it (written and read concurrently so
/// neither side's buffers fill up).
pub fn echo_exact(ns: &Netns, dst: SocketAddr, n: u64) {
    let s = ns.tcp_connect(dst, Duration::from_secs(10)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        w.write_all(&crate::servers::expected_bytes(n)).unwrap();
        w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut got = Vec::with_capacity(n as usize);
    let mut r = s;
    r.read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    assert_eq!(got.len() as u64, n, "echoed byte count");
    assert!(got == crate::servers::expected_bytes(n), "echoed bytes differ from those sent");
}

/// One UDP datagram to `dst` on a socket *connected* to it, so only an answer from that
/// address is received; checks the `name:payload` echo byte for byte and returns the name.
/// The first datagram may find a real server's neighbour unresolved (dropped and resolved by
/// lvsd); one retry covers it, as a client's own retransmission would.
pub fn udp_exact(ns: &Netns, dst: SocketAddr, payload: &[u8]) -> String {
    let any: SocketAddr = if dst.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse().unwrap();
    let sock = ns.udp_socket(any).unwrap();
    sock.connect(dst).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 4096];
    for _ in 0..2 {
        sock.send(payload).unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let reply = &buf[..n];
            let colon = reply.iter().position(|&b| b == b':').expect("name:payload");
            assert_eq!(&reply[colon + 1..], payload, "UDP payload echoed byte for byte");
            return String::from_utf8(reply[..colon].to_vec()).unwrap();
        }
    }
    panic!("no UDP answer from {dst}");
}
