//! Privileged integration tests. Each module is one topic; every test builds its own
//! namespaces through the `lvs_tests` harness and starts with `if !require_root() { return; }`.
//!
//! Run: `cargo build --release && cargo test --release -p lvs-tests --test integration -- --test-threads=2`

mod topology;
mod examples;
mod fwd;
mod ipvsadm;
mod nat;
mod oracle;
mod persistence;
mod reload;
mod sched;
mod stats;
mod sync;
mod fwmark;
mod ipv6;
mod icmp;
mod frag;
mod sip;
