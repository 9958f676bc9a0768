//! ipvsadm-compatible CLI: ipvsadm 1.31's command line, messages, exit codes and listings,
//! talking to lvsd instead of the kernel.
//!
//! Layout, outermost first: [`run`] drives one invocation (and `-R`'s lines); [`command`]
//! turns words into a validated, default-filled command using the popt-like [`args`]
//! scanner and the legality tables in [`matrix`]; [`exec`] sends it to lvsd through a
//! [`Backend`] and maps errnos to libipvs's texts ([`errors`]); [`format`] and [`sort`]
//! produce the listings.

pub mod args;
pub mod command;
pub mod errors;
mod exec;
pub mod format;
pub mod matrix;
pub mod names;
pub mod sort;
mod usage;

#[cfg(test)]
mod conn_tests;
#[cfg(test)]
mod golden_tests;

use std::{
    ffi::OsString,
    io::{self, BufRead, Write},
    path::PathBuf,
};

use crate::control::{self, Client, Request, Response};
use command::{Format, Parsed};
use errors::Stop;
use names::{Names, SystemNames};

/// How a request to lvsd can fail short of an IPVS error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendError {
    /// No connection could be made: the equivalent of ipvsadm's failed `ipvs_init()`.
    Unreachable(String),
    /// The connection broke or the answer was unreadable.
    Broken(String),
}

/// Where requests go: lvsd, or a fake in tests.
pub trait Backend {
    fn call(&mut self, req: &Request) -> Result<Response, BackendError>;
}

/// lvsd over its control socket, connected on first use, so that everything ipvsadm can
/// reject locally is rejected (with its own messages and codes) even when lvsd is down.
pub struct Lvsd {
    path: PathBuf,
    client: Option<Client>,
}

impl Lvsd {
    pub fn new(path: PathBuf) -> Self {
        Lvsd { path, client: None }
    }
}

impl Backend for Lvsd {
    fn call(&mut self, req: &Request) -> Result<Response, BackendError> {
        if self.client.is_none() {
            let c = Client::connect(&self.path).map_err(|e| BackendError::Unreachable(format!("{e:#}")))?;
            self.client = Some(c);
        }
        let client = self.client.as_mut().expect("connected above");
        client.call(req).map_err(|e| BackendError::Broken(format!("{e:#}")))
    }
}

/// The standard streams of one invocation.
pub struct Io<'a> {
    pub stdin: &'a mut dyn BufRead,
    pub stdout: &'a mut dyn Write,
    pub stderr: &'a mut dyn Write,
}

/// Entry point of the `ipvsadm` binary: returns the exit status.
pub fn main_with_args(args: Vec<OsString>) -> i32 {
    let argv: Vec<String> = args.into_iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let stdin = io::stdin();
    let stdout = io::stdout();
    let stderr = io::stderr();
    let (mut i, mut o, mut e) = (stdin.lock(), stdout.lock(), stderr.lock());
    let mut io = Io { stdin: &mut i, stdout: &mut o, stderr: &mut e };
    let mut backend = Lvsd::new(control::socket_path());
    let code = run(&argv, &mut io, &mut backend, &SystemNames);
    let _ = io.stdout.flush();
    code
}

/// One ipvsadm invocation; `argv[0]` is the program name used in messages.
pub fn run(argv: &[String], io: &mut Io<'_>, backend: &mut dyn Backend, names: &dyn Names) -> i32 {
    let mut ctx = exec::Ctx { io, backend, names, program: program(argv) };
    let result = if argv.len() <= 1 {
        // Without arguments ipvsadm lists everything, with names.
        exec::list_all(&mut ctx, &Format::default()).map(|()| 0)
    } else {
        process(&mut ctx, argv, false)
    };
    match result {
        Ok(code) => code,
        Err(stop) => {
            let _ = ctx.io.stdout.write_all(stop.stdout.as_bytes());
            let _ = ctx.io.stderr.write_all(stop.stderr.as_bytes());
            stop.code
        }
    }
}

fn program(argv: &[String]) -> String {
    argv.first().cloned().unwrap_or_else(|| "ipvsadm".to_string())
}

/// ipvsadm's `process_options`: parse, validate, execute one command line.
fn process(ctx: &mut exec::Ctx<'_, '_>, argv: &[String], reading_stdin: bool) -> Result<i32, Stop> {
    match command::parse(argv, ctx.names)? {
        Parsed::PoptError(msg) => {
            let _ = ctx.io.stderr.write_all(msg.as_bytes());
            Ok(255)
        }
        Parsed::Run(r) if r.cmd == matrix::Cmd::Restore => {
            if reading_stdin {
                // A -R inside -R: ipvsadm refuses to recurse.
                return Err(Stop::try_help(&ctx.program));
            }
            restore(ctx)
        }
        Parsed::Run(r) => exec::execute(ctx, &r),
    }
}

/// `-R`: each stdin line is a command line. ipvsadm splits on blanks, tabs and CRs and drops
/// any word that is exactly `ipvsadm`; blank lines are skipped. A local validation error
/// ends everything (exit 2), an IPVS error is printed and the next line runs; the status is
/// that of the last line.
fn restore(ctx: &mut exec::Ctx<'_, '_>) -> Result<i32, Stop> {
    let mut result = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        match ctx.io.stdin.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        let words: Vec<String> = text
            .split([' ', '\t', '\r', '\n'])
            .filter(|w| !w.is_empty() && *w != "ipvsadm")
            .map(String::from)
            .collect();
        if words.is_empty() {
            continue;
        }
        let argv: Vec<String> = std::iter::once(ctx.program.clone()).chain(words).collect();
        result = process(ctx, &argv, true)?;
    }
    Ok(result)
}
