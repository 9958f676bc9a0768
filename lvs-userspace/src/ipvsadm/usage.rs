//! `-h` and `-v`, as ipvsadm 1.31 prints them.

/// The version line; the IPVS version is the one ipvsadm was compiled against (uapi 1.2.1),
/// not the running kernel's.
pub fn version() -> String {
    "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n".to_string()
}

/// The full `-h` text: the version line, then the usage with the program name as invoked.
/// The scheduler list is the one 1.31 was built with (no `twos`).
pub fn usage(program: &str) -> String {
    version() + &include_str!("usage.txt").replace("{P}", program)
}

#[cfg(test)]
mod tests {
    #[test]
    fn head_matches_golden() {
        let u = super::usage("ipvsadm");
        let head: Vec<&str> = u.lines().take(3).collect();
        assert_eq!(
            head,
            [
                "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)",
                "Usage:",
                "  ipvsadm -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [--pe persistence_engine] [-b sched-flags]",
            ]
        );
        assert!(u.ends_with("Multicast TTL (default=1)\n"));
    }
}
