//! What the packet fixtures and the benchmarks share: frames built from scratch with full
//! checksums, and a private network namespace shaped like a director for `BPF_PROG_TEST_RUN`.

pub mod frames;
pub mod netns;
