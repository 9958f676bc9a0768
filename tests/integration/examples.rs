//! Every shipped example under configs/ is checked by lvsd itself; the demo config also runs.

use std::{path::PathBuf, process::Command};

use lvs_tests::*;

fn configs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

fn check(file: &str) -> (bool, String, String) {
    let path = configs_dir().join(file);
    let out = Command::new(lvs_bin("lvsd")).arg("--check-config").arg(&path).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn every_example_gets_a_verdict() {
    let mut names: Vec<String> = std::fs::read_dir(configs_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
    for name in &names {
        let (ok, stdout, stderr) = check(name);
        match name.as_str() {
            "demo.yaml" => {
                assert!(ok, "{stderr}");
                assert!(stdout.contains("OK: 2 interface(s), 2 service(s), 4 real server(s)\n"), "{stdout}");
                // Then the plan: two services with two real servers each, from nothing.
                assert!(stdout.contains("would make 6 change(s):\n  -A -t 203.0.113.10:80 -s rr\n"), "{stdout}");
            }
            "minimal.yaml" => {
                assert!(ok, "{stderr}");
                assert!(stdout.contains("OK: 1 interface(s), 0 service(s), 0 real server(s)\n"), "{stdout}");
            }
            // The reference documents every key; with IPv6 services accepted, lvsd takes all
            // of it (each service in the plan, the IPv6 one in ipvsadm's bracket syntax).
            "reference.yaml" => {
                assert!(ok, "{stderr}");
                assert!(stdout.contains("OK: 2 interface(s), 7 service(s), 12 real server(s)\n"), "{stdout}");
                assert!(stdout.contains("\n  -A -u [2001:db8::53]:53 -s rr -p 120 -M 64\n"), "{stdout}");
                assert!(stdout.contains("\n  -a -u [2001:db8::53]:53 -r [2001:db8:1::11]:53 -m -w 1\n"), "{stdout}");
            }
            other => assert!(ok, "{other}: {stderr}"),
        }
    }
}

#[test]
fn demo_config_balances_as_shipped() {
    if !require_root() {
        return;
    }
    // The harness rig uses the demo's interface names and addresses.
    let topo = Topology::builder().real_servers(2).with_servers().build().unwrap();
    let _lvsd = Lvsd::start(&topo.director, &configs_dir().join("demo.yaml")).unwrap();
    let names: Vec<String> = (0..4).map(|_| topo.client.http_get(vip(80), "/").unwrap().text()).collect();
    assert_eq!(names, ["rs2", "rs1", "rs2", "rs1"]);
    let reply = topo.client.udp_request(vip(53), b"demo", std::time::Duration::from_secs(3)).unwrap();
    assert_eq!(reply, b"rs2:demo");
}
