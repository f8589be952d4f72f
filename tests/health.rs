//! Health checking end to end: real HTTP and TCP backends that the tests break and restore,
//! and real DNS queries to gtmd watching the answers follow.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use hickory_proto::rr::RecordType;

const NAME: &str = "app.example.test.";

/// A config with one HTTP pool of `backends` for app.example.test. (member i at 192.0.2.(10+i)).
fn http_config(
    backends: &[&Backend],
    interval: &str,
    timeout: &str,
    fall: u32,
    rise: u32,
) -> String {
    let members: Vec<String> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            format!(
                "{{ address = \"192.0.2.{}\", name = \"m{i}\", probe_address = \"127.0.0.1\", probe_port = {} }}",
                10 + i,
                b.addr.port()
            )
        })
        .collect();
    format!(
        "[checks.web]\ntype = \"http\"\npath = \"/health\"\ninterval = \"{interval}\"\ntimeout = \"{timeout}\"\n\
         fall = {fall}\nrise = {rise}\n[pools.web]\ncheck = \"web\"\nmembers = [{}]\n\
         [names.\"{NAME}\"]\npools = [\"web\"]\nttl = 5\n",
        members.join(", ")
    )
}

fn zones() -> std::path::PathBuf {
    repo().join("zones")
}

async fn probes_of(g: &Gtmd, name: &str) -> u64 {
    member(g.admin, name).await["probes"].as_u64().unwrap()
}

