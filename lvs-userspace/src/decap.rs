//! `lvsd decap`: the tunnel decapsulation program on a real server (TC ingress): IP-in-IP of
//! either family, GRE and GUE.
//!
//! For TUN (`-i`) real servers on hosts without the ipip module. Per interface, under
//! `PIN_DIR/<interface>/`: `link` (the TCX attachment, pinned so it outlives the command),
//! `addrs` and `addrs6` (the outer destination addresses decapsulated, IPv4 and IPv6),
//! `gueports` (the UDP ports whose packets are GUE) and `stats` (counters). Running it
//! again on an attached interface only replaces the addresses; `--detach` removes it all.

use std::{
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context};
use aya::{
    maps::{HashMap, Map, MapData, PerCpuArray},
    programs::{links::FdLink, SchedClassifier, TcAttachType},
    EbpfLoader,
};
use lvs_common::{fwd::decap_counter, DECAP_PROGRAM};

/// The compiled decapsulation object (empty when built with `AYA_BUILD_SKIP=1`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/decap"));

/// Default pin directory of `lvsd decap`.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/lvs-decap";

/// What `lvsd decap` was asked to do.
pub struct DecapOptions {
    pub interface: String,
    pub pin_dir: PathBuf,
    /// Extra outer addresses to accept besides the interface's own addresses.
    pub addresses: Vec<IpAddr>,
    /// UDP destination ports whose packets are GUE.
    pub gue_ports: Vec<u16>,
    pub detach: bool,
    pub counters: bool,
}

fn iface_dir(o: &DecapOptions) -> PathBuf {
    o.pin_dir.join(&o.interface)
}

/// Runs the subcommand; prints one line saying what it did.
pub fn run(o: &DecapOptions) -> anyhow::Result<()> {
    let ifindex = interface_index(&o.interface)?;
    let dir = iface_dir(o);
    if o.counters {
        return print_counters(&dir, &o.interface);
    }
    if o.detach {
        if !dir.join("link").exists() {
            bail!("no decapsulation program attached to {} (nothing under {})", o.interface, dir.display());
        }
        // Detach first, synchronously: dropping the last reference to the link (its pin) would
        // detach it too, but only once the kernel gets round to freeing it.
        link_detach(&dir.join("link")).context("cannot detach the pinned link")?;
        for f in PINS {
            let p = dir.join(f);
            if p.exists() {
                fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
            }
        }
        let _ = fs::remove_dir(&dir);
        println!("decapsulation detached from {}", o.interface);
        return Ok(());
    }
    let mut addrs = interface_addresses(&o.interface);
    for a in &o.addresses {
        if !addrs.contains(a) {
            addrs.push(*a);
        }
    }
    if addrs.is_empty() {
        bail!("{} has no IP address and no --address was given: nothing to decapsulate for", o.interface);
    }
    if dir.join("link").exists() {
        let (mut m, mut m6) = open_addrs(&dir)?;
        let old: Vec<u32> = m.keys().filter_map(Result::ok).collect();
        for k in old {
            let _ = m.remove(&k);
        }
        let old: Vec<[u32; 4]> = m6.keys().filter_map(Result::ok).collect();
        for k in old {
            let _ = m6.remove(&k);
        }
        fill(&mut m, &mut m6, &addrs)?;
        let mut ports = open_ports(&dir)?;
        let old: Vec<u16> = ports.keys().filter_map(Result::ok).collect();
        for k in old {
            let _ = ports.remove(&k);
        }
        for p in &o.gue_ports {
            ports.insert(p.to_be(), 1, 0)?;
        }
        println!(
            "decapsulation already attached to {}; addresses now {}{}",
            o.interface,
            list(&addrs),
            gue_list(&o.gue_ports)
        );
        return Ok(());
    }
    attach(o, ifindex, &dir, &addrs)?;
    println!("decapsulation attached to {} (ingress) for {}{}", o.interface, list(&addrs), gue_list(&o.gue_ports));
    Ok(())
}

