//! The query benchmark (benches/dnsperf.py) still runs: one short round against every server.
//! It measures nothing here (timings on shared machines are noise); it only proves the script,
//! its server setups and the release binary still work together. Needs root, dnsperf, knot,
//! nsd and gdnsd (`.ci/run` installs them).

use std::process::Command;

/// Every server the script knows, the DNSSEC ones (asked with DO=1) included.
const SERVERS: &str = "echo,knot,knot-signed,nsd,gdnsd,gtmd,gtmd-signed,gtmd-rrl";

#[test]
fn the_query_benchmark_runs_in_smoke_mode() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .args([
            "benches/dnsperf.py",
            "--smoke",
            "--no-build",
            "--servers",
            SERVERS,
        ])
        .current_dir(root)
        .env("GTMD_BIN", env!("CARGO_BIN_EXE_gtmd"))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "benchmark failed:\n{stdout}\n{stderr}"
    );
    for server in SERVERS.split(',') {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {server} |")))
            .unwrap_or_else(|| panic!("no row for {server}:\n{stdout}"));
        let qps: f64 = row.split('|').nth(2).unwrap().trim().parse().unwrap();
        assert!(qps > 0.0, "{server} answered nothing: {row}");
    }
}