/// Waits until the member's status satisfies `f`; panics after `limit`.
async fn until_member(
    g: &Gtmd,
    name: &str,
    limit: Duration,
    f: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let m = member(g.admin, name).await;
        if f(&m) {
            return m;
        }
        assert!(
            start.elapsed() < limit,
            "member {name} never reached the expected state: {m}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_goes_down_after_exactly_fall_failures_and_returns_after_rise_successes() {
    let a = Backend::start().await;
    let b = Backend::start().await;
    let g = start(&http_config(&[&a, &b], "300ms", "200ms", 3, 2), &zones()).await;
    assert_eq!(
        answer(g.dns, NAME, RecordType::A).await,
        vec!["192.0.2.10", "192.0.2.11"]
    );

    a.set(Mode::Error);
    let first = until_member(&g, "m0", Duration::from_secs(5), |m| m["last_ok"] == false).await;
    let p1 = first["probes"].as_u64().unwrap();
    // Two failures: suspect, still up and still answered.
    let m = until_member(&g, "m0", Duration::from_secs(5), |m| {
        m["streak"] == 2 || m["state"] == "down"
    })
    .await;
    assert_eq!(m["state"], "up", "went down before the third failure: {m}");
    assert_eq!(m["suspect"], true);
    assert!(answer(g.dns, NAME, RecordType::A)
        .await
        .contains(&"192.0.2.10".to_string()));
    let down = until_member(&g, "m0", Duration::from_secs(5), |m| m["state"] == "down").await;
    assert_eq!(
        down["probes"].as_u64().unwrap() - p1,
        2,
        "down on the 3rd failure: {down}"
    );
    assert_eq!(down["last_error"], "HTTP status 500");
    assert_eq!(answer(g.dns, NAME, RecordType::A).await, vec!["192.0.2.11"]);

    a.set(Mode::Ok);
    let first = until_member(&g, "m0", Duration::from_secs(5), |m| m["last_ok"] == true).await;
    assert_eq!(
        first["state"], "down",
        "one success must not bring it back (rise = 2)"
    );
    assert_eq!(answer(g.dns, NAME, RecordType::A).await, vec!["192.0.2.11"]);
    let p1 = first["probes"].as_u64().unwrap();
    let up = until_member(&g, "m0", Duration::from_secs(5), |m| m["state"] == "up").await;
    assert_eq!(
        up["probes"].as_u64().unwrap() - p1,
        1,
        "up on the 2nd success: {up}"
    );
    assert_eq!(
        answer(g.dns, NAME, RecordType::A).await,
        vec!["192.0.2.10", "192.0.2.11"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_backend_is_caught_by_the_timeout_without_delaying_other_probes() {
    let a = Backend::start().await;
    let b = Backend::start().await;
    let g = start(&http_config(&[&a, &b], "300ms", "150ms", 2, 1), &zones()).await;
    a.set(Mode::Hang);
    let down = until_member(&g, "m0", Duration::from_secs(5), |m| m["state"] == "down").await;
    assert!(
        down["last_error"].as_str().unwrap().contains("timed out"),
        "{down}"
    );
    assert_eq!(answer(g.dns, NAME, RecordType::A).await, vec!["192.0.2.11"]);
    // While m0 hangs, m1 keeps its own schedule: ~3 probes a second, not one per timeout.
    let before = probes_of(&g, "m1").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = probes_of(&g, "m1").await;
    assert!(
        after - before >= 3,
        "m1 was probed {} times in 1.5 s",
        after - before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_backend_inside_the_thresholds_never_changes_the_answer() {
    let a = Backend::start().await;
    let b = Backend::start().await;
    let g = start(&http_config(&[&a, &b], "200ms", "100ms", 3, 2), &zones()).await;
    a.set(Mode::Flap);
    let start_probes = probes_of(&g, "m0").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    // Watch at least 9 flapping probes (3 full fail-fail-ok cycles), querying all the while.
    while probes_of(&g, "m0").await < start_probes + 9 {
        assert!(Instant::now() < deadline, "probes stalled");
        assert_eq!(
            answer(g.dns, NAME, RecordType::A).await,
            vec!["192.0.2.10", "192.0.2.11"]
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let m = member(g.admin, "m0").await;
    assert_eq!(m["state"], "up", "{m}");
    assert!(a.hits.load(std::sync::atomic::Ordering::SeqCst) >= 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_members_down_answers_every_member_and_says_fail_open() {
    let mut a = Backend::start().await;
    let mut b = Backend::start().await;
    let g = start(&http_config(&[&a, &b], "200ms", "100ms", 1, 1), &zones()).await;
    a.refuse();
    b.refuse();
    until_member(&g, "m0", Duration::from_secs(5), |m| m["state"] == "down").await;
    until_member(&g, "m1", Duration::from_secs(5), |m| m["state"] == "down").await;
    assert_eq!(
        answer(g.dns, NAME, RecordType::A).await,
        vec!["192.0.2.10", "192.0.2.11"]
    );
    let s = status(g.admin).await;
    assert_eq!(s["names"][0]["fail_open"], true, "{s}");
    b.restore().await;
    until_member(&g, "m1", Duration::from_secs(5), |m| m["state"] == "up").await;
    assert_eq!(answer(g.dns, NAME, RecordType::A).await, vec!["192.0.2.11"]);
    assert_eq!(status(g.admin).await["names"][0]["fail_open"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_check_follows_a_listener_that_goes_away_and_comes_back() {
    let mut a = Backend::start().await;
    let b = Backend::start().await;
    let config = format!(
        "[checks.t]\ntype = \"tcp\"\nport = 1\ninterval = \"200ms\"\ntimeout = \"100ms\"\nfall = 2\nrise = 2\n\
         [pools.p]\ncheck = \"t\"\nmembers = [\n\
         {{ address = \"2001:db8::1\", name = \"v6a\", probe_address = \"127.0.0.1\", probe_port = {} }},\n\
         {{ address = \"2001:db8::2\", name = \"v6b\", probe_address = \"127.0.0.1\", probe_port = {} }},\n]\n\
         [names.\"{NAME}\"]\npools = [\"p\"]\n",
        a.addr.port(),
        b.addr.port()
    );
    let g = start(&config, &zones()).await;
    assert_eq!(
        answer(g.dns, NAME, RecordType::AAAA).await,
        vec!["2001:db8::1", "2001:db8::2"]
    );
    // No IPv4 member: A is NODATA (NOERROR, SOA in authority), never NXDOMAIN.
    let m = udp(g.dns, &query_msg(NAME, RecordType::A, true)).await;
    assert_eq!(
        (m.response_code, m.answers.len(), m.authoritative),
        (hickory_proto::op::ResponseCode::NoError, 0, true)
    );
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    a.refuse();
    until_member(&g, "v6a", Duration::from_secs(5), |m| m["state"] == "down").await;
    assert_eq!(
        answer(g.dns, NAME, RecordType::AAAA).await,
        vec!["2001:db8::2"]
    );
    a.restore().await;
    until_member(&g, "v6a", Duration::from_secs(5), |m| m["state"] == "up").await;
    assert_eq!(
        answer(g.dns, NAME, RecordType::AAAA).await,
        vec!["2001:db8::1", "2001:db8::2"]
    );
}

/// Waits until 192.0.2.10 has left the answer; returns how long that took from `t0`.
async fn time_until_m0_leaves(g: &Gtmd, t0: Instant, what: &str) -> Duration {
    wait_until(Duration::from_secs(10), || async {
        !answer(g.dns, NAME, RecordType::A)
            .await
            .contains(&"192.0.2.10".to_string())
    })
    .await
    .unwrap_or_else(|| panic!("the {what} member never left the answer"));
    let took = t0.elapsed();
    eprintln!("failover: {what} backend left the answer after {took:?}");
    took
}

/// The detection bound of the issue: interval 500 ms, timeout 300 ms, fall 3. A dead
/// backend leaves the answer within interval × fall (+10% jitter) + timeout; the margin
/// allows for a loaded machine. The measured times are printed (run with --nocapture).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_leaves_the_answer_within_the_detection_bound() {
    let mut a = Backend::start().await;
    let b = Backend::start().await;
    let g = start(&http_config(&[&a, &b], "500ms", "300ms", 3, 2), &zones()).await;
    let bound = Duration::from_millis(500 * 3 * 11 / 10 + 300) + Duration::from_millis(1500);
    let t0 = Instant::now();
    a.refuse();
    let took = time_until_m0_leaves(&g, t0, "refused").await;
    assert!(took < bound, "took {took:?}");
    // The same bound holds for a backend that accepts and never answers.
    a.restore().await;
    until_member(&g, "m0", Duration::from_secs(10), |m| m["state"] == "up").await;
    let t0 = Instant::now();
    a.set(Mode::Hang);
    let took = time_until_m0_leaves(&g, t0, "hanging").await;
    assert!(took < bound, "took {took:?}");
}

/// With `fast` (a `fast_interval`) or without: backend m0's probes in 5 healthy seconds, then
/// the time from refusing it until it leaves the answer, and from restoring it until it is back.
async fn detection(fast: Option<&str>) -> (u64, Duration, Duration) {
    let mut a = Backend::start().await;
    let b = Backend::start().await;
    let mut config = http_config(&[&a, &b], "1s", "300ms", 3, 2);
    if let Some(f) = fast {
        config = config.replace("fall = 3", &format!("fall = 3\nfast_interval = \"{f}\""));
    }
    let g = start(&config, &zones()).await;
    let both = vec!["192.0.2.10", "192.0.2.11"];
    assert_eq!(answer(g.dns, NAME, RecordType::A).await, both);
    let before = a.hits.load(std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let steady = a.hits.load(std::sync::atomic::Ordering::SeqCst) - before;
    a.refuse();
    let down = wait_until(Duration::from_secs(10), || async {
        answer(g.dns, NAME, RecordType::A).await == ["192.0.2.11"]
    })
    .await
    .expect("m0 leaves the answer");
    a.restore().await;
    let up = wait_until(Duration::from_secs(10), || async {
        answer(g.dns, NAME, RecordType::A).await == both
    })
    .await
    .expect("m0 returns");
    (steady, down, up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_interval_confirms_a_failure_sooner_at_the_same_steady_probe_rate() {
    // interval 1 s, timeout 300 ms, fall 3, rise 2.
    let (slow_steady, slow_down, slow_up) = detection(None).await;
    let (fast_steady, fast_down, fast_up) = detection(Some("100ms")).await;
    println!(
        "without fast_interval: {slow_steady} probes in 5 s, down after {slow_down:?}, up after {slow_up:?}\n\
         fast_interval 100ms: {fast_steady} probes in 5 s, down after {fast_down:?}, up after {fast_up:?}"
    );
    // The steady rate is the interval's either way (4 to 6 probes in 5 s, jitter ±10%; one
    // more or less for where the window falls).
    for n in [slow_steady, fast_steady] {
        assert!((3..=7).contains(&n), "{n} probes in 5 s at a 1 s interval");
    }
    // Without it, three failures need two intervals after the first (at least 1.8 s with
    // jitter); with it, the two confirmations take 200 ms after the first failure, which
    // comes within one interval (at most 1.1 s).
    assert!(slow_down >= Duration::from_millis(1800), "{slow_down:?}");
    assert!(fast_down < Duration::from_millis(1800), "{fast_down:?}");
}

/// m0 (192.0.2.10) is checked by HTTP at `web` and by TCP at `port`, with `require`; m1
/// (192.0.2.11), in another pool, by HTTP at `other`. Both pools answer (policy all).
fn two_checks_config(web: &Backend, port: &Backend, other: &Backend, require: &str) -> String {
    format!(
        "[checks.web]\ntype = \"http\"\nport = {}\ninterval = \"100ms\"\ntimeout = \"80ms\"\nfall = 1\nrise = 1\n\
         [checks.port]\ntype = \"tcp\"\nport = {}\ninterval = \"100ms\"\ntimeout = \"80ms\"\nfall = 1\nrise = 1\n\
         [pools.multi]\nchecks = [\"web\", \"port\"]\nrequire = {require}\n\
         members = [{{ address = \"192.0.2.10\", name = \"m0\", probe_address = \"127.0.0.1\" }}]\n\
         [pools.other]\ncheck = \"web\"\n\
         members = [{{ address = \"192.0.2.11\", name = \"m1\", probe_address = \"127.0.0.1\", probe_port = {} }}]\n\
         [names.\"{NAME}\"]\npools = [\"multi\", \"other\"]\npolicy = \"all\"\n",
        web.addr.port(),
        port.addr.port(),
        other.addr.port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_two_checks_needs_both_and_says_which_one_decided() {
    let (web, mut port, other) = (
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    );
    let g = start(&two_checks_config(&web, &port, &other, "\"all\""), &zones()).await;
    let both = vec!["192.0.2.10", "192.0.2.11"];
    assert_eq!(answer(g.dns, NAME, RecordType::A).await, both);
    // The TCP check fails, the HTTP one still passes: m0 leaves the answer.
    port.refuse();
    let gone = wait_until(Duration::from_secs(5), || async {
        answer(g.dns, NAME, RecordType::A).await == ["192.0.2.11"]
    })
    .await;
    assert!(gone.is_some(), "m0 stayed in the answer");
    let m = member(g.admin, "m0").await;
    assert_eq!(m["state"], "down", "{m}");
    assert_eq!(m["require"], 2, "{m}");
    let checks = m["checks"].as_array().unwrap();
    let of = |name: &str| checks.iter().find(|c| c["check"] == name).unwrap().clone();
    assert_eq!(
        (of("port")["state"].clone(), of("port")["decided"].clone()),
        ("down".into(), true.into()),
        "{m}"
    );
    assert_eq!(
        (of("web")["state"].clone(), of("web")["decided"].clone()),
        ("up".into(), false.into()),
        "{m}"
    );
    assert!(
        m["last_error"].as_str().unwrap().starts_with("port: "),
        "{m}"
    );
    let e = reqwest::get(format!("http://{}/explain?name={NAME}", g.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        e.contains("checks: web up, port down; 2 of 2 must be up: port decided"),
        "{e}"
    );
    port.restore().await;
    let back = wait_until(Duration::from_secs(5), || async {
        answer(g.dns, NAME, RecordType::A).await == both
    })
    .await;
    assert!(back.is_some(), "m0 did not return");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_require_any_one_passing_check_keeps_a_member_in() {
    let (mut web, mut port, other) = (
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    );
    let g = start(&two_checks_config(&web, &port, &other, "\"any\""), &zones()).await;
    let both = vec!["192.0.2.10", "192.0.2.11"];
    port.refuse();
    until_member(&g, "m0", Duration::from_secs(5), |m| {
        m["checks"][1]["state"] == "down"
    })
    .await;
    assert_eq!(answer(g.dns, NAME, RecordType::A).await, both);
    // Both fail: m0 is out.
    web.refuse();
    let gone = wait_until(Duration::from_secs(5), || async {
        answer(g.dns, NAME, RecordType::A).await == ["192.0.2.11"]
    })
    .await;
    assert!(
        gone.is_some(),
        "m0 stayed in the answer with both checks failing"
    );
    web.restore().await;
    port.restore().await;
}
