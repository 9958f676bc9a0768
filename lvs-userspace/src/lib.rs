//! lvsd (the daemon), ipvsadm (the compatible CLI) and lvs-bench (per-packet benchmarks) as a
//! library; the binaries are thin.

pub mod bench;
pub mod config;
pub mod control;
pub mod daemon;
pub mod decap;
pub mod ifaddrs;
pub mod ipvsadm;
pub mod model;
pub mod sysbench;
pub mod testkit;
