//! How ipvsadm stops, and the text it prints for the errors IPVS reports.

use crate::control::Errno;

/// An early end of the whole program, as ipvsadm's `fail()`, `tryhelp_exit()` and
/// `usage_exit()` call `exit()` even in the middle of `-R`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stop {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Stop {
    /// `fail(2, ...)`: the message plus a newline on stderr.
    pub fn fail(msg: impl Into<String>) -> Self {
        let mut stderr = msg.into();
        stderr.push('\n');
        Stop { code: 2, stdout: String::new(), stderr }
    }

    /// `tryhelp_exit(argv[0], -1)`.
    pub fn try_help(program: &str) -> Self {
        Stop {
            code: 255,
            stdout: String::new(),
            stderr: format!("Try `{program} -h' or '{program} --help' for more information.\n"),
        }
    }

    /// A successful early exit with text on stdout (`-h`, `-v`).
    pub fn print(stdout: String) -> Self {
        Stop { code: 0, stdout, stderr: String::new() }
    }
}

/// The libipvs call an error belongs to: `ipvs_strerror` picks the message by (call, errno).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    AddService,
    UpdateService,
    DelService,
    ZeroService,
    AddDest,
    UpdateDest,
    DelDest,
    StartDaemon,
    StopDaemon,
    GetServices,
    GetService,
    Flush,
    SetTimeout,
}

/// `ipvs_strerror(errno)` after `call`.
pub fn ipvs_strerror(call: Call, errno: Errno) -> &'static str {
    use Call::*;
    use Errno::*;
    match (call, errno) {
        (AddService, Exist) => "Service already exists",
        (AddService | UpdateService, NoEnt) => "Scheduler or persistence engine not found",
        (UpdateService | DelService | ZeroService, Srch) => "No such service",
        (AddDest | UpdateDest | DelDest, Srch) => "Service not defined",
        (AddDest, Exist) => "Destination already exists",
        (UpdateDest | DelDest, NoEnt) => "No such destination",
        (StartDaemon, Exist) => "Daemon has already run",
        (StopDaemon, Srch) => "No daemon is running",
        (GetServices | GetService, Srch) => "No such service",
        (_, Perm) => "Permission denied (you must be root)",
        (_, Inval) => "Invalid operation.  Possibly wrong module version, address not unicast, ...",
        (_, NoMem) => "Memory allocation problem",
        (_, OpNotSupp) => "Operation not supported with IPv6",
        (_, AfNoSupport) => "Operation not supported with specified address family",
        (_, e) => glibc_strerror(e),
    }
}

/// glibc's `strerror` for the errnos libipvs has no text of its own for.
fn glibc_strerror(e: Errno) -> &'static str {
    match e {
        Errno::Perm => "Operation not permitted",
        Errno::NoEnt => "No such file or directory",
        Errno::Srch => "No such process",
        Errno::NoMem => "Cannot allocate memory",
        Errno::Exist => "File exists",
        Errno::Inval => "Invalid argument",
        Errno::Range => "Numerical result out of range",
        Errno::OpNotSupp => "Operation not supported",
        Errno::AfNoSupport => "Address family not supported by protocol",
        Errno::NoDev => "No such device",
        Errno::NotImplemented => "Operation not supported",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_follow_the_call() {
        assert_eq!(ipvs_strerror(Call::AddService, Errno::Exist), "Service already exists");
        assert_eq!(ipvs_strerror(Call::AddDest, Errno::Exist), "Destination already exists");
        assert_eq!(ipvs_strerror(Call::DelService, Errno::Srch), "No such service");
        assert_eq!(ipvs_strerror(Call::AddDest, Errno::Srch), "Service not defined");
        assert_eq!(ipvs_strerror(Call::DelDest, Errno::NoEnt), "No such destination");
        assert_eq!(ipvs_strerror(Call::AddDest, Errno::Range), "Numerical result out of range");
        assert_eq!(ipvs_strerror(Call::AddDest, Errno::NoEnt), "No such file or directory");
        assert_eq!(ipvs_strerror(Call::Flush, Errno::Exist), "File exists");
    }
}
