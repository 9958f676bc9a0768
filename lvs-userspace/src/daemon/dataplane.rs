//! Loading the XDP object, pinning its maps, and attaching it through pinned bpf_links.
//!
//! Layout under the pin directory (`/sys/fs/bpf/lvs` by default):
//! `v<MAP_ABI_VERSION>/maps/<MAP>` and `v<MAP_ABI_VERSION>/links/<interface>`. Pinned maps are
//! reused without any schema check, hence the version in the path. Pinned links keep the
//! program attached when lvsd exits or is killed; a restarted lvsd swaps its freshly loaded
//! program into the existing link (`bpf_link_update`), so forwarding never stops.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context};
use aya::{
    maps::ProgramArray,
    programs::{links::FdLink, links::PinnedLink, Xdp, XdpMode},
    Ebpf, EbpfLoader,
};
use lvs_common::{
    map_names, MAP_ABI_VERSION, XDP6_NEW_PROGRAM, XDP6_NEW_SLOT, XDP6_PROGRAM, XDP6_SEND_PROGRAM, XDP6_SEND_SLOT, XDP6_SLOT,
    XDP6_ICMP_PROGRAM, XDP6_ICMP_SLOT, XDP_FRAG_PROGRAM, XDP_FRAG_SLOT, XDP_ICMP_PROGRAM, XDP_ICMP_SLOT,
    XDP_MAIN_SLOT, XDP_SIP_PROGRAM, XDP_SIP_SLOT, XDP_TUN_PROGRAM, XDP_TUN_SLOT,
    XDP_PROGRAM,
};
use tracing::{info, warn};

use crate::config::XdpMode as ConfigXdpMode;

/// The compiled XDP object, built by build.rs (empty when built with `AYA_BUILD_SKIP=1`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lvs"));

/// Where this director's pins live.
#[derive(Clone, Debug)]
pub struct PinLayout {
    pub root: PathBuf,
}

impl PinLayout {
    pub fn new(pin_dir: &Path) -> Self {
        PinLayout { root: pin_dir.join(format!("v{MAP_ABI_VERSION}")) }
    }

    pub fn maps(&self) -> PathBuf {
        self.root.join("maps")
    }

    pub fn links(&self) -> PathBuf {
        self.root.join("links")
    }

    pub fn link(&self, iface: &str) -> PathBuf {
        self.links().join(iface)
    }

    /// Whether a previous lvsd left its maps here.
    pub fn has_state(&self) -> bool {
        self.maps().join(map_names::SERVICES).exists()
    }
}

/// Pin directories of other map-layout versions under `pin_dir` (`v<N>` with N not ours):
/// a dataplane pinned by an lvsd whose maps this one cannot read.
pub fn other_layouts(pin_dir: &Path) -> Vec<PathBuf> {
    let ours = format!("v{MAP_ABI_VERSION}");
    let Ok(entries) = fs::read_dir(pin_dir) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n != ours && n.strip_prefix('v').is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Takes over the interfaces of an incompatible layout (`lvsd --replace-incompatible-dataplane`):
/// its pinned links move into our layout, where `attach` swaps our program into them
/// (`bpf_link_update`: the interface is never without a program); its maps are unpinned, and
/// freed once its program is replaced. What it tracked is lost.
pub fn adopt_links(old: &Path, pins: &PinLayout) -> anyhow::Result<()> {
    if let Ok(entries) = fs::read_dir(old.join("links")) {
        for e in entries.flatten() {
            let to = pins.link(&e.file_name().to_string_lossy());
            fs::rename(e.path(), &to)
                .with_context(|| format!("moving pinned link {} to {}", e.path().display(), to.display()))?;
            warn!(interface = %e.file_name().to_string_lossy(), from = %old.display(), "taking over the link of an incompatible dataplane");
        }
    }
    fs::remove_dir_all(old).with_context(|| format!("removing {}", old.display()))?;
    Ok(())
}

/// How an interface ended up attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub interface: String,
    /// "native", "generic", or "kept" (program replaced in a link a previous lvsd pinned).
    pub mode: &'static str,
}

/// A loaded dataplane. Dropping it does not detach anything: links and maps are pinned.
pub struct Dataplane {
    pub ebpf: Ebpf,
    pub pins: PinLayout,
}

fn ensure_bpffs(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| {
        format!("cannot create {} (is bpffs mounted on /sys/fs/bpf?)", dir.display())
    })
}