/// The pins under an interface's directory.
const PINS: [&str; 5] = ["link", "addrs", "addrs6", "gueports", "stats"];

fn gue_list(ports: &[u16]) -> String {
    if ports.is_empty() {
        return String::new();
    }
    format!("; GUE on UDP port {}", ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "))
}

fn open_ports(dir: &Path) -> anyhow::Result<HashMap<MapData, u16, u32>> {
    let data = MapData::from_pin(dir.join("gueports")).context("cannot open the pinned GUE port map")?;
    Ok(HashMap::try_from(Map::HashMap(data))?)
}

fn list(a: &[IpAddr]) -> String {
    a.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}

fn attach(o: &DecapOptions, _ifindex: u32, dir: &Path, addrs: &[IpAddr]) -> anyhow::Result<()> {
    if OBJECT.is_empty() {
        bail!("this lvsd was built without its eBPF objects (AYA_BUILD_SKIP)");
    }
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot create {} (is bpffs mounted on /sys/fs/bpf?)", dir.display()))?;
    let result = (|| {
        let mut ebpf = EbpfLoader::new().load(OBJECT).context("cannot load the decapsulation object")?;
        {
            let m = ebpf.map_mut("DECAP_ADDRS").context("object has no DECAP_ADDRS")?;
            if let Map::HashMap(d) = &*m {
                d.pin(dir.join("addrs"))?;
            }
            let mut m: HashMap<&mut MapData, u32, u32> = HashMap::try_from(m)?;
            for a in addrs {
                if let IpAddr::V4(a) = a {
                    m.insert(u32::from(*a).to_be(), 1, 0)?;
                }
            }
        }
        {
            let m = ebpf.map_mut("DECAP_ADDRS6").context("object has no DECAP_ADDRS6")?;
            if let Map::HashMap(d) = &*m {
                d.pin(dir.join("addrs6"))?;
            }
            let mut m: HashMap<&mut MapData, [u32; 4], u32> = HashMap::try_from(m)?;
            for a in addrs {
                if let IpAddr::V6(a) = a {
                    m.insert(words6(a), 1, 0)?;
                }
            }
        }
        {
            let m = ebpf.map_mut("DECAP_GUE_PORTS").context("object has no DECAP_GUE_PORTS")?;
            if let Map::HashMap(d) = &*m {
                d.pin(dir.join("gueports"))?;
            }
            let mut m: HashMap<&mut MapData, u16, u32> = HashMap::try_from(m)?;
            for p in &o.gue_ports {
                m.insert(p.to_be(), 1, 0)?;
            }
        }
        if let Some(Map::PerCpuArray(m)) = ebpf.map_mut("DECAP_STATS") {
            m.pin(dir.join("stats"))?;
        }
        let prog: &mut SchedClassifier =
            ebpf.program_mut(DECAP_PROGRAM).context("object has no decapsulation program")?.try_into()?;
        prog.load().context("the kernel refused the decapsulation program")?;
        let id = prog
            .attach(&o.interface, TcAttachType::Ingress)
            .with_context(|| format!("cannot attach to {} ingress", o.interface))?;
        let link: FdLink = prog.take_link(id)?.try_into().context("this kernel has no TCX links (6.6 or later needed)")?;
        link.pin(dir.join("link")).context("cannot pin the link")?;
        anyhow::Ok(())
    })();
    if result.is_err() {
        // Leave nothing behind.
        for f in PINS {
            let _ = fs::remove_file(dir.join(f));
        }
        let _ = fs::remove_dir(dir);
    }
    result
}

/// `BPF_OBJ_GET` on the pinned link, then `BPF_LINK_DETACH`: the program is off the
/// interface when this returns.
fn link_detach(pin: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    const BPF_OBJ_GET: libc::c_long = 7;
    const BPF_LINK_DETACH: libc::c_long = 34;
    let path = std::ffi::CString::new(pin.as_os_str().as_bytes())?;
    // bpf_attr for BPF_OBJ_GET: pathname (u64), bpf_fd (u32), file_flags (u32), path_fd (s32).
    let mut attr = [0u64; 3];
    attr[0] = path.as_ptr() as u64;
    // SAFETY: the attr holds a pointer to a NUL-terminated path that outlives the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET, attr.as_ptr(), 24u32) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = fd as i32;
    // bpf_attr for BPF_LINK_DETACH: link_fd (u32).
    let mut d = [0u64; 1];
    d[0] = fd as u32 as u64;
    // SAFETY: a plain attr with the link's fd; the fd is closed right after.
    let r = unsafe { libc::syscall(libc::SYS_bpf, BPF_LINK_DETACH, d.as_ptr(), 8u32) };
    let err = std::io::Error::last_os_error();
    // SAFETY: our own fd from BPF_OBJ_GET.
    unsafe { libc::close(fd) };
    if r < 0 {
        return Err(err);
    }
    Ok(())
}

type AddrMaps = (HashMap<MapData, u32, u32>, HashMap<MapData, [u32; 4], u32>);

fn open_addrs(dir: &Path) -> anyhow::Result<AddrMaps> {
    let data = MapData::from_pin(dir.join("addrs")).context("cannot open the pinned address map")?;
    let data6 = MapData::from_pin(dir.join("addrs6")).context("cannot open the pinned IPv6 address map")?;
    Ok((HashMap::try_from(Map::HashMap(data))?, HashMap::try_from(Map::HashMap(data6))?))
}

fn fill(m: &mut HashMap<MapData, u32, u32>, m6: &mut HashMap<MapData, [u32; 4], u32>, addrs: &[IpAddr]) -> anyhow::Result<()> {
    for a in addrs {
        match a {
            IpAddr::V4(a) => m.insert(u32::from(*a).to_be(), 1, 0)?,
            IpAddr::V6(a) => m6.insert(words6(a), 1, 0)?,
        }
    }
    Ok(())
}

/// An IPv6 address as the program reads it: four network-order words.
fn words6(a: &std::net::Ipv6Addr) -> [u32; 4] {
    let o = a.octets();
    [0, 4, 8, 12].map(|i| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]))
}

