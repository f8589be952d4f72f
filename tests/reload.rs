//! Live reload end to end: a configuration file and a zones directory that the tests rewrite,
//! real HTTP backends, and real DNS queries over UDP and TCP running while gtmd reloads.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

const NAME: &str = "app.example.test.";

/// The metrics registry is one per process: these tests run one at a time so that each sees
/// only its own gtmd's gauges.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A configuration file and its zones directory, rewritten by the test.
struct Files {
    _dir: tempfile::TempDir,
    config: PathBuf,
    zone: PathBuf,
}

impl Files {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("zones")).unwrap();
        let zone = dir.path().join("zones/example.test.zone");
        std::fs::copy(repo().join("zones/example.test.zone"), &zone).unwrap();
        Files {
            config: dir.path().join("gtmd.toml"),
            zone,
            _dir: dir,
        }
    }

    /// Writes the configuration: listeners on port 0, check `web` (every 100 ms, one result
    /// to fall or rise, plus `damping`), and pool `app` of `members` (name, address, backend)
    /// behind the name.
    fn write(&self, members: &[(&str, &str, &Backend)], damping: &str, extra: &str) {
        let ms: Vec<String> = members
            .iter()
            .map(|(n, a, b)| {
                format!(
                    "{{ name = \"{n}\", address = \"{a}\", probe_address = \"127.0.0.1\", probe_port = {} }}",
                    b.addr.port()
                )
            })
            .collect();
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nzones_dir = \"zones\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n\
             [checks.web]\ntype = \"http\"\ninterval = \"100ms\"\ntimeout = \"80ms\"\nfall = 1\nrise = 1\n{damping}\n\
             [pools.app]\ncheck = \"web\"\nmembers = [{}]\n\
             [names.\"{NAME}\"]\npools = [\"app\"]\nttl = 30\n{extra}",
            ms.join(", ")
        );
        write_atomically(&self.config, &text);
    }

    fn add_to_zone(&self, line: &str) {
        let mut z = std::fs::read_to_string(&self.zone).unwrap();
        z.push_str(line);
        z.push('\n');
        write_atomically(&self.zone, &z);
    }
}

/// Replaces `path` by rename, as editors and configuration tools do.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// POST /reload: the status code and body.
async fn reload(admin: SocketAddr) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(format!("http://{admin}/reload"))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn reload_ok(admin: SocketAddr) -> serde_json::Value {
    let (code, body) = reload(admin).await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn all_up(g: &Gtmd, n: usize) {
    let ok = wait_until(Duration::from_secs(5), || async {
        let s = status(g.admin).await;
        let m = s["members"].as_array().unwrap();
        m.len() == n && m.iter().all(|m| m["state"] == "up")
    })
    .await;
    assert!(
        ok.is_some(),
        "members not all up: {}",
        status(g.admin).await
    );
}

/// What the query loops saw.
#[derive(Default)]
struct Seen {
    answered: AtomicU64,
    wrong: std::sync::Mutex<Vec<String>>,
}

/// Checks one answer: `app` must give some of `allowed`, `www` exactly its zone address.
fn check(seen: &Seen, name: &str, m: Option<Message>, allowed: &[&str]) {
    let Some(m) = m else {
        seen.wrong
            .lock()
            .unwrap()
            .push(format!("{name}: no answer"));
        return;
    };
    let got = addrs(&m);
    let ok = m.metadata.response_code == ResponseCode::NoError
        && m.metadata.authoritative
        && if name == NAME {
            !got.is_empty() && got.iter().all(|a| allowed.contains(&a.as_str()))
        } else {
            got == ["192.0.2.80"]
        };
    if ok {
        seen.answered.fetch_add(1, Ordering::Relaxed);
    } else {
        let mut w = seen.wrong.lock().unwrap();
        if w.len() < 20 {
            w.push(format!("{name}: {:?} {got:?}", m.metadata.response_code));
        }
    }
}

/// Queries `app` and `www` back to back over UDP (one socket per loop) until `stop`.
async fn udp_loop(
    dns: SocketAddr,
    allowed: &'static [&'static str],
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut id = 0u16;
    while !stop.load(Ordering::Relaxed) {
        for name in [NAME, "www.example.test."] {
            id = id.wrapping_add(1);
            let reply = udp_ask(&sock, dns, query_msg(name, RecordType::A, true), id).await;
            check(&seen, name, reply, allowed);
        }
    }
}