impl Dataplane {
    /// Loads the object, reusing the maps pinned by a previous lvsd or creating and pinning
    /// new ones with `conn_table_size` entries in the connection table.
    pub fn load(pin_dir: &Path, conn_table_size: u32) -> anyhow::Result<Self> {
        if OBJECT.is_empty() {
            bail!("this lvsd was built without its XDP object (AYA_BUILD_SKIP); rebuild it");
        }
        let pins = PinLayout::new(pin_dir);
        ensure_bpffs(&pins.maps())?;
        ensure_bpffs(&pins.links())?;
        let reuse = pins.has_state();
        let map_paths: Vec<(&str, PathBuf)> =
            map_names::ALL.iter().map(|n| (*n, pins.maps().join(n))).collect();
        let mut loader = EbpfLoader::new();
        for (name, path) in &map_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let ebpf = load_object(&mut loader, conn_table_size, Programs::All)?;
        if reuse {
            info!(dir = %pins.root.display(), "reusing pinned maps from a previous lvsd");
        }
        Ok(Dataplane { ebpf, pins })
    }

    /// Loads the object with nothing pinned: the maps live as long as the returned `Ebpf` and
    /// vanish with the process (benchmarks, which must leave nothing behind on bpffs).
    /// With [`Programs::EntryOnly`], only `lvs_xdp` is loaded and its tail-call slots stay
    /// empty (see there).
    pub fn load_unpinned(conn_table_size: u32, programs: Programs) -> anyhow::Result<Ebpf> {
        if OBJECT.is_empty() {
            bail!("built without the XDP object (AYA_BUILD_SKIP); rebuild");
        }
        load_object(&mut EbpfLoader::new(), conn_table_size, programs)
    }

    fn program(&mut self) -> anyhow::Result<&mut Xdp> {
        Ok(self.ebpf.program_mut(XDP_PROGRAM).context("XDP program missing")?.try_into()?)
    }

    /// Attaches to `iface`, or takes over the link a previous lvsd pinned for it.
    pub fn attach(&mut self, iface: &str, mode: ConfigXdpMode) -> anyhow::Result<Attachment> {
        let pin = self.pins.link(iface);
        if pin.exists() {
            match self.take_over(&pin) {
                Ok(()) => {
                    info!(interface = iface, "XDP program replaced in the pinned link");
                    return Ok(Attachment { interface: iface.to_string(), mode: "kept" });
                }
                // The interface was recreated, or the link is otherwise dead: attach afresh.
                Err(e) => {
                    warn!(interface = iface, error = %format!("{e:#}"), "pinned link unusable, attaching anew");
                    let _ = fs::remove_file(&pin);
                }
            }
        }
        let tries: &[(XdpMode, &'static str)] = match mode {
            ConfigXdpMode::Auto => &[(XdpMode::Driver, "native"), (XdpMode::Skb, "generic")],
            ConfigXdpMode::Native => &[(XdpMode::Driver, "native")],
            ConfigXdpMode::Generic => &[(XdpMode::Skb, "generic")],
        };
        let mut last_err = None;
        for (m, name) in tries {
            let prog = self.program()?;
            match prog.attach(iface, *m) {
                Ok(id) => {
                    let link = prog.take_link(id)?;
                    let fd: FdLink = link
                        .try_into()
                        .context("kernel attached XDP without a bpf_link; cannot pin it")?;
                    fd.pin(&pin).with_context(|| format!("pinning link {}", pin.display()))?;
                    info!(interface = iface, mode = name, "XDP attached");
                    return Ok(Attachment { interface: iface.to_string(), mode: name });
                }
                Err(e) => {
                    if *name == "native" && tries.len() > 1 {
                        warn!(interface = iface, error = %e, "native XDP unavailable, trying generic");
                    }
                    last_err = Some(anyhow::Error::new(e));
                }
            }
        }
        Err(last_err.expect("at least one mode tried"))
            .with_context(|| format!("attaching XDP to interface {iface}"))
    }

    fn take_over(&mut self, pin: &Path) -> anyhow::Result<()> {
        let pinned = PinnedLink::from_pin(pin)?;
        let fd = pinned.unpin()?;
        let xdp_link = fd.try_into()?;
        let prog = self.program()?;
        let id = prog.attach_to_link(xdp_link)?;
        let link = prog.take_link(id)?;
        let fd: FdLink = link.try_into()?;
        fd.pin(pin)?;
        Ok(())
    }
}

/// Loads the object through `loader` (pinning already configured) with the connection table
/// sized at `conn_table_size`, and the XDP program through the verifier.
/// Which programs of the object to load.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Programs {
    /// The entry program and every program it tail-calls (lvsd).
    All,
    /// The entry program alone, its tail-call slots (IPv6, ICMP errors, later fragments, sip,
    /// GUE/GRE and mixed-family tunnels) left empty: a packet for one of them passes untouched.
    /// For benchmarks that load a fresh dataplane for every run of IPv4 TCP, where verifying
    /// the programs they never reach took half of each load (about 1.5 of 3 s).
    EntryOnly,
}

