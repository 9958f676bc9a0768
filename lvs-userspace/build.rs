//! Builds the XDP objects (lvs-ebpf) with the nightly toolchain for bpfel-unknown-none.
//!
//! With `AYA_BUILD_SKIP=1` (host-only unit tests, no bpf-linker) the objects are replaced by
//! empty files: the crate still compiles and lvsd reports at run time that it has no dataplane.
use std::{fs, path::PathBuf};

fn main() -> anyhow::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../lvs-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package { name: "lvs-ebpf", root_dir: root, ..Default::default() }],
        aya_build::Toolchain::default(),
    )?;
    // `lvs`: the dataplane; `bench-harness`: the benchmark harness (lvs-bench only); `decap`:
    // the real servers' IP-in-IP decapsulation (`lvsd decap`).
    for name in ["lvs", "bench-harness", "decap"] {
        let obj = PathBuf::from(std::env::var("OUT_DIR")?).join(name);
        if !obj.exists() {
            fs::write(&obj, [])?;
        }
    }
    println!("cargo:rerun-if-changed=../lvs-common/src");
    Ok(())
}
