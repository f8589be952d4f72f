//! The admin API's explain view: for a name and a client, each member's eligibility and why,
//! the order tried, and each possible answer with its probability, checked against what DNS
//! answers and against backends the tests break.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use hickory_proto::rr::RecordType;

const NAME: &str = "app.example.test.";

/// Pools eu (eu-1, eu-2; weight 9) and us (us-1; weight 1) of HTTP members, and the name's
/// table body `name`.
fn config(eu: [&Backend; 2], us: &Backend, name: &str) -> String {
    let m = |n: &str, a: &str, b: &Backend| {
        format!(
            "{{ name = \"{n}\", address = \"{a}\", probe_address = \"127.0.0.1\", probe_port = {} }}",
            b.addr.port()
        )
    };
    format!(
        "[checks.web]\ntype = \"http\"\ninterval = \"100ms\"\ntimeout = \"80ms\"\nfall = 1\nrise = 1\n\
         [pools.eu]\ncheck = \"web\"\nweight = 9\nmembers = [{}, {}]\n\
         [pools.us]\ncheck = \"web\"\nweight = 1\nmembers = [{}]\n\
         [names.\"{NAME}\"]\npools = [\"eu\", \"us\"]\n{name}\n",
        m("eu-1", "192.0.2.11", eu[0]),
        m("eu-2", "192.0.2.12", eu[1]),
        m("us-1", "192.0.2.21", us)
    )
}

async fn explain(admin: SocketAddr, query: &str) -> (u16, serde_json::Value) {
    let r = reqwest::get(format!("http://{admin}/explain?{query}"))
        .await
        .unwrap();
    let code = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

fn member<'a>(e: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    e["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["member"] == name)
        .unwrap()
}

fn close(x: &serde_json::Value, want: f64) -> bool {
    x.as_f64().is_some_and(|x| (x - want).abs() < 1e-9)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_gives_each_members_odds_and_why_it_is_out() {
    let (e1, e2, mut u1) = (
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    );
    let g = start(
        &config([&e1, &e2], &u1, "policy = \"weighted\"\nanswers = 1"),
        &repo().join("zones"),
    )
    .await;
    let (code, e) = explain(g.admin, "name=app.example.test").await;
    assert_eq!(code, 200, "{e}");
    assert_eq!(e["policy"], "weighted");
    // 90/10 between the pools, halved inside eu.
    for (m, p) in [("eu-1", 0.45), ("eu-2", 0.45), ("us-1", 0.1)] {
        let x = member(&e, m);
        assert!(close(&x["in_answer"], p), "{m}: {x}");
        assert_eq!(x["eligible"], true);
        assert!(x["why"].as_str().unwrap().starts_with("up"), "{x}");
    }
    let total: f64 = e["families"][0]["answers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["probability"].as_f64().unwrap())
        .sum();
    assert!((total - 1.0).abs() < 1e-9, "{e}");

    // Disabled by hand: out, and the explanation says so; its share moves to eu-2.
    gtmd::ops::ctl::request(
        g.admin,
        "POST",
        "/overrides",
        None,
        Some(&serde_json::json!({ "target": "eu/eu-1", "action": "disable", "reason": "kernel update" })),
    )
    .unwrap();
    let (_, e) = explain(g.admin, "name=app.example.test.").await;
    let x = member(&e, "eu-1");
    assert_eq!(x["eligible"], false);
    assert!(close(&x["in_answer"], 0.0), "{x}");
    let why = x["why"].as_str().unwrap();
    assert!(
        why.contains("disabled by hand") && why.contains("kernel update"),
        "{why}"
    );
    assert!(close(&member(&e, "eu-2")["in_answer"], 0.9), "{e}");

    // A backend that fails: down, with the probe's error.
    u1.refuse();
    let down = wait_until(Duration::from_secs(5), || async {
        member(&explain(g.admin, "name=app.example.test").await.1, "us-1")["eligible"] == false
    })
    .await;
    assert!(down.is_some());
    let (_, e) = explain(g.admin, "name=app.example.test").await;
    let x = member(&e, "us-1");
    let why = x["why"].as_str().unwrap();
    assert!(why.starts_with("down") && why.contains("refused"), "{why}");
    assert!(close(&member(&e, "eu-2")["in_answer"], 1.0), "{e}");
    // DNS agrees: eu-2 only.
    assert_eq!(answer(g.dns, NAME, RecordType::A).await, ["192.0.2.12"]);

    // A name that is not bound to pools, and a bad client.
    let (code, body) = explain(g.admin, "name=www.example.test").await;
    assert_eq!(code, 404, "{body}");
    let (code, body) = explain(g.admin, "name=app.example.test&client=nowhere").await;
    assert_eq!(code, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_follows_the_clients_topology_rule_and_the_failover_order() {
    let (e1, mut e2, u1) = (
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    );
    let rules = "policy = \"topology\"\nmin_healthy = \"60%\"\n\
                 [[names.\"app.example.test.\".topology]]\nclients = [\"203.0.113.0/24\"]\norder = [\"us\"]";
    let g = start(&config([&e1, &e2], &u1, rules), &repo().join("zones")).await;

    // A client in the rule's subnet: us first, with scope /24.
    let (_, e) = explain(g.admin, "name=app.example.test&client=203.0.113.9").await;
    assert_eq!(e["topology"]["rule"], 0, "{e}");
    assert_eq!(e["topology"]["scope"], 24, "{e}");
    let order: Vec<&str> = e["order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["us", "eu"], "{e}");
    assert!(close(&member(&e, "us-1")["in_answer"], 1.0), "{e}");
    // Another client: no rule, the name's pools in order.
    let (_, e) = explain(g.admin, "name=app.example.test&client=198.51.100.0/24").await;
    assert_eq!(e["topology"]["rule"], serde_json::Value::Null, "{e}");
    assert_eq!(e["order"][0]["group"], "eu");
    assert_eq!(e["order"][0]["enough"], true);
    assert!(close(&member(&e, "eu-1")["in_answer"], 1.0), "{e}");
    assert!(close(&member(&e, "us-1")["in_answer"], 0.0), "{e}");

    // eu loses a member: below min_healthy = 60%, so that client moves to us.
    e2.refuse();
    let moved = wait_until(Duration::from_secs(5), || async {
        let (_, e) = explain(g.admin, "name=app.example.test&client=198.51.100.0/24").await;
        e["order"][0]["enough"] == false
    })
    .await;
    assert!(moved.is_some());
    let (_, e) = explain(g.admin, "name=app.example.test&client=198.51.100.0/24").await;
    assert_eq!(e["order"][0]["healthy"], 1, "{e}");
    assert!(close(&member(&e, "us-1")["in_answer"], 1.0), "{e}");
    assert!(close(&member(&e, "eu-1")["in_answer"], 0.0), "{e}");
    assert_eq!(
        member(&e, "eu-1")["eligible"],
        true,
        "healthy but not chosen: {e}"
    );
    // From 127.0.0.1 (no rule), DNS answers what the explanation says.
    assert_eq!(answer(g.dns, NAME, RecordType::A).await, ["192.0.2.21"]);
}