fn load_object(loader: &mut EbpfLoader, conn_table_size: u32, programs: Programs) -> anyhow::Result<Ebpf> {
    loader.map_max_entries(map_names::CONNS, conn_table_size);
    loader.map_max_entries(map_names::CONNS_OUT, conn_table_size);
    let mut ebpf = loader.load(OBJECT).context("loading the XDP object")?;
    let prog: &mut Xdp = ebpf
        .program_mut(XDP_PROGRAM)
        .context("XDP program missing from the object")?
        .try_into()?;
    prog.load().context("the verifier rejected the XDP program")?;
    if let Some(n) = prog.info().ok().and_then(|i| i.verified_instruction_count()) {
        info!(program = XDP_PROGRAM, verified_insns = n, "XDP program loaded");
    }
    // The IPv6 programs are reached by tail calls through XDP_PROGS (see `lvs_xdp`). Setting
    // a slot swaps it atomically: with pinned maps reused, packets go from the previous
    // lvsd's IPv6 programs to this one's without a gap. They go in from the last of the
    // chain to the first, so none tail-calls into an older one than itself.
    // The sip Call-ID search tail-calls the entry program itself (XDP_MAIN_SLOT), which goes
    // in first: its slot may then already hold a previous lvsd's, as the others may.
    let main_fd = prog.fd()?.try_clone()?;
    ProgramArray::try_from(ebpf.map_mut(map_names::XDP_PROGS).context("XDP_PROGS map missing")?)?
        .set(XDP_MAIN_SLOT, &main_fd, 0)
        .context("installing the XDP program in its own slot")?;
    if programs == Programs::EntryOnly {
        return Ok(ebpf);
    }
    for (name, slot) in [
        (XDP_TUN_PROGRAM, XDP_TUN_SLOT),
        (XDP_SIP_PROGRAM, XDP_SIP_SLOT),
        (XDP_FRAG_PROGRAM, XDP_FRAG_SLOT),
        (XDP_ICMP_PROGRAM, XDP_ICMP_SLOT), (XDP6_ICMP_PROGRAM, XDP6_ICMP_SLOT),
        (XDP6_SEND_PROGRAM, XDP6_SEND_SLOT), (XDP6_NEW_PROGRAM, XDP6_NEW_SLOT), (XDP6_PROGRAM, XDP6_SLOT)] {
        let p: &mut Xdp =
            ebpf.program_mut(name).with_context(|| format!("{name} missing from the object"))?.try_into()?;
        p.load().with_context(|| format!("the verifier rejected the XDP program {name}"))?;
        if let Some(n) = p.info().ok().and_then(|i| i.verified_instruction_count()) {
            info!(program = name, verified_insns = n, "XDP program loaded");
        }
        let fd = p.fd()?.try_clone()?;
        let mut progs =
            ProgramArray::try_from(ebpf.map_mut(map_names::XDP_PROGS).context("XDP_PROGS map missing")?)?;
        progs.set(slot, &fd, 0).with_context(|| format!("installing {name}"))?;
    }
    Ok(ebpf)
}

/// Detaches from every interface pinned under `pins` (SIGTERM without `--keep-dataplane`).
pub fn detach_all(pins: &PinLayout) {
    let Ok(entries) = fs::read_dir(pins.links()) else { return };
    for e in entries.flatten() {
        detach_link(&e.path(), &e.file_name().to_string_lossy());
    }
}

/// Detaches interfaces a previous lvsd attached that the config no longer names.
pub fn detach_except(pins: &PinLayout, keep: &[String]) {
    let Ok(entries) = fs::read_dir(pins.links()) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) {
            detach_link(&e.path(), &name);
        }
    }
}

fn detach_link(path: &Path, iface: &str) {
    let fd = PinnedLink::from_pin(path)
        .map_err(anyhow::Error::from)
        .and_then(|p| p.unpin().map_err(anyhow::Error::from));
    match fd {
        // Dropping the last reference to the link detaches the program.
        Ok(fd) => {
            drop(fd);
            info!(interface = iface, "XDP detached");
        }
        Err(err) => {
            warn!(link = %path.display(), error = %err, "cannot detach");
            let _ = fs::remove_file(path);
        }
    }
}

/// Removes the pinned maps and the directories (after [`detach_all`]).
pub fn unpin_all(pins: &PinLayout) {
    let _ = fs::remove_dir_all(&pins.root);
    if let Some(parent) = pins.root.parent() {
        // Only removes the pin directory if nothing else (another ABI version) lives there.
        let _ = fs::remove_dir(parent);
    }
}
