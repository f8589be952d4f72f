//! gtmd bound to wildcard addresses, as in production, run inside a network namespace of its
//! own (`unshare -n`, only `lo` up) so that nothing is exposed beyond this machine. Needs
//! root, `unshare` and `ip` (util-linux and iproute2), `dig` and `curl`.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::repo;

/// Runs `script` with `sh -eu` in a new network namespace with `lo` up; `$GTMD` is the
/// binary, `$DIR` a scratch directory; `start_gtmd` runs it on `$DIR/gtmd.toml` and waits until
/// it is ready, `stop_gtmd` stops it. Returns its standard output; panics with its output
/// when it fails.
fn in_netns(dir: &Path, script: &str) -> String {
    let wrapped = format!(
        "ip link set lo up\n\
         start_gtmd() {{ \"$GTMD\" --config \"$DIR/gtmd.toml\" >\"$DIR/log\" 2>&1 & pid=$!; \
           for i in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:8053/readyz && return 0; sleep 0.1; done; \
           cat \"$DIR/log\"; return 1; }}\n\
         stop_gtmd() {{ kill $pid; wait $pid || true; }}\n\
         {script}"
    );
    let out = Command::new("unshare")
        .args(["-n", "--", "timeout", "60", "sh", "-eu", "-c", &wrapped])
        .env("GTMD", env!("CARGO_BIN_EXE_gtmd"))
        .env("DIR", dir)
        .output()
        .expect("unshare runs (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the script failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The sample configuration with `server` and `admin` lines in place of its own.
fn config(dir: &Path, server: &str, admin: &str) -> std::path::PathBuf {
    let sample = std::fs::read_to_string(repo().join("dist/gtmd.toml")).unwrap();
    let zones = repo().join("zones");
    let text = sample
        .replace(
            "listen = [\"127.0.0.1:5353\"]",
            &format!("listen = {server}"),
        )
        .replace(
            "zones_dir = \"zones\"",
            &format!("zones_dir = {:?}", zones.display().to_string()),
        )
        .replace("listen = \"127.0.0.1:8053\"", admin);
    let path = dir.join("gtmd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_production_listen_pair_starts_and_answers_both_families() {
    let dir = tempfile::tempdir().unwrap();
    config(
        dir.path(),
        "[\"0.0.0.0:53\", \"[::]:53\"]",
        "listen = \"127.0.0.1:8053\"",
    );
    let out = in_netns(
        dir.path(),
        r#"
start_gtmd
for at in 127.0.0.1 ::1; do
  for t in +notcp +tcp; do
    echo "$at $t $(dig @$at -p 53 $t +short +time=2 +tries=1 www.example.test A)"
  done
done
stop_gtmd
"#,
    );
    for want in [
        "127.0.0.1 +notcp 192.0.2.80",
        "127.0.0.1 +tcp 192.0.2.80",
        "::1 +notcp 192.0.2.80",
        "::1 +tcp 192.0.2.80",
    ] {
        assert!(out.lines().any(|l| l == want), "no {want:?} in:\n{out}");
    }
}

#[test]
fn an_ipv6_wildcard_alone_serves_ipv6_only() {
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), "[\"[::]:53\"]", "listen = \"127.0.0.1:8053\"");
    let out = in_netns(
        dir.path(),
        r#"
start_gtmd
echo "v6 $(dig @::1 -p 53 +short +time=2 +tries=1 www.example.test A)"
echo "v4 $(dig @127.0.0.1 -p 53 +short +time=1 +tries=1 www.example.test A | grep -c 192.0.2.80 || true)"
echo "v4tcp $(dig @127.0.0.1 -p 53 +tcp +short +time=1 +tries=1 www.example.test A | grep -c 192.0.2.80 || true)"
stop_gtmd
"#,
    );
    assert!(out.contains("v6 192.0.2.80"), "{out}");
    assert!(out.contains("v4 0"), "IPv4 answered on [::] alone:\n{out}");
    assert!(
        out.contains("v4tcp 0"),
        "IPv4 TCP answered on [::] alone:\n{out}"
    );
}

#[test]
fn a_reload_cannot_drop_the_token_while_the_api_listens_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
    config(
        dir.path(),
        "[\"127.0.0.1:5353\"]",
        "listen = \"0.0.0.0:8053\"\ntoken_file = \"token\"",
    );
    // The new file moves the API to loopback (a restart would apply that) and drops the token.
    std::fs::create_dir(dir.path().join("next")).unwrap();
    config(
        &dir.path().join("next"),
        "[\"127.0.0.1:5353\"]",
        "listen = \"127.0.0.1:8053\"",
    );
    let out = in_netns(
        dir.path(),
        r#"
start_gtmd
cp "$DIR/next/gtmd.toml" "$DIR/gtmd.toml"
echo "reload $(curl -s -o "$DIR/reply" -w '%{http_code}' -X POST -H 'Authorization: Bearer s3cret' http://127.0.0.1:8053/reload)"
echo "reply $(cat "$DIR/reply")"
echo "untokened $(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' -d '{"target":"app/eu-1","action":"disable","reason":"x"}' http://127.0.0.1:8053/overrides)"
stop_gtmd
"#,
    );
    assert!(out.contains("reload 422"), "{out}");
    assert!(out.contains("not a loopback address"), "{out}");
    assert!(
        out.contains("untokened 401"),
        "a change without the token was taken:\n{out}"
    );
}