/// The decapsulation counters of an interface, summed over CPUs.
pub fn counters(dir: &Path) -> anyhow::Result<Vec<(&'static str, u64)>> {
    let data = MapData::from_pin(dir.join("stats")).with_context(|| format!("nothing attached ({} missing)", dir.display()))?;
    let m: PerCpuArray<MapData, u64> = PerCpuArray::try_from(Map::PerCpuArray(data))?;
    let mut out = Vec::new();
    for (i, name) in decap_counter::NAMES.iter().enumerate() {
        let v = m.get(&(i as u32), 0)?;
        out.push((*name, v.iter().sum()));
    }
    Ok(out)
}

fn print_counters(dir: &Path, iface: &str) -> anyhow::Result<()> {
    let c = counters(dir).with_context(|| format!("no decapsulation program on {iface}"))?;
    for (n, v) in c {
        println!("{n} {v}");
    }
    Ok(())
}

fn interface_index(name: &str) -> anyhow::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| anyhow::anyhow!("--interface {name:?}: not an interface name"))?;
    // SAFETY: a NUL-terminated name.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        bail!("--interface {name}: no such interface");
    }
    Ok(idx)
}

/// The addresses of one interface: IPv4 first, then IPv6 (link-local ones left out: a
/// director's tunnel is addressed to a routable address).
fn interface_addresses(name: &str) -> Vec<IpAddr> {
    let mine: Vec<IpAddr> =
        crate::ifaddrs::all().into_iter().filter(|i| i.interface == name).map(|i| i.addr).collect();
    let v4 = mine.iter().filter(|a| a.is_ipv4());
    let v6 = mine.iter().filter(|a| matches!(a, IpAddr::V6(v) if v.segments()[0] & 0xffc0 != 0xfe80));
    v4.chain(v6).copied().collect()
}
