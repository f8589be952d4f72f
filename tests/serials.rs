//! Zone serials across restarts, as a real Knot secondary sees them: a restart of gtmd,
//! with or without `admin.state_file`, never serves a serial below one it served, and a
//! restart with nothing changed keeps the serial (the secondary fetches nothing). Needs
//! `knotd` (`.ci/run` installs it).

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use gtmd::dns::snapshot::serial_gt;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

/// A date-style serial, above the current Unix time: the clock gives no floor above it.
const ZONE: &str =
    "$TTL 300\n@ SOA ns1 hostmaster 2026112201 3600 600 86400 300\n NS ns1\nns1 A 127.0.0.1\n";

/// The SOA serial `server` answers for `zone`, if it answers authoritatively.
async fn soa_serial(server: SocketAddr, zone: &str) -> Option<u32> {
    let q = query_msg(zone, RecordType::SOA, false).to_vec().unwrap();
    let b = udp_raw(server, &q, Duration::from_millis(300)).await?;
    let m = Message::from_vec(&b).ok()?;
    if m.response_code != ResponseCode::NoError || !m.authoritative {
        return None;
    }
    m.answers.iter().find_map(|r| match &r.data {
        RData::SOA(s) => Some(s.serial),
        _ => None,
    })
}

/// Knot on 127.0.0.1:`port` as a secondary of `zone` from `primary`, taking NOTIFY from
/// loopback; its files in `dir`.
fn knot(zone: &str, primary: SocketAddr, port: u16, dir: &Path) -> KillOnDrop {
    let d = dir.display();
    let (ip, pport) = (primary.ip(), primary.port());
    let conf = format!(
        "server:\n    listen: 127.0.0.1@{port}\n    rundir: {d}\ndatabase:\n    storage: {d}\n\
         remote:\n  - id: primary\n    address: {ip}@{pport}\n\
         acl:\n  - id: notify\n    address: 127.0.0.0/8\n    action: notify\n\
         zone:\n  - domain: {zone}\n    storage: {d}\n    file: {d}/{zone}zone\n    master: primary\n    acl: [notify]\n"
    );
    let path = dir.join("knot.conf");
    std::fs::write(&path, conf).unwrap();
    daemon(&installed("knotd", "knot"), &["-c"], &path)
}

/// Waits (at most 20 s) until `server` answers serial `want` for `zone`.
async fn holds(server: SocketAddr, zone: &str, want: u32) -> bool {
    wait_until(Duration::from_secs(20), || async {
        soa_serial(server, zone).await == Some(want)
    })
    .await
    .is_some()
}

