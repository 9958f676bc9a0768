//! What the packet fixture files share: the rig that loads the real dataplane and runs frames
//! through it with BPF_PROG_TEST_RUN, the fixture table and its check, and the private
//! director namespace each test thread moves into.
//!
//! Each test file includes this module with `mod fixture_kit;`, so each test binary compiles
//! its own copy and uses a part of it.
#![allow(dead_code)]

use std::path::PathBuf;

use aya::programs::{TestRun, TestRunOptions, Xdp};
use lvs_common::{counters::Counter, XDP_PROGRAM};
use lvs_userspace::{
    daemon::{
        dataplane::{self, Dataplane, PinLayout},
        state::VirtualServers,
        tables::Tables,
    },
    model::{DestSpec, ServiceKey, ServiceSpec},
    testkit::{
        frames::hex,
        netns::{self, ip_batch},
    },
};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_REDIRECT: u32 = 4;

pub const RS1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];
pub const RS2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x12];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const DIRECTOR_IN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

pub const PAYLOAD: &[u8] = b"GET / HTTP/1.1\r\n\r\n";

/// 2001:db8:0:`net`::`last`, the IPv6 side of the director namespace.
pub const fn v6(last: u8, net: u8) -> [u8; 16] {
    [0x20, 0x01, 0x0d, 0xb8, 0, net, 0, 0, 0, 0, 0, 0, 0, 0, 0, last]
}

/// Skips (outside CI) or fails (in CI) when the test cannot have the privileges it needs.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("packet fixture tests need root (CAP_BPF, CAP_NET_ADMIN) and must run in CI");
    }
    eprintln!("skipping: packet fixture tests need root");
    false
}

/// Which private namespace a fixture test runs in.
#[derive(Clone, Copy)]
pub enum Netns {
    /// Shaped like a director, IPv4 only (see `testkit::netns`).
    Director,
    /// The same with its IPv6 side: 2001:db8:2::1/64 on `cl`, 2001:db8:1::1/64 on `rs`,
    /// static neighbours for the client and rs1..rs2, forwarding on.
    Director6,
}

fn enter(ns: Netns) {
    netns::enter_private_director().expect("private director namespace");
    if let Netns::Director6 = ns {
        let cmds = [
            "addr add 2001:db8:2::1/64 dev cl nodad".to_string(),
            "addr add 2001:db8:1::1/64 dev rs nodad".to_string(),
            "neigh replace 2001:db8:2::2 lladdr 02:00:00:00:00:02 dev cl nud permanent".to_string(),
            "neigh replace 2001:db8:1::11 lladdr 02:00:00:00:00:11 dev rs nud permanent".to_string(),
            "neigh replace 2001:db8:1::12 lladdr 02:00:00:00:00:12 dev rs nud permanent".to_string(),
        ];
        ip_batch(&cmds).expect("IPv6 addresses and neighbours");
        std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1").expect("IPv6 forwarding");
    }
}

/// Runs `body` as root in a private namespace, on a thread of its own so the namespace switch
/// cannot leak into other tests (`bpf_fib_lookup` runs in the caller's namespace). Without
/// root it returns at once (see `require_root`); a panic in `body` fails the test.
pub fn in_netns(ns: Netns, body: impl FnOnce() + Send + 'static) {
    if !require_root() {
        return;
    }
    std::thread::spawn(move || {
        enter(ns);
        body()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

/// Removes the rig's pin directory when dropped, also when loading fails half-way (the maps
/// are pinned before the verifier sees the program).
struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        dataplane::unpin_all(&PinLayout::new(&self.0));
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The dataplane loaded into its own pin directory, its maps set up through the daemon's own
/// control-plane code (`VirtualServers`), as lvsd would.
pub struct Rig {
    pub dp: Dataplane,
    pub tables: Tables,
    pub vs: VirtualServers,
    /// Declared last: dropped after the map handles.
    _pins: PinDir,
}

impl Rig {
    pub fn new(tag: &str) -> Rig {
        // One pin directory per rig: the tests of a file run in parallel in one process.
        static RIGS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = RIGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pins = PinDir(PathBuf::from(format!("/sys/fs/bpf/lvs-fixture-{tag}-{}-{n}", std::process::id())));
        let dp = Dataplane::load(&pins.0, 4096).expect("load dataplane");
        let mut tables = Tables::open(&dp.pins.maps()).expect("open maps");
        tables.write_timeouts(&lvs_common::tcp_state::DEFAULT_TIMEOUTS).unwrap();
        let vs = VirtualServers::recover(&tables).unwrap();
        Rig { dp, tables, vs, _pins: pins }
    }

    /// Adds the rr service `key` with `dests`, in this order.
    pub fn add(&mut self, key: ServiceKey, dests: impl IntoIterator<Item = DestSpec>) -> ServiceKey {
        self.vs.add_service(&mut self.tables, ServiceSpec::new(key, "rr")).unwrap();
        for d in dests {
            self.vs.add_dest(&mut self.tables, &key, d).unwrap();
        }
        key
    }

    /// Runs the entry program once on `input`: its verdict and output frame.
    pub fn run(&mut self, input: &[u8]) -> (u32, Vec<u8>) {
        let prog: &mut Xdp = self.dp.ebpf.program_mut(XDP_PROGRAM).unwrap().try_into().unwrap();
        let mut out = vec![0u8; input.len() + 256];
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(input);
        opts.data_out = Some(&mut out);
        let r = prog.test_run(opts).expect("BPF_PROG_TEST_RUN");
        out.truncate(r.data_size_out as usize);
        (r.return_value, out)
    }

    pub fn counter(&self, c: Counter) -> u64 {
        self.tables.counters().unwrap().into_iter().find(|(k, _)| *k == c).unwrap().1
    }
}

/// One row of a fixture table.
pub struct Fixture {
    pub name: &'static str,
    pub input: Vec<u8>,
    pub verdict: u32,
    /// `None`: the frame must come out unchanged.
    pub output: Option<Vec<u8>>,
}

/// Collects every mismatching fixture with readable frames, so that one failing row does not
/// hide the others; `assert_none` fails the test with all of them.
#[derive(Default)]
pub struct Failures(Vec<String>);

impl Failures {
    /// Records a failure unless `got` (verdict, output) is `verdict` and `want`.
    pub fn check(&mut self, name: &str, input: &[u8], verdict: u32, want: &[u8], got: (u32, Vec<u8>)) {
        if got.0 != verdict || got.1 != want {
            self.0.push(format!(
                "{name}: verdict {} (want {verdict})\n  in:   {}\n  got:  {}\n  want: {}",
                got.0,
                hex(input),
                hex(&got.1),
                hex(want)
            ));
        }
    }

    pub fn assert_none(self) {
        assert!(self.0.is_empty(), "fixtures failed:\n{}", self.0.join("\n"));
    }
}

/// Runs every fixture of the table in order and fails with all mismatches.
pub fn check(rig: &mut Rig, fixtures: Vec<Fixture>) {
    let mut failures = Failures::default();
    for f in fixtures {
        let got = rig.run(&f.input);
        let want = f.output.as_deref().unwrap_or(&f.input);
        failures.check(f.name, &f.input, f.verdict, want, got);
    }
    failures.assert_none();
}
