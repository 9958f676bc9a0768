//! lvsd (the daemon) and ipvsadm (the compatible CLI) as a library; the binaries are thin.

pub mod config;
pub mod control;
pub mod daemon;
pub mod ipvsadm;
pub mod model;
