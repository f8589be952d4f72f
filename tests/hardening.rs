//! Bad input to the operator's side: a state file that cannot be read at start, a state file
//! that cannot be written, override durations and reasons that would break things, and the
//! command printed in alerts when gtmd was started with a relative `--config`.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use gtmd::base::state::{Action, Override};
use gtmd::ops::ctl::request;
use hickory_proto::rr::RecordType;
use serde_json::json;

const NAME: &str = "app.example.test.";

/// The two-member configuration of `tests/operate.rs` (pool web behind the name), with
/// `extra` after it.
fn config(b: &[&Backend], admin: &str, extra: &str) -> String {
    format!("{}{extra}", web_config(b, admin, NAME))
}

fn post(admin: SocketAddr, path: &str, body: serde_json::Value) -> Result<String, String> {
    request(admin, "POST", path, None, Some(&body))
}

fn disable(target: &str) -> serde_json::Value {
    json!({ "target": target, "action": "disable", "reason": "maintenance" })
}

fn hook(url: &str) -> String {
    format!("[alerts]\nwebhook = \"{url}\"\nrate = 600\nburst = 50\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_state_file_starts_from_its_backup_loudly_until_written_again() {
    let (b0, b1) = (Backend::start().await, Backend::start().await);
    let alerts = Receiver::start(200).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let kept = Override {
        target: "web/m0".parse().unwrap(),
        action: Action::Disable,
        reason: "region drained".into(),
        since: 1,
        until: None,
    };
    gtmd::base::state::save(&state, &[kept], &Default::default(), &Default::default()).unwrap();
    // The file is then emptied (a full disk, a bad edit), and a write was cut short.
    std::fs::write(&state, "").unwrap();
    let stale = dir.path().join(".state.json.4242.tmp");
    std::fs::write(&stale, "{ half").unwrap();
    let admin = format!("state_file = {:?}", state.display().to_string());
    let g = start(
        &config(&[&b0, &b1], &admin, &hook(&alerts.url)),
        &repo().join("zones"),
    )
    .await;
    // DNS is up, and the operator's removal holds.
    assert_eq!(answer(g.dns, NAME, RecordType::A).await, ["192.0.2.11"]);
    let problem = status(g.admin).await["state_file_problem"].clone();
    assert!(
        problem
            .as_str()
            .is_some_and(|p| p.contains("state.json.prev")),
        "{problem}"
    );
    assert_eq!(metric(g.admin, "gtmd_state_file_ok").await, Some(0.0));
    let said = wait_until(Duration::from_secs(5), || async {
        !alerts.events("state_file_unreadable").is_empty()
    })
    .await;
    assert!(said.is_some(), "no state_file_unreadable alert");
    assert!(!stale.exists(), "the cut-short write is left behind");
    // The next change writes the file whole again, and the problem ends.
    post(g.admin, "/overrides/clear", json!({ "target": "web/m0" })).unwrap();
    assert!(status(g.admin).await["state_file_problem"].is_null());
    assert_eq!(metric(g.admin, "gtmd_state_file_ok").await, Some(1.0));
    assert!(gtmd::base::state::load(&state).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_override_the_state_file_refuses_is_not_applied_nor_alerted() {
    let (b0, b1) = (Backend::start().await, Backend::start().await);
    let alerts = Receiver::start(200).await;
    let dir = tempfile::tempdir().unwrap();
    // A directory where the state file should be: nothing can be read or written there.
    let state = dir.path().join("state.json");
    std::fs::create_dir(&state).unwrap();
    let admin = format!("state_file = {:?}", state.display().to_string());
    let g = start(
        &config(&[&b0, &b1], &admin, &hook(&alerts.url)),
        &repo().join("zones"),
    )
    .await;
    assert_eq!(
        answer(g.dns, NAME, RecordType::A).await,
        ["192.0.2.10", "192.0.2.11"]
    );
    let e = post(g.admin, "/overrides", disable("web/m0")).unwrap_err();
    assert!(
        e.contains("400") && e.contains("cannot write the state file"),
        "{e}"
    );
    assert_eq!(
        answer(g.dns, NAME, RecordType::A).await,
        ["192.0.2.10", "192.0.2.11"],
        "a refused override was applied"
    );
    // The start's problem is alerted; give an override alert the same time to show.
    wait_until(Duration::from_secs(5), || async {
        !alerts.events("state_file_unreadable").is_empty()
    })
    .await
    .expect("no state_file_unreadable alert");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        alerts.events("override_set").is_empty(),
        "an alert for an override that never happened"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn override_durations_are_capped_and_reasons_carry_no_control_characters() {
    let (b0, b1) = (Backend::start().await, Backend::start().await);
    let g = start(&config(&[&b0, &b1], "", ""), &repo().join("zones")).await;
    let with = |reason: &str, duration: &str| json!({ "target": "web/m0", "action": "disable", "reason": reason, "for": duration });
    for d in ["18446744073709551615s", "11y", "4000d"] {
        let e = post(g.admin, "/overrides", with("ok", d)).unwrap_err();
        assert!(e.contains("400") && e.contains("10-year cap"), "{d}: {e}");
    }
    for r in [
        "line\nforged: log line",
        "nul\0byte",
        "tab\there",
        "esc\x1b[31m",
    ] {
        let e = post(g.admin, "/overrides", with(r, "1m")).unwrap_err();
        assert!(
            e.contains("400") && e.contains("control characters"),
            "{r:?}: {e}"
        );
    }
    assert!(status(g.admin).await["overrides"]
        .as_array()
        .unwrap()
        .is_empty());
    // Ten years less a day is taken, and ends in ten years less a day.
    let list = post(g.admin, "/overrides", with("long drain", "3649d")).unwrap();
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let (since, until) = (
        list[0]["since"].as_u64().unwrap(),
        list[0]["until"].as_u64().unwrap(),
    );
    assert_eq!(until - since, 3649 * 86_400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_print_absolute_paths_when_the_config_path_is_relative() {
    let (b0, b1) = (Backend::start().await, Backend::start().await);
    let alerts = Receiver::start(200).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "t0ken\n").unwrap();
    let (dns, admin) = (free_addr(), free_addr());
    let text = format!(
        "[server]\nlisten = [\"{dns}\"]\nzones_dir = {:?}\n[admin]\nlisten = \"{admin}\"\n{}",
        repo().join("zones").display().to_string(),
        config(&[&b0, &b1], "token_file = \"token\"", &hook(&alerts.url))
    );
    std::fs::write(dir.path().join("gtmd.toml"), text).unwrap();
    let mut child = spawn_gtmd_in(dir.path(), Path::new("gtmd.toml"), admin);
    request(
        admin,
        "POST",
        "/overrides",
        Some("t0ken"),
        Some(&disable("web/m0")),
    )
    .unwrap();
    wait_until(Duration::from_secs(5), || async {
        !alerts.events("override_set").is_empty()
    })
    .await
    .expect("no override_set alert");
    let cmd = alerts.events("override_set")[0]["command"]
        .as_str()
        .unwrap()
        .to_string();
    let abs = dir.path().join("token").display().to_string();
    assert!(cmd.contains(&format!("--token-file {abs} ")), "{cmd}");
    // Run from elsewhere, as a pager would, it works.
    let out = Command::new("sh")
        .args(["-c", &cmd])
        .current_dir("/")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        answer(dns, NAME, RecordType::A).await,
        ["192.0.2.10", "192.0.2.11"]
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
