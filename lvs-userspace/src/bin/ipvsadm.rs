//! `ipvsadm`: the ipvsadm 1.31-compatible CLI for lvsd.

fn main() {
    std::process::exit(lvs_userspace::ipvsadm::main_with_args(std::env::args_os().collect()));
}