fn set_override(admin: SocketAddr, disable: bool) {
    let (path, body) = if disable {
        let b = serde_json::json!({ "target": "web/m0", "action": "disable", "reason": "drill" });
        ("/overrides", b)
    } else {
        (
            "/overrides/clear",
            serde_json::json!({ "target": "web/m0" }),
        )
    };
    gtmd::ops::ctl::request(admin, "POST", path, None, Some(&body)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_state_file_a_restart_never_moves_knots_serial_back_and_unchanged_content_keeps_it(
) {
    let b0 = Backend::start().await;
    let b1 = Backend::start().await;
    // No admin.state_file: the default.
    let (dir, dns, admin, knot_port) = primary_config(&b0, &b1);
    let cfg = dir.path().join("gtmd.toml");
    let mut gtmd = KillOnDrop(spawn_gtmd(&cfg, admin));
    let (_knot_dir, sec, first) = knot_following(dns, knot_port).await;
    // Twenty-one changes: the serial runs ahead of the file's (one per change).
    for i in 0..21 {
        set_override(admin, i % 2 == 0);
    }
    let ahead = soa_serial(dns, "sec.test.").await.unwrap();
    assert!(serial_gt(ahead, first + 10), "serial {ahead} after {first}");
    assert!(
        holds(sec_addr(knot_port), "sec.test.", ahead).await,
        "knot took {ahead}"
    );
    // Killed, and started again at once, nothing changed: the same serial.
    drop(gtmd);
    gtmd = KillOnDrop(spawn_gtmd(&cfg, admin));
    let after = soa_serial(dns, "sec.test.").await.unwrap();
    assert!(
        !serial_gt(ahead, after),
        "after a restart gtmd serves serial {after}, below the {ahead} it served"
    );
    assert_eq!(
        after, ahead,
        "a restart with nothing changed moved the serial"
    );
    // A second restart, the same; then a change moves it on, and Knot follows.
    drop(gtmd);
    let _gtmd = KillOnDrop(spawn_gtmd(&cfg, admin));
    assert_eq!(soa_serial(dns, "sec.test.").await, Some(ahead));
    set_override(admin, false);
    let next = soa_serial(dns, "sec.test.").await.unwrap();
    assert!(serial_gt(next, ahead), "serial {next} after {ahead}");
    assert!(
        holds(sec_addr(knot_port), "sec.test.", next).await,
        "knot took {next}"
    );
    drop(sec);
}

/// A Knot secondary of sec.test. on `port`, once it holds the serial `dns` serves now: its
/// folder, its process and that serial.
async fn knot_following(dns: SocketAddr, port: u16) -> (tempfile::TempDir, KillOnDrop, u32) {
    let dir = tempfile::tempdir().unwrap();
    let sec = knot("sec.test.", dns, port, dir.path());
    let first = soa_serial(dns, "sec.test.").await.unwrap();
    assert!(
        holds(sec_addr(port), "sec.test.", first).await,
        "knot took {first}"
    );
    (dir, sec, first)
}

fn sec_addr(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

/// Each publication takes 300 ms to be served (`GTMD_TEST_PUBLISH_PAUSE`): Knot, notified
/// of a new serial, asks for the SOA at once. NOTIFY goes out only once the new serial is
/// served, so Knot never reads the old one, thinks itself current, and stays behind (its
/// next refresh is an hour away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_is_notified_only_once_the_new_serial_is_served() {
    let b0 = Backend::start().await;
    let b1 = Backend::start().await;
    let (dir, dns, admin, knot_port) = primary_config(&b0, &b1);
    let cfg = dir.path().join("gtmd.toml");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_gtmd"))
        .arg("--config")
        .arg(&cfg)
        .env("GTMD_TEST_PUBLISH_PAUSE", "300ms")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _gtmd = KillOnDrop(child);
    let ready = wait_until(Duration::from_secs(10), || async {
        soa_serial(dns, "sec.test.").await.is_some()
    })
    .await;
    assert!(ready.is_some(), "gtmd did not start");
    let (_knot_dir, sec, first) = knot_following(dns, knot_port).await;
    let mut last = first;
    for (i, disable) in [true, false, true].into_iter().enumerate() {
        tokio::task::spawn_blocking(move || set_override(admin, disable))
            .await
            .unwrap();
        let next = serial_above(dns, last)
            .await
            .unwrap_or_else(|| panic!("change {i}: gtmd never served a serial above {last}"));
        let followed = wait_until(Duration::from_secs(3), || async {
            soa_serial(sec_addr(knot_port), "sec.test.").await == Some(next)
        })
        .await;
        assert!(
            followed.is_some(),
            "change {i}: Knot did not take serial {next} within 3 s of gtmd serving it"
        );
        last = next;
    }
    drop(sec);
}

/// The first serial above `above` that `server` answers for sec.test., within 3 s.
async fn serial_above(server: SocketAddr, above: u32) -> Option<u32> {
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        if let Some(s) = soa_serial(server, "sec.test.")
            .await
            .filter(|s| serial_gt(*s, above))
        {
            return Some(s);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// A directory holding the zone sec.test. and a `gtmd.toml` serving it (and app.sec.test. from
/// `b0`, `b1`) on a free address, transfers allowed from loopback and NOTIFY sent to Knot's
/// port: the directory, gtmd's DNS and admin addresses, and the port for Knot.
fn primary_config(b0: &Backend, b1: &Backend) -> (tempfile::TempDir, SocketAddr, SocketAddr, u16) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    std::fs::write(dir.path().join("zones/sec.test.zone"), ZONE).unwrap();
    let (dns, admin, knot_port) = (free_addr(), free_addr(), free_addr().port());
    let config = format!(
        "[server]\nlisten = [\"{dns}\"]\nzones_dir = \"zones\"\n\
         [zones.\"sec.test.\"]\nallow_transfer = [\"127.0.0.0/8\"]\nnotify = [\"127.0.0.1:{knot_port}\"]\n{}",
        web_config(
            &[b0, b1],
            &format!("[admin]\nlisten = \"{admin}\""),
            "app.sec.test."
        )
    );
    std::fs::write(dir.path().join("gtmd.toml"), config).unwrap();
    (dir, dns, admin, knot_port)
}
