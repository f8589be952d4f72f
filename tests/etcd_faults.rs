//! The cluster under etcd faults, in a network lab (tests/common/lab.rs): three etcd members
//! and the gtmd instances each in a network namespace of its own, on private addresses that
//! exist only inside the lab, cut apart with nftables. Needs root, `ip`, `nft`, etcd,
//! etcdctl, curl and dig.

#![cfg(feature = "cluster")]

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::lab::Lab;
use common::{repo, KillOnDrop};

const NAME: &str = "app.example.test.";
/// The lease TTL of the instances in these tests.
const TTL: Duration = Duration::from_secs(3);

/// A gtmd instance in a lab host: DNS on 127.0.0.1:5353 and the API on 127.0.0.1:8053,
/// inside its namespace. Prints the end of its log if the test fails.
struct Node {
    host: String,
    log: std::path::PathBuf,
    child: Option<KillOnDrop>,
}

impl Node {
    /// SIGTERM, then waits for the exit (the instance says goodbye to etcd).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .arg(c.id().to_string())
                .status();
            let _ = c.0.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("--- {} ({}) ---", self.host, self.log.display());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// Starts gtmd with cluster id `id` in host `host`, on the etcd members `endpoints`. Its two
/// members (m0, m1) are probed at its own API port, so they stay up.
fn spawn_gtmd(lab: &Lab, dir: &Path, host: &str, id: &str, endpoints: &[String]) -> Node {
    let cfg = format!(
        "[cluster]\nendpoints = {endpoints:?}\nname = \"t\"\nid = \"{id}\"\nlease_ttl = \"{}s\"\n\
         [server]\nlisten = [\"127.0.0.1:5353\"]\nzones_dir = {zones:?}\n\
         [admin]\nlisten = \"127.0.0.1:8053\"\n\
         [checks.api]\ntype = \"tcp\"\nport = 8053\ninterval = \"200ms\"\ntimeout = \"150ms\"\nfall = 3\nrise = 2\n\
         [pools.web]\ncheck = \"api\"\nmembers = [\
         {{ address = \"192.0.2.10\", name = \"m0\", probe_address = \"127.0.0.1\" }}, \
         {{ address = \"192.0.2.11\", name = \"m1\", probe_address = \"127.0.0.1\" }}]\n\
         [names.\"{NAME}\"]\npools = [\"web\"]\nttl = 5\n",
        TTL.as_secs(),
        zones = repo().join("zones").display().to_string(),
    );
    let config = dir.join(format!("{host}.toml"));
    std::fs::write(&config, cfg).unwrap();
    let log = dir.join(format!("{host}.log"));
    let child = lab
        .command(host, env!("CARGO_BIN_EXE_gtmd"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Node {
        host: host.to_string(),
        log,
        child: Some(KillOnDrop(child)),
    }
}

/// The /status of the instance in `host`, or None when it does not answer.
fn status(lab: &Lab, host: &str) -> Option<serde_json::Value> {
    let body = lab.curl(host, &["http://127.0.0.1:8053/status"])?;
    serde_json::from_str(&body).ok()
}

/// The A records the instance in `host` answers for NAME, sorted.
fn answers(lab: &Lab, host: &str) -> Vec<String> {
    let out = lab.run_in(
        host,
        "dig",
        &[
            "@127.0.0.1",
            "-p",
            "5353",
            "+short",
            "+time=1",
            "+tries=1",
            NAME,
            "A",
        ],
    );
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// Posts an override through the instance in `host`: its HTTP status and body.
fn post_override(lab: &Lab, host: &str, body: &serde_json::Value) -> (u16, String) {
    let body = body.to_string();
    let out = lab.run_in(
        host,
        "curl",
        &[
            "-s",
            "--max-time",
            "5",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            &body,
            "http://127.0.0.1:8053/overrides",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (reply, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), reply.to_string())
}

/// Polls `f` every 50 ms until it holds or `limit` passes: the time it took.
fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Waits until every instance of `hosts` is connected and sees `n` live instances.
fn wait_joined(lab: &Lab, hosts: &[&str], n: usize, limit: Duration) {
    let ok = wait_for(limit, || {
        hosts.iter().all(|h| {
            status(lab, h).is_some_and(|s| {
                s["cluster"]["link"] == "connected"
                    && s["cluster"]["instances"].as_array().map(Vec::len) == Some(n)
            })
        })
    });
    assert!(
        ok.is_some(),
        "{hosts:?} did not all join with {n} instances"
    );
}

/// The endpoint of etcd's leader, as `etcdctl endpoint status` from `from` says.
fn etcd_leader(lab: &Lab, from: &str, endpoints: &[String]) -> Option<String> {
    let out = lab.etcdctl(from, endpoints, &["endpoint", "status", "-w", "json"])?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    v.as_array()?
        .iter()
        .find(|e| {
            let s = &e["Status"];
            s["leader"].as_u64().is_some() && s["header"]["member_id"] == s["leader"]
        })
        .and_then(|e| e["Endpoint"].as_str().map(str::to_string))
}

/// The etcd members the sessions of the instance in `host` were on, oldest first (from its
/// log).
fn sessions(dir: &Path, host: &str) -> Vec<String> {
    let log = std::fs::read_to_string(dir.join(format!("{host}.log"))).unwrap_or_default();
    log.lines()
        .filter_map(|l| l.split_once("member=").map(|(_, m)| m.trim().to_string()))
        .collect()
}

/// What the instances did while etcd's leader was cut off, polled every ~100 ms.
#[derive(Debug, Default)]
struct Seen {
    /// Per instance: whether it ever showed a link other than `connected`.
    left: Vec<bool>,
    /// Per instance: the last time since the cut it showed a problem with etcd.
    troubled_until: Vec<Option<Duration>>,
}

/// Polls the link and problem of every instance for `window` after `cut`.
fn observe(lab: &Lab, hosts: &[&str], cut: Instant, window: Duration) -> Seen {
    let mut seen = Seen {
        left: vec![false; hosts.len()],
        troubled_until: vec![None; hosts.len()],
    };
    while cut.elapsed() < window {
        for (i, h) in hosts.iter().enumerate() {
            let s = status(lab, h).unwrap_or_default();
            let c = &s["cluster"];
            if c["link"] != "connected" {
                seen.left[i] = true;
            }
            if c["link"] != "connected" || !c["problem"].is_null() {
                seen.troubled_until[i] = Some(cut.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    seen
}

#[test]
fn an_etcd_leader_cut_from_its_followers_keeps_every_instance_connected_and_writable() {
    let dir = tempfile::tempdir().unwrap();
    let members = ["e0", "e1", "e2"];
    let gtmds = ["g0", "g1", "g2"];
    let mut lab = Lab::new(&["e0", "e1", "e2", "g0", "g1", "g2", "ctl"]);
    let endpoints: Vec<String> = members.iter().map(|m| lab.etcd_url(m)).collect();
    let _etcd = lab.etcd(&members, dir.path());
    let leader = wait_for(Duration::from_secs(20), || {
        etcd_leader(&lab, "ctl", &endpoints).is_some()
    });
    assert!(leader.is_some(), "etcd elected no leader");
    let _nodes: Vec<Node> = gtmds
        .iter()
        .enumerate()
        .map(|(i, h)| spawn_gtmd(&lab, dir.path(), h, &format!("i{i}"), &endpoints))
        .collect();
    wait_joined(&lab, &gtmds, 3, Duration::from_secs(30));
    let both = ["192.0.2.10", "192.0.2.11"];
    let ok = wait_for(Duration::from_secs(10), || {
        gtmds.iter().all(|h| answers(&lab, h) == both)
    });
    assert!(ok.is_some(), "the instances do not answer both members");

    // g0 is moved onto the leader first (cut from the followers until its session is there),
    // so that at least one instance is on the member about to be cut off.
    let old = etcd_leader(&lab, "ctl", &endpoints).expect("etcd has a leader");
    let old_host = members[endpoints.iter().position(|e| *e == old).unwrap()];
    for m in members.iter().filter(|m| **m != old_host) {
        lab.cut("g0", m);
    }
    let moved = wait_for(Duration::from_secs(10), || {
        sessions(dir.path(), "g0").last() == Some(&old)
    });
    eprintln!("g0 cut from the followers: its session was on the leader after {moved:?}");
    lab.heal();

    // The leader is cut from both followers; the instances still reach all three members.
    for m in members.iter().filter(|m| **m != old_host) {
        lab.cut(old_host, m);
    }
    let cut = Instant::now();
    let followers: Vec<String> = endpoints.iter().filter(|e| **e != old).cloned().collect();
    let (elected, seen) = std::thread::scope(|s| {
        let seen = s.spawn(|| observe(&lab, &gtmds, cut, Duration::from_secs(8)));
        let elected = wait_for(Duration::from_secs(10), || {
            etcd_leader(&lab, "ctl", &followers).is_some()
        });
        (elected, seen.join().unwrap())
    });
    eprintln!("leader {old_host} cut off; the followers elected a leader after {elected:?}");
    eprintln!("after the cut: {seen:?}");
    for h in &gtmds {
        eprintln!("{h}'s sessions were on {:?}", sessions(dir.path(), h));
    }
    assert!(elected.is_some(), "the followers elected no leader");

    // An override written through each instance during the cut is accepted, and reaches all.
    let mut refused = 0;
    for h in &gtmds {
        let body = serde_json::json!({
            "target": "web/m0", "action": "disable", "reason": format!("written through {h}")
        });
        let accepted = wait_for(Duration::from_secs(10), || {
            let (code, reply) = post_override(&lab, h, &body);
            if code != 200 {
                refused += 1;
                eprintln!("{h} refused an override: {code} {reply}");
            }
            code == 200
        });
        assert!(accepted.is_some(), "{h} never accepted the override");
        let reached = wait_for(Duration::from_secs(5), || {
            gtmds.iter().all(|g| {
                status(&lab, g).is_some_and(|s| {
                    s["overrides"].as_array().is_some_and(|l| {
                        l.iter()
                            .any(|o| o["reason"] == format!("written through {h}"))
                    })
                })
            })
        });
        eprintln!("the override through {h} reached every instance after {reached:?}");
        assert!(
            reached.is_some(),
            "the override through {h} did not reach every instance"
        );
    }
    eprintln!("override writes refused during the cut: {refused}");
    assert!(
        !seen.left.iter().any(|&l| l),
        "an instance left the cluster while two etcd members and a leader were reachable: {seen:?}"
    );
    assert_eq!(refused, 0, "overrides were refused while etcd had a leader");
    let ok = wait_for(Duration::from_secs(5), || {
        gtmds.iter().all(|h| answers(&lab, h) == ["192.0.2.11"])
    });
    assert!(
        ok.is_some(),
        "the override did not take m0 out of every answer"
    );
    lab.heal();
}

/// The `instances/i0` key as etcd holds it: its value, lease and revision of last change.
fn registration(lab: &Lab, endpoints: &[String]) -> Option<(String, i64, i64)> {
    let out = lab.etcdctl(
        "ctl",
        endpoints,
        &["get", "/gtmd/t/instances/i0", "-w", "json"],
    )?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    let kv = v["kvs"].as_array()?.first()?.clone();
    let value = kv["value"].as_str()?.to_string();
    Some((value, kv["lease"].as_i64()?, kv["mod_revision"].as_i64()?))
}

#[test]
fn a_second_instance_with_the_same_id_is_refused_while_the_first_lives_and_joins_after() {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::new(&["e0", "g0", "g1", "ctl"]);
    let endpoints = vec![lab.etcd_url("e0")];
    let _etcd = lab.etcd(&["e0"], dir.path());
    let up = wait_for(Duration::from_secs(20), || {
        etcd_leader(&lab, "ctl", &endpoints).is_some()
    });
    assert!(up.is_some(), "etcd elected no leader");
    let mut first = spawn_gtmd(&lab, dir.path(), "g0", "i0", &endpoints);
    wait_joined(&lab, &["g0"], 1, Duration::from_secs(20));
    let both = ["192.0.2.10", "192.0.2.11"];
    let ok = wait_for(Duration::from_secs(10), || answers(&lab, "g0") == both);
    assert!(
        ok.is_some(),
        "the first instance does not answer both members"
    );
    let before = registration(&lab, &endpoints).expect("the first instance is registered");

    // The duplicate starts: refused, with why, in its /status and its log.
    let _second = spawn_gtmd(&lab, dir.path(), "g1", "i0", &endpoints);
    let said = wait_for(Duration::from_secs(10), || {
        status(&lab, "g1").is_some_and(|s| {
            s["cluster"]["problem"]
                .as_str()
                .is_some_and(|p| p.contains("another live instance holds the id \"i0\""))
        })
    });
    let s1 = status(&lab, "g1").unwrap_or_default();
    assert!(
        said.is_some(),
        "the duplicate does not say it is refused: {}",
        s1["cluster"]
    );
    // It keeps trying for two lease TTLs: all along, the first's registration, link and
    // answers hold, and the duplicate stays out.
    let watched = Instant::now();
    while watched.elapsed() < TTL * 2 {
        let s1 = status(&lab, "g1").unwrap_or_default();
        assert_ne!(s1["cluster"]["link"], "connected", "{}", s1["cluster"]);
        let after = registration(&lab, &endpoints);
        assert_eq!(
            after.as_ref(),
            Some(&before),
            "the duplicate touched the registration"
        );
        let s0 = status(&lab, "g0").unwrap_or_default();
        assert_eq!(s0["cluster"]["link"], "connected", "{}", s0["cluster"]);
        assert_eq!(s0["cluster"]["problem"], serde_json::Value::Null);
        assert_eq!(answers(&lab, "g0"), both);
    }
    let log = std::fs::read_to_string(dir.path().join("g1.log")).unwrap();
    assert!(log.contains("another live instance holds the id"), "{log}");

    // The first goes: the second joins in its place.
    first.stop();
    let joined = wait_for(Duration::from_secs(TTL.as_secs() * 4), || {
        status(&lab, "g1").is_some_and(|s| {
            s["cluster"]["link"] == "connected" && s["cluster"]["problem"].is_null()
        })
    });
    eprintln!("the first instance stopped; the second joined after {joined:?}");
    assert!(
        joined.is_some(),
        "the second never joined once the first was gone"
    );
}

#[test]
fn an_instance_cut_from_its_etcd_member_moves_to_another_without_falling_back() {
    let dir = tempfile::tempdir().unwrap();
    let members = ["e0", "e1", "e2"];
    let mut lab = Lab::new(&["e0", "e1", "e2", "g0", "ctl"]);
    let endpoints: Vec<String> = members.iter().map(|m| lab.etcd_url(m)).collect();
    let _etcd = lab.etcd(&members, dir.path());
    let leader = wait_for(Duration::from_secs(20), || {
        etcd_leader(&lab, "ctl", &endpoints).is_some()
    });
    assert!(leader.is_some(), "etcd elected no leader");
    let _node = spawn_gtmd(&lab, dir.path(), "g0", "i0", &endpoints);
    wait_joined(&lab, &["g0"], 1, Duration::from_secs(30));
    // Three rounds: each cuts the instance from the member its session is on. Nothing else
    // writes, so etcd's only answers are the lease's renewals: the member's silence must be
    // noticed, and another member taken, before the lease TTL since the last renewal.
    for round in 0..3 {
        let on = sessions(dir.path(), "g0")
            .last()
            .cloned()
            .expect("a session");
        let host = members[endpoints.iter().position(|e| *e == on).unwrap()];
        let before = sessions(dir.path(), "g0").len();
        lab.cut("g0", host);
        let cut = Instant::now();
        let seen = observe(&lab, &["g0"], cut, TTL + Duration::from_secs(2));
        let moved = sessions(dir.path(), "g0");
        eprintln!(
            "round {round}: cut from {host}; sessions since: {:?}",
            &moved[before..]
        );
        let log = std::fs::read_to_string(dir.path().join("g0.log")).unwrap();
        for l in log
            .lines()
            .filter(|l| l.contains("session ended"))
            .skip(round)
        {
            eprintln!("  {l}");
        }
        assert!(
            !log.contains("etcd lost for the lease TTL"),
            "round {round}: the instance fell back while two members answered: {seen:?}"
        );
        assert!(!seen.left[0], "round {round}: {seen:?}");
        assert!(
            moved.len() > before && moved.last() != Some(&on),
            "round {round}: the session did not move from {on}: {moved:?}"
        );
        lab.heal();
    }
}
