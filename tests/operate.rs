//! Operating gtmd by hand: overrides through the admin API and `gtmd ctl`, kept in the
//! state file across restarts, drains that end by themselves, the bearer token, and a state
//! file that survives a kill in the middle of a write.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use gtmd::ops::ctl::request;
use hickory_proto::rr::RecordType;
use serde_json::json;

const NAME: &str = "app.example.test.";

/// Two HTTP members (m0 = 192.0.2.10, m1 = 192.0.2.11) of pool web behind the name;
/// `admin` goes into the [admin] table (state_file, token_file).
fn config(b: &[&Backend], admin: &str) -> String {
    web_config(b, admin, NAME)
}

fn post(
    admin: SocketAddr,
    path: &str,
    token: Option<&str>,
    body: serde_json::Value,
) -> Result<String, String> {
    request(admin, "POST", path, token, Some(&body))
}

fn disable(target: &str, duration: Option<&str>) -> serde_json::Value {
    json!({ "target": target, "action": "disable", "reason": "maintenance", "for": duration })
}

async fn answers(g: &Gtmd) -> Vec<String> {
    answer(g.dns, NAME, RecordType::A).await
}

async fn until_answers(g: &Gtmd, want: &[&str], limit: Duration) -> Option<Duration> {
    wait_until(limit, || async { answers(g).await == want }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disable_survives_a_restart_and_enable_restores() {
    let (b0, b1) = (Backend::start().await, Backend::start().await);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let cfg = config(
        &[&b0, &b1],
        &format!("state_file = {:?}", state.display().to_string()),
    );
    let zones = repo().join("zones");
    let g = start(&cfg, &zones).await;
    assert_eq!(answers(&g).await, ["192.0.2.10", "192.0.2.11"]);
    post(g.admin, "/overrides", None, disable("web/m0", None)).unwrap();
    assert_eq!(answers(&g).await, ["192.0.2.11"]);
    let m = member(g.admin, "m0").await;
    assert_eq!(m["state"], "up", "still probed, still healthy: {m}");
    assert_eq!(m["answered"], false);
    assert_eq!(m["override"]["action"], "disable");
    assert_eq!(m["override"]["reason"], "maintenance");
    let kept = gtmd::base::state::load(&state).unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].target.to_string(), "web/m0");

    // Restart: the override is back before the first answer.
    drop(g);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let g = start(&cfg, &zones).await;
    assert_eq!(answers(&g).await, ["192.0.2.11"]);
    // Unknown targets and missing overrides are refused with the reason.
    let e = post(g.admin, "/overrides", None, disable("web/m9", None)).unwrap_err();
    assert!(
        e.contains("400") && e.contains("its members are: m0, m1"),
        "{e}"
    );
    let e = post(
        g.admin,
        "/overrides/clear",
        None,
        json!({ "target": "web/m1" }),
    )
    .unwrap_err();
    assert!(e.contains("no override"), "{e}");
    post(
        g.admin,
        "/overrides/clear",
        None,
        json!({ "target": "web/m0" }),
    )
    .unwrap();
    assert_eq!(answers(&g).await, ["192.0.2.10", "192.0.2.11"]);
    assert!(gtmd::base::state::load(&state).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_ends_by_itself_and_force_up_overrides_health() {
    let (b0, mut b1) = (Backend::start().await, Backend::start().await);
    let g = start(&config(&[&b0, &b1], ""), &repo().join("zones")).await;
    post(g.admin, "/overrides", None, disable("pool:web", Some("1s"))).unwrap();
    // Every member of the pool disabled: nothing to answer, not even fail-open.
    let m = udp(g.dns, &query_msg(NAME, RecordType::A, true)).await;
    assert!(m.answers.is_empty(), "{m:?}");
    let back = until_answers(&g, &["192.0.2.10", "192.0.2.11"], Duration::from_secs(4)).await;
    assert!(back.is_some(), "the drain did not end");
    assert!(status(g.admin).await["overrides"]
        .as_array()
        .unwrap()
        .is_empty());

    // A failing member forced up stays in answers; its real health still shows.
    b1.refuse();
    until_answers(&g, &["192.0.2.10"], Duration::from_secs(3))
        .await
        .expect("m1 leaves when it fails");
    let up = json!({ "target": "web/m1", "action": "force-up", "reason": "known good" });
    post(g.admin, "/overrides", None, up).unwrap();
    assert_eq!(answers(&g).await, ["192.0.2.10", "192.0.2.11"]);
    let m = member(g.admin, "m1").await;
    assert_eq!(
        (m["state"].as_str(), m["answered"].as_bool()),
        (Some("down"), Some(true)),
        "{m}"
    );
    // An override makes the name's TTL the degraded one.
    assert_eq!(status(g.admin).await["names"][0]["degraded"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_need_the_token_and_gtmd_ctl_uses_it() {
    let (b0, b1) = (Backend::start().await, Backend::start().await);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let cfg = config(
        &[&b0, &b1],
        &format!("token_file = {:?}", token_file.display().to_string()),
    );
    let g = start(&cfg, &repo().join("zones")).await;
    for token in [None, Some("wrong"), Some("s3cret-toke")] {
        let e = post(g.admin, "/overrides", token, disable("web/m0", None)).unwrap_err();
        assert!(e.contains("401"), "{token:?}: {e}");
    }
    assert_eq!(answers(&g).await.len(), 2, "nothing changed");
    // Reading needs no token.
    assert!(request(g.admin, "GET", "/overrides", None, None).is_ok());

    // The command line, as an operator runs it.
    let ctl = |args: &[&str]| {
        let admin = g.admin.to_string();
        let mut a = vec![
            "ctl",
            "--admin",
            admin.as_str(),
            "--token-file",
            token_file.to_str().unwrap(),
        ];
        a.extend_from_slice(args);
        Command::new(env!("CARGO_BIN_EXE_gtmd"))
            .args(&a)
            .output()
            .unwrap()
    };
    let out = ctl(&["disable", "web/m0", "--reason", "deploy", "--for", "10m"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(answers(&g).await, ["192.0.2.11"]);
    let out = ctl(&["overrides"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["reason"], "deploy");
    assert!(list[0]["until"].as_u64().unwrap() > list[0]["since"].as_u64().unwrap() + 590);
    let out = ctl(&["enable", "web/m0"]);
    assert!(out.status.success());
    assert_eq!(answers(&g).await.len(), 2);
    let out = ctl(&["enable", "web/m0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no override"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_state_writes_leaves_a_whole_state_file() {
    let (b0, b1) = (Backend::start().await, Backend::start().await);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let state_file = format!("state_file = {:?}", state.display().to_string());
    let (file, admin, _) = binary_config(dir.path(), &[&b0, &b1], &state_file, "");
    for round in 0..6u64 {
        let mut child = spawn_gtmd(&file, admin);
        // Changes back to back, each one a state file write, until the kill lands.
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = done.clone();
        let writer = std::thread::spawn(move || {
            let mut n = 0;
            loop {
                let body = if n % 2 == 0 {
                    disable("web/m0", None)
                } else {
                    json!({ "target": "web/m0" })
                };
                let path = if n % 2 == 0 {
                    "/overrides"
                } else {
                    "/overrides/clear"
                };
                if post(admin, path, None, body).is_err() {
                    return n;
                }
                n += 1;
                counted.store(n, std::sync::atomic::Ordering::SeqCst);
            }
        });
        // The kill lands at a different point of the writes each round (after the first
        // write, however slow the machine).
        let first = Instant::now();
        while done.load(std::sync::atomic::Ordering::SeqCst) == 0
            && first.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(30 + round * 37));
        child.kill().unwrap(); // SIGKILL, whatever it was doing
        child.wait().unwrap();
        let writes = writer.join().unwrap();
        let kept = gtmd::base::state::load(&state).unwrap_or_else(|e| {
            panic!("round {round}: after {writes} writes the file is broken: {e}")
        });
        assert!(kept.len() <= 1, "round {round}: {kept:?}");
        assert!(
            writes > 0,
            "round {round}: no write happened before the kill"
        );
    }
    // And gtmd starts from it.
    let mut child = spawn_gtmd(&file, admin);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Parses Prometheus text: every sample line is `name{labels} value`, every name declared
/// by a TYPE line; returns the samples.
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    let mut typed = std::collections::HashSet::new();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut f = rest.split_whitespace();
            typed.insert(f.next().unwrap().to_string());
            let kind = f.next().unwrap();
            assert!(
                ["counter", "gauge", "histogram", "summary"].contains(&kind),
                "{line}"
            );
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let name = series.split('{').next().unwrap();
        assert!(name.starts_with("gtmd_"), "{line}");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|b| typed.contains(*b))
            .unwrap_or(name);
        assert!(typed.contains(base), "no TYPE for {name}");
        if series.contains('{') {
            assert!(series.ends_with('}'), "{line}");
        }
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        out.push((series.to_string(), v));
    }
    out
}

fn sample(m: &[(String, f64)], series: &str) -> Option<f64> {
    m.iter().find(|(s, _)| s == series).map(|(_, v)| *v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_follow_failures() {
    let (b0, mut b1) = (Backend::start().await, Backend::start().await);
    let dir = tempfile::tempdir().unwrap();
    let (file, admin, dns) = binary_config(dir.path(), &[&b0, &b1], "", "");
    let mut child = spawn_gtmd(&file, admin);
    let scrape = || parse_metrics(&request(admin, "GET", "/metrics", None, None).unwrap());
    for _ in 0..20 {
        answer(dns, NAME, RecordType::A).await;
    }
    answer(dns, "nx.example.test.", RecordType::AAAA).await;
    // The answering threads add their counts to the shared counters every 50 ms or when idle
    // (within 100 ms), not per batch.
    let nx = "gtmd_queries_total{transport=\"udp\",rcode=\"NXDOMAIN\",qtype=\"AAAA\"}";
    let counted = wait_until(Duration::from_secs(2), || async {
        sample(&scrape(), nx).is_some()
    })
    .await;
    assert!(counted.is_some(), "the NXDOMAIN was never counted");
    let m = scrape();
    let q = sample(
        &m,
        "gtmd_queries_total{transport=\"udp\",rcode=\"NOERROR\",qtype=\"A\"}",
    );
    assert!(q.is_some_and(|v| v >= 20.0), "{q:?}");
    assert_eq!(
        sample(
            &m,
            "gtmd_queries_total{transport=\"udp\",rcode=\"NXDOMAIN\",qtype=\"AAAA\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "gtmd_member_up{pool=\"web\",member=\"m1\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "gtmd_member_answered{pool=\"web\",member=\"m0\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "gtmd_pool_healthy_members{pool=\"web\"}"),
        Some(2.0)
    );
    assert_eq!(sample(&m, "gtmd_pool_members{pool=\"web\"}"), Some(2.0));
    assert_eq!(
        sample(&m, "gtmd_name_degraded{name=\"app.example.test.\"}"),
        Some(0.0)
    );
    assert!(sample(&m, "gtmd_probes_total{check=\"web\",result=\"ok\"}").is_some_and(|v| v > 0.0));
    assert!(sample(&m, "gtmd_answer_duration_seconds_count{transport=\"udp\"}").is_some());
    assert!(m
        .iter()
        .any(|(s, _)| s.starts_with("gtmd_build_info{version=")));
    // No label carries a query name or a client address.
    assert!(!m
        .iter()
        .any(|(s, _)| s.contains("nx.example") || s.contains("127.0.0.1")));

    b1.refuse();
    let down = wait_until(Duration::from_secs(5), || async {
        sample(&scrape(), "gtmd_member_up{pool=\"web\",member=\"m1\"}") == Some(0.0)
    })
    .await;
    assert!(down.is_some(), "gtmd_member_up did not drop");
    let m = scrape();
    assert_eq!(
        sample(
            &m,
            "gtmd_member_transitions_total{pool=\"web\",member=\"m1\",to=\"down\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "gtmd_pool_healthy_members{pool=\"web\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "gtmd_name_degraded{name=\"app.example.test.\"}"),
        Some(1.0)
    );
    assert!(
        sample(&m, "gtmd_probes_total{check=\"web\",result=\"fail\"}").is_some_and(|v| v > 0.0)
    );
    post(admin, "/overrides", None, disable("web/m0", None)).unwrap();
    let m = scrape();
    assert_eq!(sample(&m, "gtmd_overrides{action=\"disable\"}"), Some(1.0));
    assert_eq!(
        sample(&m, "gtmd_member_answered{pool=\"web\",member=\"m0\"}"),
        Some(0.0)
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Writes a config file for the binary: DNS and admin on free ports, `admin` in the [admin]
/// table, `extra` appended.
fn binary_config(
    dir: &Path,
    backends: &[&Backend],
    admin_extra: &str,
    extra: &str,
) -> (std::path::PathBuf, SocketAddr, SocketAddr) {
    let (admin, dns) = (free_addr(), free_addr());
    let text = format!(
        "[server]\nlisten = [\"{dns}\"]\nzones_dir = {:?}\n[admin]\nlisten = \"{admin}\"\n{}\n{extra}",
        repo().join("zones").display().to_string(),
        config(backends, admin_extra)
    );
    let file = dir.join("gtmd.toml");
    std::fs::write(&file, text).unwrap();
    (file, admin, dns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_alert_per_transition_with_a_command_that_works() {
    let (b0, mut b1) = (Backend::start().await, Backend::start().await);
    let hook = Receiver::start(200).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("alerts.log");
    let extra = format!(
        "[alerts]\nwebhook = \"{}\"\ncommand = [\"sh\", \"-c\", \"echo \\\"$GTMD_EVENT $GTMD_POOL/$GTMD_MEMBER\\\" >> {}\"]\nrate = 600\nburst = 50\n",
        hook.url,
        log.display()
    );
    let (file, admin, dns) = binary_config(dir.path(), &[&b0, &b1], "", &extra);
    let mut child = spawn_gtmd(&file, admin);
    b1.refuse();
    let got = wait_until(Duration::from_secs(5), || async {
        !hook.events("member_down").is_empty()
    })
    .await;
    assert!(got.is_some(), "no member_down alert");
    b1.restore().await;
    let got = wait_until(Duration::from_secs(5), || async {
        !hook.events("member_up").is_empty()
    })
    .await;
    assert!(got.is_some(), "no member_up alert");
    tokio::time::sleep(Duration::from_millis(500)).await; // room for duplicates to show
    let down = hook.events("member_down");
    assert_eq!(down.len(), 1, "{down:?}");
    assert_eq!(hook.events("member_up").len(), 1);
    let a = &down[0];
    assert_eq!(
        (a["pool"].as_str(), a["member"].as_str()),
        (Some("web"), Some("m1")),
        "{a}"
    );
    assert_eq!(
        (a["old_state"].as_str(), a["new_state"].as_str()),
        (Some("up"), Some("down"))
    );
    assert_eq!(a["address"], "192.0.2.11");
    assert!(a["error"].as_str().unwrap().contains("refused"), "{a}");
    assert!(a["time"].as_str().unwrap().ends_with('Z'), "{a}");
    // The command in the alert, run as it stands, takes the member out.
    let cmd = a["command"].as_str().unwrap();
    assert!(
        cmd.contains(" ctl --admin ") && cmd.contains(" disable web/m1 "),
        "{cmd}"
    );
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(answer(dns, NAME, RecordType::A).await, ["192.0.2.10"]);
    let set = wait_until(Duration::from_secs(5), || async {
        !hook.events("override_set").is_empty()
    })
    .await;
    assert!(set.is_some(), "no override_set alert");
    assert!(hook.events("override_set")[0]["command"]
        .as_str()
        .unwrap()
        .ends_with(" enable web/m1"));
    // The command hook saw the same events, in order.
    let lines = std::fs::read_to_string(&log).unwrap();
    let seen: Vec<&str> = lines.lines().collect();
    assert_eq!(
        &seen[..2],
        ["member_down web/m1", "member_up web/m1"],
        "{lines}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_storm_folds_into_a_summary_and_failures_are_counted() {
    let mut bs = Vec::new();
    for _ in 0..2 {
        bs.push(Backend::start().await);
    }
    let hook = Receiver::start(200).await;
    let dead = Receiver::start(500).await;
    let dir = tempfile::tempdir().unwrap();
    // Two alerts at once, then one a second: a storm of four leaves two to the summary.
    let extra = format!(
        "[alerts]\nwebhook = \"{}\"\nrate = 60\nburst = 2\n",
        hook.url
    );
    let (file, admin, _) = binary_config(dir.path(), &[&bs[0], &bs[1]], "", &extra);
    let mut child = spawn_gtmd(&file, admin);
    for t in ["web/m0", "web/m1", "pool:web", "region:nowhere"] {
        let _ = post(admin, "/overrides", None, disable(t, None));
    }
    for t in ["web/m0", "web/m1"] {
        post(admin, "/overrides/clear", None, json!({ "target": t })).unwrap();
    }
    let summary = wait_until(Duration::from_secs(6), || async {
        !hook.events("summary").is_empty()
    })
    .await;
    assert!(
        summary.is_some(),
        "no summary: {:?}",
        hook.got.lock().unwrap()
    );
    let got = hook.got.lock().unwrap().clone();
    let held: u64 = got
        .iter()
        .filter(|a| a["event"] == "summary")
        .flat_map(|a| {
            a["suppressed"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_u64().unwrap())
        })
        .sum();
    let individual = got.iter().filter(|a| a["event"] != "summary").count() as u64;
    // Six events (three overrides set, the name all down once the pool is disabled, two
    // overrides cleared): two at once, the rest held or let through as the rate allows;
    // none lost, and the summary says which.
    assert!(individual >= 2, "{got:?}");
    assert_eq!(individual + held, 6, "{got:?}");
    child.kill().unwrap();
    child.wait().unwrap();

    // A receiver that always fails: retried, then counted as failed; answering goes on.
    let extra = format!(
        "[alerts]\nwebhook = \"{}\"\nretries = 1\ntimeout = \"1s\"\n",
        dead.url
    );
    let (file, admin, dns) = binary_config(dir.path(), &[&bs[0], &bs[1]], "", &extra);
    let mut child = spawn_gtmd(&file, admin);
    post(admin, "/overrides", None, disable("web/m0", None)).unwrap();
    assert_eq!(answer(dns, NAME, RecordType::A).await, ["192.0.2.11"]);
    let failed = wait_until(Duration::from_secs(5), || async {
        let m = parse_metrics(&request(admin, "GET", "/metrics", None, None).unwrap());
        sample(&m, "gtmd_alerts_total{result=\"failed\"}") == Some(1.0)
    })
    .await;
    assert!(failed.is_some(), "no failed delivery counted");
    assert_eq!(
        dead.events("override_set").len(),
        2,
        "first attempt and one retry"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
