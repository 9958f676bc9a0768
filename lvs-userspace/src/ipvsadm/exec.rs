//! Carrying out a resolved command against lvsd, with ipvsadm's output and exit codes.


use super::{
    command::{Format, ListWhat, Proto, Resolved, Svc},
    errors::{ipvs_strerror, Call, Stop},
    format,
    matrix::Cmd,
    names::Names,
    sort::sort_all,
    Backend, BackendError, Io,
};
use crate::{
    control::{ConnStatus, Errno, Info, Request, Response, SyncDaemon, SyncRole, Timeouts},
    model::{DestSpec, Protocol, ServiceKey, ServiceSpec, ServiceStatus},
};

pub struct Ctx<'a, 'b> {
    pub io: &'a mut Io<'b>,
    pub backend: &'a mut dyn Backend,
    pub names: &'a dyn Names,
    pub program: String,
}

/// Exit status of a failed set command (ipvsadm returns -1 from main).
const SET_FAILED: i32 = 255;
/// Exit status of a failed listing (`exit(1)` in ipvsadm's list functions).
const LIST_FAILED: i32 = 1;

/// ipvsadm exits 2 when it cannot reach IPVS at all (`ipvs_init` failing after modprobe);
/// lvsd stands in for the kernel module here, so an unreachable lvsd is that case.
fn init_failure(msg: &str) -> Stop {
    Stop {
        code: 2,
        stdout: String::new(),
        stderr: format!("Can't initialize ipvs: {msg}\nAre you sure that lvsd is running?\n"),
    }
}

/// What lvsd answered, once transport problems are set aside.
enum Answer {
    Ok,
    Errno(Errno),
    /// lvsd does not implement what was asked (yet); the text says what.
    NotImplemented(String),
    Services(Vec<ServiceStatus>),
    Info(Info),
    Timeouts(Timeouts),
    Conns(Vec<ConnStatus>),
    Daemons(Vec<SyncDaemon>),
}

impl Ctx<'_, '_> {
    /// Sends a request; transport failures end the program (`fail_code` for a broken link).
    fn ask(&mut self, req: &Request, fail_code: i32) -> Result<Answer, Stop> {
        match self.backend.call(req) {
            Ok(Response::Ok) => Ok(Answer::Ok),
            Ok(Response::Error { errno: Errno::NotImplemented, detail }) => Ok(Answer::NotImplemented(detail)),
            Ok(Response::Error { errno, .. }) => Ok(Answer::Errno(errno)),
            Ok(Response::Services(s)) => Ok(Answer::Services(s)),
            Ok(Response::Info(i)) => Ok(Answer::Info(i)),
            Ok(Response::Timeouts(t)) => Ok(Answer::Timeouts(t)),
            Ok(Response::Conns(c)) => Ok(Answer::Conns(c)),
            Ok(Response::Daemons(d)) => Ok(Answer::Daemons(d)),
            Ok(other) => Err(broken(fail_code, &format!("unexpected answer from lvsd: {other:?}"))),
            Err(BackendError::Unreachable(m)) => Err(init_failure(&m)),
            Err(BackendError::Broken(m)) => Err(broken(fail_code, &m)),
        }
    }

    fn out(&mut self, text: &str) {
        let _ = self.io.stdout.write_all(text.as_bytes());
    }

    fn err(&mut self, text: &str) {
        let _ = self.io.stderr.write_all(text.as_bytes());
    }

    /// A set command: print libipvs's text for an error and report -1.
    fn set(&mut self, call: Call, req: Request) -> Result<i32, Stop> {
        match self.ask(&req, SET_FAILED)? {
            Answer::Errno(e) => {
                self.err(&format!("{}\n", ipvs_strerror(call, e)));
                Ok(SET_FAILED)
            }
            Answer::NotImplemented(what) => {
                self.err(&format!("{}: {what}\n", self.program));
                Ok(SET_FAILED)
            }
            _ => Ok(0),
        }
    }

    /// What lvsd cannot do yet: say so plainly instead of imitating IPVS output.
    fn unsupported(&mut self, what: &str) -> i32 {
        self.unsupported_with(what, "")
    }

    /// The same with a note after "yet".
    fn unsupported_with(&mut self, what: &str, note: &str) -> i32 {
        self.err(&format!("{}: {what} is not supported by lvsd yet{note}\n", self.program));
        SET_FAILED
    }
}

fn broken(code: i32, msg: &str) -> Stop {
    Stop { code, stdout: String::new(), stderr: format!("lvsd: {msg}\n") }
}

/// The model's key for the service on the command line, or what is missing from the model.
fn service_key(svc: &Svc) -> Result<ServiceKey, &'static str> {
    if svc.fwmark != 0 {
        return Ok(ServiceKey::Fwmark { mark: svc.fwmark, ipv6: svc.v6 == Some(true) });
    }
    let protocol = match svc.proto {
        Some(Proto::Tcp) => Protocol::Tcp,
        Some(Proto::Udp) => Protocol::Udp,
        Some(Proto::Sctp) => return Err("SCTP virtual services"),
        None => return Err("a command without a virtual service"),
    };
    let addr = svc.addr.ok_or("a command without a virtual service")?;
    Ok(ServiceKey::Addr { protocol, addr, port: svc.port })
}

