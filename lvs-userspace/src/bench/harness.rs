//! The harness object (`bench-harness`): restores the original frame on every iteration and
//! tail-calls the program under test (see `lvs_common::bench`), and the bare `XDP_PASS` floor.

use anyhow::{bail, Context};
use aya::{
    maps::{Array, MapData, ProgramArray},
    programs::{ProgramFd, TestRun, TestRunOptions, Xdp},
    Ebpf, EbpfLoader,
};
use lvs_common::bench::{
    map_names, BenchFrame, BENCH_FRAME_MAX, BENCH_VARY_BITS, INSERT_FAILED, INSERT_OK,
};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench-harness"));

/// How the harness turns iterations into different flows: iteration `i` XORs `i & mask` into
/// the port at `port_off` (low 16 bits) and the address octet at `addr_off` (next 8 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vary {
    pub mask: u32,
    pub port_off: u32,
    pub addr_off: u32,
}

/// One timed `BPF_PROG_TEST_RUN`.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// The kernel's figure: time inside the iteration loop divided by `repeat`, in whole
    /// nanoseconds (rounded down). Wall-clock time around the syscall is no use here: with
    /// `repeat > 1` the kernel installs the program in the XDP dispatcher before the loop and
    /// removes it after, each waiting for an RCU grace period (milliseconds, in scheduler
    /// ticks), and the kernel's clock also leaves out the time other tasks ran on the CPU.
    pub ns: u64,
    /// Return value of the last iteration.
    pub verdict: u32,
}

pub struct Harness {
    ebpf: Ebpf,
    frame: Array<MapData, BenchFrame>,
    target: ProgramArray<MapData>,
}

impl Harness {
    pub fn load() -> anyhow::Result<Self> {
        if OBJECT.is_empty() {
            bail!("built without the eBPF objects (AYA_BUILD_SKIP); rebuild");
        }
        // The insert floor's table is not this copy's (see `InsertFloor`): one entry.
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(map_names::INSERT_TABLE, 1)
            .load(OBJECT)
            .context("loading the harness object")?;
        for name in [map_names::HARNESS_PROGRAM, map_names::PASS_PROGRAM] {
            let prog: &mut Xdp =
                ebpf.program_mut(name).with_context(|| format!("{name} missing"))?.try_into()?;
            prog.load().with_context(|| format!("the verifier rejected {name}"))?;
        }
        let frame = Array::try_from(ebpf.take_map(map_names::BENCH_FRAME).context("BENCH_FRAME")?)?;
        let target = ProgramArray::try_from(
            ebpf.take_map(map_names::BENCH_TARGET).context("BENCH_TARGET")?,
        )?;
        Ok(Harness { ebpf, frame, target })
    }

    fn program(&self, name: &str) -> anyhow::Result<&Xdp> {
        Ok(self.ebpf.program(name).with_context(|| format!("{name} missing"))?.try_into()?)
    }

    /// The bare `XDP_PASS` program.
    pub fn pass(&self) -> anyhow::Result<&Xdp> {
        self.program(map_names::PASS_PROGRAM)
    }

    /// Makes `prog` the program the harness tail-calls.
    pub fn set_target(&mut self, prog: &ProgramFd) -> anyhow::Result<()> {
        self.target.set(0, prog, 0).context("setting the harness's target")
    }

    /// Makes the harness's target the bare `XDP_PASS` program (the harness floor).
    pub fn target_pass(&mut self) -> anyhow::Result<()> {
        let fd = self.pass()?.fd()?.try_clone()?;
        self.set_target(&fd)
    }

    /// Stores the original frame and the variation; the iteration count starts again at 0.
    pub fn set_frame(&mut self, frame: &[u8], vary: Vary) -> anyhow::Result<()> {
        if frame.is_empty() || frame.len() > BENCH_FRAME_MAX || !frame.len().is_multiple_of(8) {
            bail!(
                "frame of {} bytes (the harness copies 8-byte words, up to {BENCH_FRAME_MAX})",
                frame.len()
            );
        }
        if vary.mask >> BENCH_VARY_BITS != 0 {
            bail!("variation mask {:#x} wider than {BENCH_VARY_BITS} bits", vary.mask);
        }
        if vary.port_off as usize + 2 > frame.len() || vary.addr_off as usize + 2 > frame.len() {
            bail!("variation offsets {vary:?} outside the {}-byte frame", frame.len());
        }
        let mut v = BenchFrame {
            seq: 0,
            len: frame.len() as u32,
            mask: vary.mask,
            port_off: vary.port_off,
            addr_off: vary.addr_off,
            ..Default::default()
        };
        v.bytes[..frame.len()].copy_from_slice(frame);
        self.frame.set(0, v, 0).context("writing BENCH_FRAME")
    }

    /// Iterations the harness has run since the last `set_frame`.
    pub fn iterations(&self) -> anyhow::Result<u64> {
        Ok(self.frame.get(&0, 0)?.seq)
    }

    /// `repeat` iterations through the harness (frame as set by `set_frame`).
    pub fn run(&self, frame: &[u8], repeat: u32) -> anyhow::Result<Timing> {
        time(self.program(map_names::HARNESS_PROGRAM)?, frame, repeat)
    }
}

/// `repeat` iterations of `prog` on `frame` in one `BPF_PROG_TEST_RUN`.
pub fn time(prog: &Xdp, frame: &[u8], repeat: u32) -> anyhow::Result<Timing> {
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    opts.repeat = repeat;
    let r = prog.test_run(opts).context("BPF_PROG_TEST_RUN")?;
    Ok(Timing { ns: r.duration.as_nanos() as u64, verdict: r.return_value })
}

/// A copy of the harness object with `bench_insert` loaded and its table (`INSERT_TABLE`,
/// laid out and preallocated as `CONNS`) of `entries`: the target of the insert-floor cases,
/// a fresh one (empty table) for every run, as the new-connection cases get a fresh dataplane.
pub struct InsertFloor {
    ebpf: Ebpf,
    stats: Array<MapData, u64>,
}

impl InsertFloor {
    pub fn load(entries: u32) -> anyhow::Result<Self> {
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(map_names::INSERT_TABLE, entries)
            .load(OBJECT)
            .context("loading the harness object (insert floor)")?;
        let prog: &mut Xdp = ebpf
            .program_mut(map_names::INSERT_PROGRAM)
            .context("bench_insert missing")?
            .try_into()?;
        prog.load().context("the verifier rejected bench_insert")?;
        let stats = Array::try_from(ebpf.take_map(map_names::INSERT_STATS).context("INSERT_STATS")?)?;
        Ok(InsertFloor { ebpf, stats })
    }

    pub fn program_fd(&self) -> anyhow::Result<&ProgramFd> {
        let p: &Xdp = self
            .ebpf
            .program(map_names::INSERT_PROGRAM)
            .context("bench_insert missing")?
            .try_into()?;
        Ok(p.fd()?)
    }

    /// Inserts that succeeded and that failed so far.
    pub fn counts(&self) -> anyhow::Result<(u64, u64)> {
        Ok((self.stats.get(&INSERT_OK, 0)?, self.stats.get(&INSERT_FAILED, 0)?))
    }
}