/// The same over one TCP connection, pipelining both queries.
async fn tcp_loop(
    dns: SocketAddr,
    allowed: &'static [&'static str],
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let qs = [
            query_msg(NAME, RecordType::A, true),
            query_msg("www.example.test.", RecordType::A, true),
        ];
        let got = tokio::time::timeout(Duration::from_secs(2), tcp_many(dns, &qs))
            .await
            .unwrap_or_default();
        for (i, name) in [NAME, "www.example.test."].into_iter().enumerate() {
            check(&seen, name, got.get(i).cloned(), allowed);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_continuous_queries_lose_nothing() {
    let _serial = SERIAL.lock().await;
    static ALLOWED: &[&str] = &["192.0.2.11", "192.0.2.12", "192.0.2.13"];
    let (b1, b2, b3) = (
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    );
    let f = Files::new();
    let v1 = |f: &Files| {
        f.write(
            &[("a", "192.0.2.11", &b1), ("b", "192.0.2.12", &b2)],
            "",
            "",
        )
    };
    let v2 = |f: &Files| {
        f.write(
            &[
                ("a", "192.0.2.11", &b1),
                ("b", "192.0.2.12", &b2),
                ("c", "192.0.2.13", &b3),
            ],
            "",
            "",
        )
    };
    v1(&f);
    let g = start_file(&f.config).await;
    all_up(&g, 2).await;
    let a_since = member(g.admin, "a").await["since_secs"].as_f64().unwrap();
    let began = Instant::now();

    let (seen, stop) = (Arc::new(Seen::default()), Arc::new(AtomicBool::new(false)));
    let mut loops = Vec::new();
    for _ in 0..3 {
        loops.push(tokio::spawn(udp_loop(
            g.dns,
            ALLOWED,
            seen.clone(),
            stop.clone(),
        )));
    }
    loops.push(tokio::spawn(tcp_loop(
        g.dns,
        ALLOWED,
        seen.clone(),
        stop.clone(),
    )));

    let mut generation = 1;
    for round in 0..12 {
        if round % 2 == 0 {
            v2(&f)
        } else {
            v1(&f)
        }
        let r = reload_ok(g.admin).await;
        generation += 1;
        assert_eq!(r["config_generation"], generation, "{r}");
        let n = r["members_kept"].as_u64().unwrap();
        assert_eq!(n, 2, "a and b are kept every time: {r}");
        if round % 2 == 0 {
            assert_eq!(r["members_added"], 1, "{r}");
            // The reply comes once c has been probed and the new answers are published.
            let got: BTreeSet<String> = answer(g.dns, NAME, RecordType::A)
                .await
                .into_iter()
                .collect();
            assert!(got.contains("192.0.2.13"), "round {round}: {got:?}");
        } else {
            assert_eq!(r["members_removed"], 1, "{r}");
            assert_eq!(
                answer(g.dns, NAME, RecordType::A).await,
                ["192.0.2.11", "192.0.2.12"]
            );
        }
        // A rejected reload in the middle changes nothing.
        if round == 5 {
            std::fs::write(&f.config, "[server\n").unwrap();
            let (code, body) = reload(g.admin).await;
            assert_eq!(code, 422, "{body}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.await.unwrap();
    }
    let wrong = seen.wrong.lock().unwrap().clone();
    let answered = seen.answered.load(Ordering::Relaxed);
    println!(
        "{answered} answers checked during 12 reloads and 1 rejected reload, {} wrong",
        wrong.len()
    );
    assert!(wrong.is_empty(), "lost or wrong answers: {wrong:?}");
    assert!(
        answered >= 200,
        "too few queries to show anything: {answered}"
    );
    // a was never probed again from unknown: its state has held since before the reloads.
    let a = member(g.admin, "a").await;
    assert_eq!(a["state"], "up");
    let since = a["since_secs"].as_f64().unwrap();
    assert!(
        since >= a_since + began.elapsed().as_secs_f64() - 0.5,
        "a's state restarted during the reloads: {a}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_health_and_hold_downs_and_stops_removed_probes_at_once() {
    let _serial = SERIAL.lock().await;
    let (mut b1, mut b2, b3, b4) = (
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    );
    let f = Files::new();
    let damping = "min_down = \"4s\"";
    f.write(
        &[
            ("a", "192.0.2.11", &b1),
            ("b", "192.0.2.12", &b2),
            ("c", "192.0.2.13", &b3),
        ],
        damping,
        "",
    );
    let g = start_file(&f.config).await;
    all_up(&g, 3).await;
    // a flaps: down, then up but held down; b is down.
    b1.refuse();
    b2.refuse();
    let down = wait_until(Duration::from_secs(5), || async {
        let s = status(g.admin).await;
        let m = s["members"].as_array().unwrap().clone();
        m.iter().filter(|m| m["state"] == "down").count() == 2
    })
    .await;
    assert!(down.is_some(), "{}", status(g.admin).await);
    b1.restore().await;
    let held = wait_until(Duration::from_secs(5), || async {
        let a = member(g.admin, "a").await;
        a["state"] == "up" && a["held_down_secs"].as_f64().is_some_and(|s| s > 1.0)
    })
    .await;
    assert!(held.is_some(), "{}", member(g.admin, "a").await);
    assert_eq!(answer(g.dns, NAME, RecordType::A).await, ["192.0.2.13"]);
    let before_a = member(g.admin, "a").await;
    let before_b = member(g.admin, "b").await;

    // The reload drops c and adds d.
    f.write(
        &[
            ("a", "192.0.2.11", &b1),
            ("b", "192.0.2.12", &b2),
            ("d", "192.0.2.14", &b4),
        ],
        damping,
        "",
    );
    let r = reload_ok(g.admin).await;
    assert_eq!(
        (
            r["members_kept"].as_u64(),
            r["members_added"].as_u64(),
            r["members_removed"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{r}"
    );
    let c_hits = b3.hits.load(Ordering::SeqCst);
    let a = member(g.admin, "a").await;
    let b = member(g.admin, "b").await;
    assert_eq!(a["state"], "up", "{a}");
    assert_eq!(a["flaps"], before_a["flaps"], "{a}");
    let held = a["held_down_secs"].as_f64().unwrap_or(0.0);
    assert!(
        held > 0.5 && held <= before_a["held_down_secs"].as_f64().unwrap(),
        "the hold-down went on: {a}"
    );
    assert!(a["probes"].as_u64() >= before_a["probes"].as_u64(), "{a}");
    assert_eq!(b["state"], "down", "b stays down, not unknown: {b}");
    assert_eq!(b["last_error"], before_b["last_error"]);
    // d was probed before the reply; a is still held, b down: only d answers.
    assert_eq!(answer(g.dns, NAME, RecordType::A).await, ["192.0.2.14"]);
    // c's probe loop is gone: at most a probe already under way reaches its backend.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let more = b3.hits.load(Ordering::SeqCst) - c_hits;
    assert!(more <= 1, "c was probed {more} times after its removal");
    // The hold-down ends on its own schedule, and b comes back when its backend does.
    b2.restore().await;
    let back = wait_until(Duration::from_secs(8), || async {
        answer(g.dns, NAME, RecordType::A).await == ["192.0.2.11", "192.0.2.12", "192.0.2.14"]
    })
    .await;
    assert!(back.is_some(), "{}", status(g.admin).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_reload_changes_nothing_and_says_where() {
    let _serial = SERIAL.lock().await;
    let b1 = Backend::start().await;
    let f = Files::new();
    f.write(&[("a", "192.0.2.11", &b1)], "", "");
    let g = start_file(&f.config).await;
    all_up(&g, 1).await;
    let before = status(g.admin).await;

    // A bad value: the file, the line and the key.
    let good = std::fs::read_to_string(&f.config).unwrap();
    let bad = good.replace("interval = \"100ms\"", "interval = \"often\"");
    let line = bad.lines().position(|l| l.contains("often")).unwrap() + 1;
    write_atomically(&f.config, &bad);
    let (code, body) = reload(g.admin).await;
    assert_eq!(code, 422, "{body}");
    let want = format!("{}:{line}: checks.web.interval", f.config.display());
    assert!(body.contains(&want), "{body} should contain {want}");
    assert_eq!(
        metric(g.admin, "gtmd_config_last_reload_successful").await,
        Some(0.0)
    );
    assert!(metric(g.admin, "gtmd_config_reloads_total{result=\"failed\"}").await >= Some(1.0));

    // A bad zone file: its path and line.
    write_atomically(&f.config, &good);
    f.add_to_zone("broken IN A 192.0.2.300");
    let zline = std::fs::read_to_string(&f.zone).unwrap().lines().count();
    let (code, body) = reload(g.admin).await;
    assert_eq!(code, 422, "{body}");
    let want = format!("{}:{zline}", f.zone.display());
    assert!(body.contains(&want), "{body} should contain {want}");

    // Nothing changed: the same configuration, members and answers.
    let after = status(g.admin).await;
    assert_eq!(after["members"].as_array().unwrap().len(), 1);
    assert_eq!(after["config_generation"], 1, "{after}");
    let since = |s: &serde_json::Value| s["members"][0]["since_secs"].as_f64().unwrap();
    assert!(since(&after) >= since(&before), "a's state restarted");
    assert_eq!(metric(g.admin, "gtmd_config_generation").await, Some(1.0));
    assert_eq!(answer(g.dns, NAME, RecordType::A).await, ["192.0.2.11"]);
    assert!(answer(g.dns, "broken.example.test.", RecordType::A)
        .await
        .is_empty());

    // Fixed: zone changes and a changed listen address (applied at the next start only).
    let z = std::fs::read_to_string(&f.zone)
        .unwrap()
        .replace("192.0.2.300", "192.0.2.33");
    write_atomically(&f.zone, &z);
    write_atomically(
        &f.config,
        &good
            .replace(
                "listen = [\"127.0.0.1:0\"]",
                "listen = [\"127.0.0.1:53535\"]",
            )
            .replace(
                "[admin]\n",
                "[admin]\nmax_time = \"5s\"\nheader_timeout = \"2s\"\nmax_per_client = 8\n",
            ),
    );
    let r = reload_ok(g.admin).await;
    assert_eq!(
        r["needs_restart"],
        serde_json::json!([
            "server.listen",
            "admin.max_time",
            "admin.header_timeout",
            "admin.max_per_client"
        ]),
        "{r}"
    );
    assert_eq!(
        answer(g.dns, "broken.example.test.", RecordType::A).await,
        ["192.0.2.33"]
    );
    assert_eq!(
        metric(g.admin, "gtmd_config_last_reload_successful").await,
        Some(1.0)
    );
    assert_eq!(metric(g.admin, "gtmd_config_generation").await, Some(2.0));
}

/// Kills the child when the test ends, however it ends.
use common::KillOnDrop as Child;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_ctl_reload_the_running_binary() {
    use std::process::{Command, Stdio};
    let _serial = SERIAL.lock().await;
    let b1 = Backend::start().await;
    let f = Files::new();
    f.write(&[("a", "192.0.2.11", &b1)], "", "");
    let (dns, admin) = (free_addr(), free_addr());
    let text = std::fs::read_to_string(&f.config)
        .unwrap()
        .replace(
            "listen = [\"127.0.0.1:0\"]",
            &format!("listen = [\"{dns}\"]"),
        )
        .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{admin}\""));
    write_atomically(&f.config, &text);
    let child = Child(
        Command::new(env!("CARGO_BIN_EXE_gtmd"))
            .args(["--config", f.config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ready = wait_until(Duration::from_secs(10), || async {
        gtmd::ops::ctl::request(admin, "GET", "/readyz", None, None).is_ok()
    })
    .await;
    assert!(ready.is_some(), "gtmd did not become ready");
    let pid = child.0.id().to_string();

    // SIGHUP reads the zone again.
    f.add_to_zone("hup IN A 192.0.2.66");
    let hup = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(hup.success());
    let seen = wait_until(Duration::from_secs(5), || async {
        answer(dns, "hup.example.test.", RecordType::A).await == ["192.0.2.66"]
    })
    .await;
    assert!(seen.is_some(), "the new record did not appear after SIGHUP");

    // `gtmd ctl reload` with a broken file: exit 1, the file and line, nothing changed.
    let ctl = || {
        Command::new(env!("CARGO_BIN_EXE_gtmd"))
            .args(["ctl", "--admin", &admin.to_string(), "reload"])
            .output()
            .unwrap()
    };
    write_atomically(&f.config, &text.replace("ttl = 30", "ttl = \"long\""));
    let out = ctl();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let line = text.lines().position(|l| l == "ttl = 30").unwrap() + 1;
    assert!(
        err.contains(&format!("{}:{line}", f.config.display())),
        "{err}"
    );
    assert_eq!(answer(dns, NAME, RecordType::A).await, ["192.0.2.11"]);

    // Fixed: exit 0 and what changed.
    write_atomically(&f.config, &text);
    let out = ctl();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["config_generation"], 3, "{r}");
    assert_eq!(r["members_kept"], 1, "{r}");
    // And the explain view from the command line.
    let out = Command::new(env!("CARGO_BIN_EXE_gtmd"))
        .args([
            "ctl",
            "--admin",
            &admin.to_string(),
            "explain",
            "app.example.test",
            "--client",
            "192.0.2.1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["client"], "192.0.2.1", "{e}");
    assert_eq!(e["members"][0]["in_answer"], 1.0, "{e}");
}