/// A ping pool: 127.0.0.1 and 10.9.9.9 (an address the script adds to `lo` and removes).
fn ping_config(dir: &Path) {
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:5353\"]\nzones_dir = {:?}\n[admin]\nlisten = \"127.0.0.1:8053\"\n\
         [checks.ping]\ntype = \"icmp\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\nfall = 1\nrise = 1\ncount = 3\n\
         [pools.ping]\ncheck = \"ping\"\nmembers = [{{ address = \"127.0.0.1\", name = \"lo\" }}, \
         {{ address = \"10.9.9.9\", name = \"extra\" }}]\n[names.\"ping.example.test.\"]\npools = [\"ping\"]\n",
        repo().join("zones").display().to_string()
    );
    std::fs::write(dir.join("gtmd.toml"), text).unwrap();
}

/// The script's preamble: gtmd runs without CAP_NET_RAW (so no raw socket), with
/// `ping_group_range` set to `range`.
fn without_raw(range: &str) -> String {
    format!(
        "echo '{range}' > /proc/sys/net/ipv4/ping_group_range\n\
         printf '#!/bin/sh\\nexec setpriv --bounding-set -net_raw \"%s\" \"$@\"\\n' \"$GTMD\" > \"$DIR/g\"\n\
         chmod +x \"$DIR/g\"; GTMD=\"$DIR/g\"\nip addr add 10.9.9.9/32 dev lo\n"
    )
}

#[test]
fn an_icmp_check_over_a_datagram_socket_follows_an_address_that_leaves_and_returns() {
    let dir = tempfile::tempdir().unwrap();
    ping_config(dir.path());
    let script = without_raw("0 2147483647")
        + r#"
ask() { dig @127.0.0.1 -p 5353 +short +time=1 +tries=1 ping.example.test A | sort | tr '\n' ' '; }
start_gtmd
echo "both: $(ask)"
ip addr del 10.9.9.9/32 dev lo
for i in $(seq 1 50); do [ "$(ask)" = "127.0.0.1 " ] && break; sleep 0.1; done
echo "removed: $(ask)"
curl -s http://127.0.0.1:8053/status | grep -o 'echo to 10.9.9.9: Network is unreachable' | head -n 1
ip addr add 10.9.9.9/32 dev lo
for i in $(seq 1 50); do [ "$(ask)" = "10.9.9.9 127.0.0.1 " ] && break; sleep 0.1; done
echo "returned: $(ask)"
stop_gtmd
"#;
    let out = in_netns(dir.path(), &script);
    for want in [
        "both: 10.9.9.9 127.0.0.1 ",
        "removed: 127.0.0.1 ",
        "echo to 10.9.9.9: Network is unreachable",
        "returned: 10.9.9.9 127.0.0.1 ",
    ] {
        assert!(out.lines().any(|l| l == want), "no {want:?} in:\n{out}");
    }
}

#[test]
fn an_icmp_check_that_may_not_open_a_socket_says_what_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    ping_config(dir.path());
    let script = without_raw("1 0")
        + r#"
start_gtmd
curl -s http://127.0.0.1:8053/status | grep -c 'add gtmd.s group to net.ipv4.ping_group_range, or give it CAP_NET_RAW' || true
stop_gtmd
"#;
    let out = in_netns(dir.path(), &script);
    assert!(out.trim().parse::<u32>().unwrap_or(0) >= 1, "{out}");
}
