//! The 65 invocations of 06-errors against a small in-memory stand-in for kernel IPVS:
//! exit code, stdout and stderr byte for byte, and the table afterwards (`-S -n`) as
//! recorded. Also the --nosort transcript of 05-listings/f-nosort.txt.

use std::collections::BTreeMap;

use super::{names::fake::FakeNames, run, Backend, BackendError, Io};
use crate::{
    control::{Errno, Info, Request, Response},
    model::{DestStatus, ServiceStatus},
};

/// Kernel IPVS semantics as far as these transcripts exercise them: errnos, and new dests
/// and services at the head of their lists.
#[derive(Default)]
struct FakeIpvs {
    services: Vec<ServiceStatus>,
    requests: Vec<Request>,
    daemons: Vec<crate::control::SyncDaemon>,
}

const SCHEDULERS: &[&str] =
    &["rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"];

impl FakeIpvs {
    fn reply(&mut self, req: &Request) -> Result<(), Errno> {
        let find = |s: &[ServiceStatus], k| s.iter().position(|x| x.spec.key == k);
        match req {
            Request::AddService(spec) => {
                if find(&self.services, spec.key).is_some() {
                    return Err(Errno::Exist);
                }
                if !SCHEDULERS.contains(&spec.scheduler.as_str()) || spec.pe.as_deref().is_some_and(|p| p != "sip") {
                    return Err(Errno::NoEnt);
                }
                self.services.insert(0, ServiceStatus { spec: spec.clone(), dests: vec![], stats: Default::default() });
            }
            Request::EditService(spec) => {
                let i = find(&self.services, spec.key).ok_or(Errno::Srch)?;
                if !SCHEDULERS.contains(&spec.scheduler.as_str()) || spec.pe.as_deref().is_some_and(|p| p != "sip") {
                    return Err(Errno::NoEnt);
                }
                self.services[i].spec = spec.clone();
            }
            Request::DelService(key) => {
                let i = find(&self.services, *key).ok_or(Errno::Srch)?;
                self.services.remove(i);
            }
            Request::AddDest { service, dest } | Request::EditDest { service, dest } => {
                let i = find(&self.services, *service).ok_or(Errno::Srch)?;
                if dest.weight < 0 || dest.l_threshold > dest.u_threshold {
                    return Err(Errno::Range);
                }
                let dests = &mut self.services[i].dests;
                let at = dests.iter().position(|d| d.spec.addr == dest.addr && d.spec.port == dest.port);
                match (req, at) {
                    (Request::AddDest { .. }, Some(_)) => return Err(Errno::Exist),
                    (Request::AddDest { .. }, None) => dests.insert(
                        0,
                        DestStatus { spec: dest.clone(), active_conns: 0, inact_conns: 0, persist_conns: 0, stats: Default::default() },
                    ),
                    (_, Some(j)) => dests[j].spec = dest.clone(),
                    (_, None) => return Err(Errno::NoEnt),
                }
            }
            Request::DelDest { service, addr, port } => {
                let i = find(&self.services, *service).ok_or(Errno::Srch)?;
                let dests = &mut self.services[i].dests;
                let j = dests.iter().position(|d| d.spec.addr == *addr && d.spec.port == *port).ok_or(Errno::NoEnt)?;
                dests.remove(j);
            }
            Request::Clear => self.services.clear(),
            Request::Zero(Some(key)) => {
                let i = find(&self.services, *key).ok_or(Errno::Srch)?;
                self.services[i].stats = Default::default();
                for d in &mut self.services[i].dests {
                    d.stats = Default::default();
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl Backend for FakeIpvs {
    fn call(&mut self, req: &Request) -> Result<Response, BackendError> {
        self.requests.push(req.clone());
        Ok(match req {
            Request::List => Response::Services(self.services.clone()),
            Request::GetService(k) => match self.services.iter().find(|s| s.spec.key == *k) {
                Some(s) => Response::Services(vec![s.clone()]),
                None => Response::Error { errno: Errno::Srch, detail: String::new() },
            },
            Request::GetInfo => Response::Info(Info { version_code: 0x010201, conn_table_size: 4096 }),
            Request::GetDaemons => Response::Daemons(self.daemons.clone()),
            other => match self.reply(other) {
                Ok(()) => Response::Ok,
                Err(errno) => Response::Error { errno, detail: String::new() },
            },
        })
    }
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn invoke(ipvs: &mut FakeIpvs, words: &[&str], stdin: &str) -> Outcome {
    let argv: Vec<String> = std::iter::once("ipvsadm").chain(words.iter().copied()).map(String::from).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut input = stdin.as_bytes();
    let mut io = Io { stdin: &mut input, stdout: &mut out, stderr: &mut err };
    let code = run(&argv, &mut io, ipvs, &FakeNames);
    Outcome { code, stdout: String::from_utf8(out).unwrap(), stderr: String::from_utf8(err).unwrap() }
}

fn sh(ipvs: &mut FakeIpvs, line: &str) -> Outcome {
    let words: Vec<&str> = line.split_whitespace().skip(1).collect();
    invoke(ipvs, &words, "")
}

const ERRORS_TSV: &str = include_str!("testdata/e-errors.tsv");
const ERRORS_TXT: &str = include_str!("testdata/e-errors.txt");

/// The TSV's `\n` escapes, and the final newline every non-empty stream had.
fn unescape(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        field.replace("\\n", "\n") + "\n"
    }
}

/// Per row of e-errors.txt: the table after the command; and the restore files by path.
fn transcript() -> (BTreeMap<u32, String>, BTreeMap<String, String>) {
    let mut states = BTreeMap::new();
    let mut files = BTreeMap::new();
    for section in ERRORS_TXT.split("### ").skip(1) {
        if let Some(rest) = section.strip_prefix("restore file ") {
            let (path, body) = rest.split_once(":\n").unwrap();
            files.insert(path.to_string(), body.to_string());
        } else if let Some(rest) = section.strip_prefix('[') {
            let n: u32 = rest[..rest.find(']').unwrap()].parse().unwrap();
            let marker = "--- state after (ipvsadm -S -n)\n";
            let state = &section[section.find(marker).unwrap() + marker.len()..];
            states.insert(n, state.trim_end_matches('\n').to_string() + "\n");
        }
    }
    (states, files)
}

fn baseline() -> FakeIpvs {
    let mut ipvs = FakeIpvs::default();
    let base = ERRORS_TXT.split("baseline:\n").nth(1).unwrap().split("\n\n").next().unwrap();
    for line in base.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(invoke(&mut ipvs, &words, "").code, 0, "{line}");
    }
    ipvs
}

/// Rows whose behaviour lvsd cannot provide yet; the CLI says so instead (checked below).
const NOT_YET: &[u32] = &[];

#[test]
fn every_error_row_matches() {
    let (states, files) = transcript();
    let mut checked = 0;
    for row in ERRORS_TSV.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        let (n, exit, command) = (cols[0].parse::<u32>().unwrap(), cols[1].parse::<i32>().unwrap(), cols[2]);
        let (want_out, want_err) = (unescape(cols[3]), unescape(cols[4]));
        let mut ipvs = baseline();

        let got = if let Some((cmd, path)) = command.split_once(" < ") {
            let stdin = if path == "/dev/null" { String::new() } else { files[path].clone() };
            let words: Vec<&str> = cmd.split_whitespace().skip(1).collect();
            invoke(&mut ipvs, &words, &stdin)
        } else if let Some((cmd, _)) = command.split_once(" > /tmp/h;") {
            // `ipvsadm -h > /tmp/h; head -3 /tmp/h`.
            let mut o = sh(&mut ipvs, cmd);
            o.stdout = o.stdout.lines().take(3).map(|l| format!("{l}\n")).collect();
            o
        } else {
            sh(&mut ipvs, command)
        };

        if NOT_YET.contains(&n) {
            assert_eq!(got.code, 255, "row {n}");
            assert!(got.stderr.contains("not supported by lvsd yet"), "row {n}: {}", got.stderr);
            continue;
        }
        assert_eq!(
            (got.code, got.stdout.as_str(), got.stderr.as_str()),
            (exit, want_out.as_str(), want_err.as_str()),
            "row {n}: {command}"
        );
        let after = sh(&mut ipvs, "ipvsadm -S -n");
        assert_eq!(after.stdout, states[&n], "row {n}: state after {command}");
        checked += 1;
    }
    assert_eq!(checked, 65 - NOT_YET.len());
}

#[test]
fn local_errors_need_no_daemon() {
    /// A backend that is never there.
    struct Down;
    impl Backend for Down {
        fn call(&mut self, _: &Request) -> Result<Response, BackendError> {
            Err(BackendError::Unreachable("connection refused".into()))
        }
    }
    let mut checked = 0;
    for row in ERRORS_TSV.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        let exit: i32 = cols[1].parse().unwrap();
        let want_err = unescape(cols[4]);
        let local = exit == 2 || want_err.starts_with("Try `");
        if !local || cols[2].contains(" < ") {
            continue;
        }
        let argv: Vec<String> = cols[2].split_whitespace().map(String::from).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut input: &[u8] = b"";
        let mut io = Io { stdin: &mut input, stdout: &mut out, stderr: &mut err };
        let code = run(&argv, &mut io, &mut Down, &FakeNames);
        assert_eq!((code, String::from_utf8(err).unwrap()), (exit, want_err), "{}", cols[2]);
        assert!(out.is_empty());
        checked += 1;
    }
    assert!(checked >= 35, "{checked}");
    // And a command that needs lvsd says why it cannot run.
    let argv: Vec<String> = ["ipvsadm", "-C"].map(String::from).to_vec();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut input: &[u8] = b"";
    let mut io = Io { stdin: &mut input, stdout: &mut out, stderr: &mut err };
    assert_eq!(run(&argv, &mut io, &mut Down, &FakeNames), 2);
    assert!(String::from_utf8(err).unwrap().starts_with("Can't initialize ipvs: connection refused\n"));
}

const NOSORT: &str = include_str!("testdata/f-nosort.txt");

/// Replays f-nosort.txt: every `$ ipvsadm ...` line in order against one fake kernel, each
/// output compared with the transcript.
#[test]
fn nosort_transcript() {
    let mut ipvs = FakeIpvs::default();
    let mut lines = NOSORT.lines().peekable();
    let mut compared = 0;
    while let Some(line) = lines.next() {
        let Some(cmd) = line.strip_prefix("$ ") else { continue };
        let mut want = String::new();
        let mut want_code = 0;
        for l in lines.by_ref() {
            if let Some(code) = l.strip_prefix("[exit ").and_then(|c| c.strip_suffix(']')) {
                want_code = code.parse().unwrap();
                break;
            }
            want.push_str(l);
            want.push('\n');
        }
        // `cat /proc/net/ip_vs`; and the whole-table --nosort, whose service order is the
        // kernel's hash-bucket order, which lvsd (not this fake) reproduces.
        if !cmd.starts_with("ipvsadm") || cmd == "ipvsadm -L -n --nosort" && want.matches("\nTCP").count() > 1 {
            continue;
        }
        let got = sh(&mut ipvs, cmd);
        assert_eq!((got.code, got.stdout.as_str()), (want_code, want.as_str()), "{cmd}");
        compared += 1;
    }
    assert!(compared > 20);
}

#[test]
fn requests_carry_resolved_specs() {
    use crate::model::{Forward, ServiceKey};
    let mut ipvs = baseline();
    ipvs.requests.clear();
    assert_eq!(sh(&mut ipvs, "ipvsadm -E -t 203.0.113.10:80").code, 0);
    assert_eq!(sh(&mut ipvs, "ipvsadm -e -t 203.0.113.10:80 -r 192.0.2.11:8080").code, 0);
    match &ipvs.requests[..] {
        [Request::EditService(s), Request::EditDest { dest, .. }] => {
            assert_eq!((s.scheduler.as_str(), s.flags, s.netmask), ("wlc", 0, 0xffff_ffff));
            assert_eq!((dest.forward, dest.weight, dest.port), (Forward::Route, 1, 80));
        }
        other => panic!("{other:?}"),
    }
    ipvs.requests.clear();
    assert_eq!(sh(&mut ipvs, "ipvsadm -A -f 9 -p").code, 0);
    match &ipvs.requests[..] {
        [Request::AddService(s)] => {
            assert_eq!(s.key, ServiceKey::Fwmark { mark: 9, ipv6: false });
            assert_eq!((s.timeout, s.scheduler.as_str()), (360, "wlc"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unsupported_features_say_so() {
    let mut ipvs = baseline();
    for cmd in ["ipvsadm -A --sctp-service 10.0.0.1:80"] {
        let o = sh(&mut ipvs, cmd);
        assert_eq!(o.code, 255, "{cmd}");
        assert!(o.stdout.is_empty(), "{cmd}");
        assert!(o.stderr.starts_with("ipvsadm: ") && o.stderr.ends_with(" is not supported by lvsd yet\n"), "{cmd}: {}", o.stderr);
    }
}

/// `--start-daemon` sends what the command line says, with ipvsadm's one default (eth0) and
/// zeros for what lvsd fills in; `--stop-daemon` names the role; `-L --daemon` prints one line
/// per daemon, nothing when none runs.
#[test]
fn sync_daemon_commands() {
    use crate::control::{SyncDaemon, SyncRole};
    let mut ipvs = FakeIpvs::default();
    assert_eq!(sh(&mut ipvs, "ipvsadm --start-daemon backup --syncid 9 --mcast-port 8849").code, 0);
    let want = SyncDaemon {
        role: SyncRole::Backup,
        mcast_ifn: "eth0".into(),
        syncid: 9,
        sync_maxlen: 0,
        mcast_group: None,
        mcast_port: 8849,
        mcast_ttl: 0,
    };
    assert_eq!(ipvs.requests.last(), Some(&Request::StartDaemon(want)));
    assert_eq!(sh(&mut ipvs, "ipvsadm --stop-daemon master").code, 0);
    assert_eq!(ipvs.requests.last(), Some(&Request::StopDaemon(SyncRole::Master)));
    let o = sh(&mut ipvs, "ipvsadm -L --daemon");
    assert_eq!((o.code, o.stdout.as_str(), o.stderr.as_str()), (0, "", ""));
    ipvs.daemons = vec![
        SyncDaemon {
            role: SyncRole::Master,
            mcast_ifn: "to-clients".into(),
            syncid: 0,
            sync_maxlen: 1472,
            mcast_group: Some("224.0.0.81".parse().unwrap()),
            mcast_port: 8848,
            mcast_ttl: 1,
        },
        SyncDaemon {
            role: SyncRole::Backup,
            mcast_ifn: "to-servers".into(),
            syncid: 9,
            sync_maxlen: 1200,
            mcast_group: Some("224.0.0.81".parse().unwrap()),
            mcast_port: 8849,
            mcast_ttl: 1,
        },
    ];
    let o = sh(&mut ipvs, "ipvsadm -L -n --daemon");
    assert_eq!(
        o.stdout,
        "master sync daemon (mcast=to-clients, syncid=0, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n\
         backup sync daemon (mcast=to-servers, syncid=9, maxlen=1200, group=224.0.0.81, port=8849, ttl=1)\n"
    );
    assert_eq!(o.code, 0);
}
