//! `/history` and `gtmd ctl history` against the gtmd binary's engine on loopback: a backend
//! that hangs shows in its member's steps as down with its probe latency at the timeout, the
//! name's query rate and answer shares follow, the change is listed; asked wrongly, the
//! endpoint refuses, and the command says what it does not know.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::*;

const NAME: &str = "app.example.test.";

async fn history(admin: std::net::SocketAddr, query: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{admin}/history?{query}"))
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn ctl(admin: std::net::SocketAddr, args: &[&str]) -> std::process::Output {
    let admin = admin.to_string();
    let mut a = vec!["ctl", "--admin", admin.as_str(), "history"];
    a.extend_from_slice(args);
    Command::new(env!("CARGO_BIN_EXE_gtmd"))
        .args(&a)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_keeps_states_latencies_query_rates_and_shares_per_step() {
    let (b0, b1) = (Backend::start().await, Backend::start().await);
    let g = start(&web_config(&[&b0, &b1], "", NAME), &repo().join("zones")).await;
    // Asked wrongly: refused with the reason; an unknown member or name: nothing, not an error.
    let (code, body) = history(g.admin, "since=ten").await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = history(g.admin, "colour=red").await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = history(g.admin, "step=7").await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = history(g.admin, "member=nobody").await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["members"].as_array().unwrap().len(), 0, "{v}");
    let out = ctl(g.admin, &["nobody"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("neither a member"), "{err}");

    // Queries for a step and a half, then m0 hangs for two steps.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ask = |n: u16| {
        let sock = &sock;
        async move {
            for id in 0..n {
                let q = query_msg(NAME, hickory_proto::rr::RecordType::A, true);
                udp_ask(sock, g.dns, q, id).await.expect("an answer");
            }
        }
    };
    ask(300).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    b0.set(Mode::Hang);
    tokio::time::sleep(Duration::from_secs(11)).await;

    let (code, body) = history(g.admin, "member=web/m0").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["step"], 5);
    let m = &v["members"][0];
    assert_eq!(m["member"], "web/m0");
    let states: Vec<&str> = m["state"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert!(
        states.first() == Some(&"up") && states.last() == Some(&"down"),
        "{states:?}"
    );
    let max: Vec<f64> = m["latency_ms"]["max"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x.as_f64())
        .collect();
    assert!(
        max[0] < 40.0 && *max.last().unwrap() >= 70.0,
        "latency {max:?}"
    );
    assert!(
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "member_down"),
        "{v}"
    );
    assert!(
        v["names"].as_array().unwrap().is_empty(),
        "only the member asked"
    );
    // At most one member: the one whose state changed.
    let (_, body) = history(g.admin, "limit=1").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let first = (
        v["members_total"].as_u64(),
        v["members"][0]["member"].as_str(),
    );
    assert_eq!(first, (Some(2), Some("web/m0")), "{v}");

    let (_, body) = history(g.admin, "name=app.example.test").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let n = &v["names"][0];
    let total: f64 = n["qps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x.as_f64())
        .sum();
    assert!(
        (total * 5.0 - 300.0).abs() < 1.0,
        "300 queries counted: {n}"
    );
    let share = |a: &str| -> Vec<Option<f64>> {
        let s = n["shares"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["answer"] == a)
            .unwrap();
        s["share"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64())
            .collect()
    };
    let (m0, m1) = (share("192.0.2.10"), share("192.0.2.11"));
    assert_eq!(m0.first(), Some(&Some(1.0)), "{m0:?}");
    assert_eq!(
        m0.last(),
        Some(&None),
        "m0 is in no answer at the end: {m0:?}"
    );
    assert_eq!(m1.last(), Some(&Some(1.0)), "{m1:?}");

    // The command prints the same steps, and the change.
    let out = ctl(g.admin, &["web/m0"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("web/m0 (step 5 s)") && text.contains(" down "),
        "{text}"
    );
    assert!(text.contains("member_down web/m0 -> down"), "{text}");
    let out = ctl(g.admin, &["app.example.test", "--since", "15m"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("192.0.2.11 100%"), "{text}");
}

/// A member with two checks: its history keeps each check's state and latency beside the
/// member's own. The HTTP check's backend hangs; the TCP check's stays up; `require = 1`
/// keeps the member up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_two_checks_has_each_checks_history() {
    let (web, port) = (Backend::start().await, Backend::start().await);
    let config = format!(
        "[checks.web]\ntype = \"http\"\nport = {}\ninterval = \"100ms\"\ntimeout = \"80ms\"\nfall = 1\nrise = 1\n\
         [checks.port]\ntype = \"tcp\"\nport = {}\ninterval = \"100ms\"\ntimeout = \"80ms\"\nfall = 1\nrise = 1\n\
         [pools.multi]\nchecks = [\"web\", \"port\"]\nrequire = 1\n\
         members = [{{ address = \"192.0.2.10\", name = \"m0\", probe_address = \"127.0.0.1\" }}]\n\
         [names.\"{NAME}\"]\npools = [\"multi\"]\n",
        web.addr.port(),
        port.addr.port()
    );
    let g = start(&config, &repo().join("zones")).await;
    web.set(Mode::Hang);
    tokio::time::sleep(Duration::from_millis(5600)).await;
    let (_, body) = history(g.admin, "member=multi/m0").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let m = &v["members"][0];
    let last = |x: &serde_json::Value| x.as_array().unwrap().last().cloned().unwrap();
    assert_eq!(last(&m["state"]), "up", "require = 1: {m}");
    let checks = m["checks"].as_array().expect("each check's history");
    assert_eq!(checks.len(), 2, "{m}");
    assert_eq!(
        (checks[0]["member"].as_str(), checks[1]["member"].as_str()),
        (Some("web"), Some("port"))
    );
    assert_eq!(last(&checks[0]["state"]), "down", "{m}");
    assert_eq!(last(&checks[1]["state"]), "up", "{m}");
    let hi = |c: &serde_json::Value| last(&c["latency_ms"]["max"]).as_f64().unwrap();
    assert!(hi(&checks[0]) >= 70.0 && hi(&checks[1]) < 40.0, "{m}");
}
