//! The differential oracle: compares a scenario's transcript recorded against kernel IPVS and
//! Debian's ipvsadm (the golden file) with one recorded against lvsd and our ipvsadm.
//!
//! - [`transcript`] reads the transcript format into headings, records and command blocks;
//! - [`rules`] holds the few intended differences and the allow-list file that enables them;
//! - [`diff`] aligns and compares the two transcripts;
//! - [`report`] renders the result as a unified-diff-like report.
//!
//! ```
//! use lvs_tests::oracle::{compare, AllowList};
//! let allow = AllowList::parse("header-size * # capacity vs hash size\n", "allow-list.txt").unwrap();
//! let golden = "$ ipvsadm -L -n\nIP Virtual Server version 1.2.1 (size=4096)\n[exit 0]\n";
//! let ours = "$ ipvsadm -L -n\nIP Virtual Server version 1.2.1 (size=1048576)\n[exit 0]\n";
//! let c = compare("listings", golden, ours, &allow);
//! assert!(c.matches(), "{c}");
//! ```

pub mod diff;
pub mod report;
pub mod rules;
pub mod transcript;

pub use diff::{compare, Comparison, DiffLine, Mismatch, MismatchKind};
pub use rules::{AllowList, Grant, Rule, RuleSet};
