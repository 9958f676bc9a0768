//! `-L -c` and `--set`/`-L --timeout` against recorded kernel output. Every numeric connection
//! listing of 05-listings/d-listings.txt, 07-conncount/g-conncount.txt and the oracle's
//! `listings` and `timeouts` goldens (testdata/oracle-*.txt, kernel 6.1 and ipvsadm 1.31) is
//! read back into entries, served by a stand-in lvsd, and must come out of our ipvsadm byte for
//! byte; the non-numeric listing gets the numeric one's entries and must name them as
//! ipvsadm did. The `--set` transcripts replay in order.

use std::net::IpAddr;

use super::{names::fake::FakeNames, run, Backend, BackendError, Io};
use crate::{
    control::{ConnStatus, Errno, Request, Response, Timeouts},
    daemon::timeouts::{merge, DEFAULTS},
};

const D_LISTINGS: &str = include_str!("testdata/d-listings.txt");
const G_CONNCOUNT: &str = include_str!("testdata/g-conncount.txt");
const ORACLE_LISTINGS: &str = include_str!("testdata/oracle-listings.txt");
const ORACLE_TIMEOUTS: &str = include_str!("testdata/oracle-timeouts.txt");

/// lvsd as far as these commands need it: a fixed connection table, and the three timeouts
/// with the daemon's own `--set` rule.
struct Canned {
    conns: Vec<ConnStatus>,
    timeouts: Timeouts,
}

impl Backend for Canned {
    fn call(&mut self, req: &Request) -> Result<Response, BackendError> {
        Ok(match req {
            Request::ListConns => Response::Conns(self.conns.clone()),
            Request::GetTimeouts => Response::Timeouts(self.timeouts),
            Request::SetTimeouts(t) => match merge(self.timeouts, *t) {
                Ok(t) => {
                    self.timeouts = t;
                    Response::Ok
                }
                Err(e) => Response::Error { errno: e.errno, detail: e.detail },
            },
            _ => Response::Error { errno: Errno::NotImplemented, detail: "not in this test".into() },
        })
    }
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn invoke(backend: &mut Canned, command: &str) -> Outcome {
    let argv: Vec<String> = command.split_whitespace().map(String::from).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut input: &[u8] = b"";
    let mut io = Io { stdin: &mut input, stdout: &mut out, stderr: &mut err };
    let code = run(&argv, &mut io, backend, &FakeNames);
    Outcome { code, stdout: String::from_utf8(out).unwrap(), stderr: String::from_utf8(err).unwrap() }
}

/// `a.b.c.d:port` or `[v6]:port`, as `-n` prints them.
fn endpoint(text: &str) -> (IpAddr, u16) {
    let (host, port) = text.rsplit_once(':').unwrap();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host.parse().unwrap_or_else(|_| panic!("address {text:?}")), port.parse().unwrap())
}

fn protocol_number(name: &str) -> u8 {
    match name {
        "IP" => 0,
        "TCP" => 6,
        "UDP" => 17,
        other => panic!("protocol {other:?}"),
    }
}

/// `MM:SS` back to seconds.
fn expiry(text: &str) -> u32 {
    let (m, s) = text.split_once(':').unwrap();
    m.parse::<u32>().unwrap() * 60 + s.parse::<u32>().unwrap()
}

/// One line of a numeric `-L -c` listing back into the entry it shows.
fn entry(line: &str) -> ConnStatus {
    let w: Vec<&str> = line.split_whitespace().collect();
    let ((client, client_port), (vaddr, vport), (daddr, dport)) = (endpoint(w[3]), endpoint(w[4]), endpoint(w[5]));
    ConnStatus {
        protocol: protocol_number(w[0]),
        client,
        client_port,
        vaddr,
        vport,
        daddr,
        dport,
        state: w[2].to_string(),
        expires: expiry(w[1]),
        pe: (w.len() == 8).then(|| (w[6].to_string(), w[7].to_string())),
    }
}

