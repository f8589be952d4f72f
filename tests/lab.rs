//! The network lab of the fault tests (tests/common/lab.rs) does what it says: hosts reach
//! each other on the lab's bridge, a cut silences exactly one pair, a heal ends it, and
//! dropping the lab removes its namespaces and the processes in them. Needs root, `ip`,
//! `nft`, `curl` and python3 (for a plain HTTP server).

use crate::common;

use std::time::{Duration, Instant};

use common::lab::Lab;

/// Whether host `from` gets the HTTP server on `to` (port 8000) within a second.
fn reaches(lab: &Lab, from: &str, to: &str) -> bool {
    let url = format!("http://{}:8000/", lab.ip(to));
    lab.curl(from, &["-o", "/dev/null", &url]).is_some()
}

#[test]
fn a_cut_silences_one_pair_of_lab_hosts_until_healed_and_the_lab_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut lab = Lab::new(&["a", "b", "c"]);
    let ip = lab.ip("b").to_string();
    let d = dir.path().to_str().unwrap();
    let args = ["-m", "http.server", "8000", "--bind", &ip, "--directory", d];
    let _server = lab.spawn_in("b", "python3", &args, &dir.path().join("http.log"));
    let start = Instant::now();
    while !reaches(&lab, "a", "b") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "b's server never answered a"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(reaches(&lab, "c", "b"));

    lab.cut("a", "b");
    assert!(
        !reaches(&lab, "a", "b"),
        "a still reaches b through the cut"
    );
    assert!(
        reaches(&lab, "c", "b"),
        "the cut between a and b also cut c"
    );
    lab.heal();
    assert!(reaches(&lab, "a", "b"), "a does not reach b after the heal");

    let names: Vec<String> = lab.hosts.iter().map(|h| h.ns.clone()).collect();
    drop(lab);
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    for n in names {
        assert!(!list.contains(&n), "{n} is left after the lab was dropped");
    }
}
