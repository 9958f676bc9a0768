//! Test harness for the LVS/XDP project: network-namespace rigs, guarded processes, real-server
//! emulation and clients. Everything a test creates is named uniquely
//! (`lvs-<pid>-<counter>-<role>`) and is removed by a guard's `Drop`, also when the test panics.
//!
//! Typical lvsd test:
//!
//! ```no_run
//! use lvs_tests::*;
//! # fn main() -> anyhow::Result<()> {
//! if !require_root() { return Ok(()); }
//! let topo = Topology::builder().real_servers(2).with_servers().build()?;
//! let tmp = TempDir::new("nat")?;
//! let cfg = tmp.write("lvs.yaml", "...")?;
//! let lvsd = Lvsd::start(&topo.director, &cfg)?;
//! let r = topo.client.curl(&format!("http://{VIP}/"), &[])?;
//! assert_eq!(r.status, 200);
//! println!("{}", lvsd.ipvsadm_ok(&["-L", "-n"])?);
//! # Ok(()) }
//! ```
//!
//! Constants for the standard rig's addresses are in [`topology`]; see [`Topology`] for the
//! wiring.

pub mod client;
pub mod direct;
pub mod netns;
pub mod oracle;
pub mod process;
pub mod scenario;
pub mod servers;
pub mod topology;
pub mod util;

pub use client::HttpResponse;
pub use direct::{Decap, Family};
pub use netns::{veth_pair, CmdOutput, Netns};
pub use process::{Lvsd, Spawned};
pub use servers::{expected_bytes, pattern_byte, HttpServer, ServerThread, TcpEchoServer, UdpEchoServer};
pub use topology::*;
pub use util::{lvs_bin, require_root, timing_exclusive, timing_shared, wait_for, TempDir};