pub fn execute(ctx: &mut Ctx<'_, '_>, r: &Resolved) -> Result<i32, Stop> {
    match r.cmd {
        Cmd::List => list(ctx, r),
        Cmd::Save => {
            save(ctx, &r.format)?;
            Ok(0)
        }
        Cmd::Flush => ctx.set(Call::Flush, Request::Clear),
        Cmd::Add | Cmd::Edit | Cmd::Del | Cmd::AddDest | Cmd::EditDest | Cmd::DelDest => {
            let key = match service_key(&r.svc) {
                Ok(k) => k,
                Err(what) => return Ok(ctx.unsupported(what)),
            };
            service_command(ctx, r, key)
        }
        Cmd::Zero => {
            // libipvs sends no service (zero everything) when none was given.
            let key = if r.svc.fwmark == 0 && r.svc.addr.is_none() && r.svc.proto.is_none() {
                None
            } else {
                match service_key(&r.svc) {
                    Ok(k) => Some(k),
                    Err(what) => return Ok(ctx.unsupported(what)),
                }
            };
            ctx.set(Call::ZeroService, Request::Zero(key))
        }
        Cmd::Timeout => {
            let [tcp, tcp_fin, udp] = r.timeouts;
            ctx.set(Call::SetTimeout, Request::SetTimeouts(Timeouts { tcp, tcp_fin, udp }))
        }
        Cmd::StartDaemon => {
            let d = &r.daemon;
            let req = Request::StartDaemon(SyncDaemon {
                role: role(d.master),
                mcast_ifn: d.mcast_ifn.clone(),
                // The parser has checked 0..255.
                syncid: d.syncid as u8,
                sync_maxlen: d.sync_maxlen,
                mcast_group: d.mcast_group,
                mcast_port: d.mcast_port,
                mcast_ttl: d.mcast_ttl,
            });
            ctx.set(Call::StartDaemon, req)
        }
        Cmd::StopDaemon => ctx.set(Call::StopDaemon, Request::StopDaemon(role(r.daemon.master))),
        // Handled by the caller (it needs the line reader).
        Cmd::Restore => unreachable!("restore is dispatched before execute"),
    }
}

fn service_command(ctx: &mut Ctx<'_, '_>, r: &Resolved, key: ServiceKey) -> Result<i32, Stop> {
    let spec = || ServiceSpec {
        key,
        scheduler: r.svc.sched.clone(),
        flags: r.svc.flags,
        timeout: r.svc.timeout,
        netmask: r.svc.netmask,
        pe: (!r.svc.pe.is_empty()).then(|| r.svc.pe.clone()),
    };
    let dest = || {
        let d = &r.dest;
        let addr = d.addr.expect("the matrix requires -r for server commands");
        DestSpec {
            addr,
            port: d.port,
            forward: d.forward,
            weight: d.weight,
            u_threshold: d.u_threshold,
            l_threshold: d.l_threshold,
        }
    };
    match r.cmd {
        Cmd::Add | Cmd::Edit => {
            let call = if r.cmd == Cmd::Add { Call::AddService } else { Call::UpdateService };
            let req = if r.cmd == Cmd::Add { Request::AddService(spec()) } else { Request::EditService(spec()) };
            ctx.set(call, req)
        }
        Cmd::Del => ctx.set(Call::DelService, Request::DelService(key)),
        Cmd::AddDest | Cmd::EditDest => {
            if r.dest.tun_type != 0 {
                // The dataplane encapsulates in IP-in-IP only; the options were checked above
                // exactly as ipvsadm checks them.
                let what = format!("--tun-type {}", crate::ipvsadm::matrix::TUN_NAMES[r.dest.tun_type]);
                return Ok(ctx.unsupported_with(&what, " (only ipip)"));
            }
            if r.cmd == Cmd::AddDest {
                ctx.set(Call::AddDest, Request::AddDest { service: key, dest: dest() })
            } else {
                ctx.set(Call::UpdateDest, Request::EditDest { service: key, dest: dest() })
            }
        }
        Cmd::DelDest => {
            let d = dest();
            ctx.set(Call::DelDest, Request::DelDest { service: key, addr: d.addr, port: d.port })
        }
        _ => unreachable!("not a service command"),
    }
}

fn list(ctx: &mut Ctx<'_, '_>, r: &Resolved) -> Result<i32, Stop> {
    match r.list {
        ListWhat::Connections => list_conns(ctx, &r.format)?,
        ListWhat::Timeout => list_timeouts(ctx)?,
        ListWhat::Daemon => list_daemons(ctx)?,
        ListWhat::Service => {
            let key = match service_key(&r.svc) {
                Ok(k) => k,
                Err(what) => return Ok(ctx.unsupported(what)),
            };
            list_service(ctx, key, &r.format)?;
        }
        ListWhat::All => list_all(ctx, &r.format)?,
    }
    Ok(0)
}