/// Every `-L -c` listing after `$ <command>` lines in `file`, as (command, listing text).
/// A listing is its two title lines and the entry lines that follow them.
fn listings(file: &str, numeric: bool) -> Vec<(&str, String)> {
    let mut out = Vec::new();
    let mut lines = file.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(command) = line.strip_prefix("$ ") else { continue };
        if lines.peek() != Some(&"IPVS connection entries") || command.contains(" -n") != numeric {
            continue;
        }
        let mut text = String::new();
        for (i, l) in std::iter::from_fn(|| lines.next_if(|l| !l.starts_with('$') && !l.starts_with('['))).enumerate() {
            let is_entry = matches!(l.split_whitespace().next(), Some("TCP" | "UDP" | "IP"));
            if i >= 2 && !is_entry {
                break;
            }
            text.push_str(l);
            text.push('\n');
        }
        out.push((command, text));
    }
    out
}

fn entries(listing: &str) -> Vec<ConnStatus> {
    listing.lines().skip(2).map(entry).collect()
}

#[test]
fn numeric_connection_listings_match_the_kernel() {
    let mut checked = 0;
    for file in [D_LISTINGS, G_CONNCOUNT, ORACLE_LISTINGS, ORACLE_TIMEOUTS] {
        for (command, want) in listings(file, true) {
            let mut lvsd = Canned { conns: entries(&want), timeouts: DEFAULTS };
            let got = invoke(&mut lvsd, command);
            assert_eq!((got.code, got.stdout.as_str(), got.stderr.as_str()), (0, want.as_str(), ""), "{command}");
            checked += 1;
        }
    }
    // 4 + 45 + 2 + 4 numeric listings, among them `--exact`, `--connection --sort`,
    // `--persistent-conn` (with and without PE data), IPv6, templates and the empty table.
    assert_eq!(checked, 55);
}

#[test]
fn connection_names_as_ipvsadm_resolves_them() {
    // The numeric listing came a moment before the named one: same entries, same order.
    let numeric = &listings(ORACLE_LISTINGS, true)[0];
    assert_eq!(numeric.0, "ipvsadm -L -n -c");
    let [(command, want)] = &listings(ORACLE_LISTINGS, false)[..] else { panic!("one named listing") };
    let mut conns = entries(&numeric.1);
    for (c, line) in conns.iter_mut().zip(want.lines().skip(2)) {
        c.expires = expiry(line.split_whitespace().nth(1).unwrap());
    }
    let mut lvsd = Canned { conns, timeouts: DEFAULTS };
    let got = invoke(&mut lvsd, command);
    assert_eq!((got.code, got.stdout.as_str()), (0, want.as_str()));
    // What it exercised: TCP and UDP service names, IPv6 in brackets, no name for port 0, none
    // for the firewall-mark template's protocol (IP).
    for s in ["203.0.113.12:https ", "[2001:db8::10]:http-alt ", ":domain ", "192.0.2.11:sip\n", "0.0.0.7:0 "] {
        assert!(want.contains(s), "{s}");
    }
}

/// Replays the `--set` and `-L --timeout` commands of a transcript in order: stdout, stderr
/// and exit code of each, byte for byte.
fn replay_timeouts(file: &str) -> usize {
    let mut lvsd = Canned { conns: Vec::new(), timeouts: DEFAULTS };
    let mut lines = file.lines();
    let mut replayed = 0;
    while let Some(line) = lines.next() {
        let Some(command) = line.strip_prefix("$ ") else { continue };
        let (mut stdout, mut stderr, mut code, mut in_err) = (String::new(), String::new(), None, false);
        for l in lines.by_ref() {
            if let Some(c) = l.strip_prefix("[exit ").and_then(|c| c.strip_suffix(']')) {
                code = Some(c.parse::<i32>().unwrap());
                break;
            }
            if l == "--- stderr" {
                in_err = true;
                continue;
            }
            let stream = if in_err { &mut stderr } else { &mut stdout };
            stream.push_str(l);
            stream.push('\n');
        }
        if !(command.contains("--set") || command.contains("--timeout")) {
            continue;
        }
        let got = invoke(&mut lvsd, command);
        assert_eq!(
            (got.code, got.stdout.as_str(), got.stderr.as_str()),
            (code.unwrap(), stdout.as_str(), stderr.as_str()),
            "{command}"
        );
        replayed += 1;
    }
    replayed
}

#[test]
fn set_and_timeout_transcripts_replay() {
    assert_eq!(replay_timeouts(D_LISTINGS), 7);
    assert_eq!(replay_timeouts(ORACLE_TIMEOUTS), 13);
    assert_eq!(replay_timeouts(ORACLE_LISTINGS), 1);
}