/// `-L -t VIP:port`: no version header; a missing service exits 1.
fn list_service(ctx: &mut Ctx<'_, '_>, key: ServiceKey, f: &Format) -> Result<(), Stop> {
    let mut services = match ctx.ask(&Request::GetService(key), LIST_FAILED)? {
        Answer::Services(s) => s,
        Answer::Errno(e) => return Err(list_error(Call::GetService, e)),
        _ => return Err(broken(LIST_FAILED, "unexpected answer to GetService")),
    };
    let Some(mut svc) = services.pop() else {
        return Err(list_error(Call::GetService, Errno::Srch));
    };
    if !f.nosort {
        sort_all(std::slice::from_mut(&mut svc));
    }
    let text = format::title(f) + &format::service_entry(&svc, f, ctx.names);
    ctx.out(&text);
    Ok(())
}

fn list_error(call: Call, e: Errno) -> Stop {
    Stop { code: LIST_FAILED, stdout: String::new(), stderr: format!("{}\n", ipvs_strerror(call, e)) }
}

fn get_services(ctx: &mut Ctx<'_, '_>) -> Result<Vec<ServiceStatus>, Stop> {
    match ctx.ask(&Request::List, LIST_FAILED)? {
        Answer::Services(s) => Ok(s),
        Answer::Errno(e) => Err(list_error(Call::GetServices, e)),
        _ => Err(broken(LIST_FAILED, "unexpected answer to List")),
    }
}

/// `-L` of everything: the version header, then the table.
pub fn list_all(ctx: &mut Ctx<'_, '_>, f: &Format) -> Result<(), Stop> {
    let info = match ctx.ask(&Request::GetInfo, LIST_FAILED)? {
        Answer::Info(i) => i,
        Answer::Errno(e) => return Err(init_failure(ipvs_strerror(Call::GetServices, e))),
        _ => return Err(broken(LIST_FAILED, "unexpected answer to GetInfo")),
    };
    // The header goes out before the services are fetched, as in ipvsadm.
    ctx.out(&format::header(&info));
    let mut services = get_services(ctx)?;
    if !f.nosort {
        sort_all(&mut services);
    }
    let mut text = format::title(f);
    for s in &services {
        text.push_str(&format::service_entry(s, f, ctx.names));
    }
    ctx.out(&text);
    Ok(())
}

/// `-L --timeout`. ipvsadm exits 1 without a word when the kernel does not answer.
fn list_timeouts(ctx: &mut Ctx<'_, '_>) -> Result<(), Stop> {
    match ctx.ask(&Request::GetTimeouts, LIST_FAILED)? {
        Answer::Timeouts(t) => {
            ctx.out(&format::timeouts(&t));
            Ok(())
        }
        _ => Err(Stop { code: LIST_FAILED, stdout: String::new(), stderr: String::new() }),
    }
}

/// `-L -c`: the entries in lvsd's table order, not sorted (ipvsadm prints the kernel's
/// `/proc/net/ip_vs_conn` as it comes). ipvsadm exits 1 when it cannot read that file.
fn list_conns(ctx: &mut Ctx<'_, '_>, f: &Format) -> Result<(), Stop> {
    let conns = match ctx.ask(&Request::ListConns, LIST_FAILED)? {
        Answer::Conns(c) => c,
        Answer::Errno(e) => {
            let why = std::io::Error::from_raw_os_error(e.raw());
            return Err(broken(LIST_FAILED, &format!("cannot list connections: {why}")));
        }
        Answer::NotImplemented(what) => return Err(broken(LIST_FAILED, &what)),
        _ => return Err(broken(LIST_FAILED, "unexpected answer to ListConns")),
    };
    let mut text = format::conn_title(f);
    for c in &conns {
        text.push_str(&format::conn_entry(c, f, ctx.names));
    }
    ctx.out(&text);
    Ok(())
}

fn role(master: bool) -> SyncRole {
    if master {
        SyncRole::Master
    } else {
        SyncRole::Backup
    }
}

/// `-L --daemon`: one line per running daemon, nothing when none runs. Like `-L --timeout`,
/// ipvsadm exits 1 without a word when the daemons cannot be read.
fn list_daemons(ctx: &mut Ctx<'_, '_>) -> Result<(), Stop> {
    match ctx.ask(&Request::GetDaemons, LIST_FAILED)? {
        Answer::Daemons(ds) => {
            let text: String = ds.iter().map(format::daemon).collect();
            ctx.out(&text);
            Ok(())
        }
        _ => Err(Stop { code: LIST_FAILED, stdout: String::new(), stderr: String::new() }),
    }
}

/// `-S`: always sorted, no header, no title.
fn save(ctx: &mut Ctx<'_, '_>, f: &Format) -> Result<(), Stop> {
    let mut services = get_services(ctx)?;
    sort_all(&mut services);
    let mut text = String::new();
    for s in &services {
        text.push_str(&format::service_entry(s, f, ctx.names));
    }
    ctx.out(&text);
    Ok(())
}
