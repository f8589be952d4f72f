//! Several gtmd instances acting as one on a real etcd (Debian's `etcd-server`), started on
//! loopback ports by each test: shared overrides, the health quorum across vantage points
//! (each instance probes from its own source address), one alert per event from the
//! leader, probe-only agents, and DNS that keeps answering while etcd fails.

#![cfg(feature = "cluster")]

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_override_on_one_instance_reaches_all_and_survives_a_restart_of_all() {
    let mut c = Cluster::three(1).await;

    let a = c.instances[0].admin;
    let body = json!({ "target": "web/m1", "action": "disable", "reason": "drain" });
    api(a, "/overrides", Some(body)).await;
    let took = c.wait_answers(&[M0], Duration::from_secs(3)).await;
    eprintln!("override set on a: every instance answers without m1 after {took:?}");
    assert!(
        took.is_some_and(|t| t <= Duration::from_secs(1)),
        "the disable on a reached b and c in {took:?}, not within 1 s"
    );
    // Each instance keeps the cluster's overrides in its state file, as a cache.
    for id in ["a", "b", "c"] {
        let state = c.dir.path().join(format!("{id}-state.json"));
        assert!(
            wait_until(Duration::from_secs(2), || async {
                overrides_in(&state) == 1
            })
            .await
            .is_some(),
            "{id}"
        );
    }

    // All three die at once (no goodbye to etcd) and start again: the override holds.
    for i in &mut c.instances {
        i.kill();
    }
    for i in &mut c.instances {
        i.start();
    }
    c.wait_joined(3, Duration::from_secs(20)).await;
    assert!(c
        .wait_answers(&[M0], Duration::from_secs(5))
        .await
        .is_some());
    // One alert for the change, from one instance.
    assert_eq!(
        c.hook.events("override_set").len(),
        1,
        "{:?}",
        c.hook.got.lock().unwrap()
    );

    // Without etcd, an instance that starts honours the overrides it cached.
    c.etcd.stop_member(0);
    c.instances[1].kill();
    c.instances[1].start();
    let b = &c.instances[1];
    let up = wait_until(Duration::from_secs(10), || async {
        b.answers().await == [M0]
    })
    .await;
    assert!(up.is_some(), "b without etcd: {:?}", b.answers().await);
    assert_ne!(c.link(1).await, "connected");

    // Enable through another instance once etcd is back: every instance answers m1 again.
    c.etcd.start_member(0);
    c.etcd.wait_healthy().await;
    c.wait_joined(3, Duration::from_secs(20)).await;
    let cadm = c.instances[2].admin;
    api(
        cadm,
        "/overrides/clear",
        Some(json!({ "target": "web/m1" })),
    )
    .await;
    assert!(c
        .wait_answers(&[M0, M1], Duration::from_secs(2))
        .await
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_seen_by_one_instance_does_not_move_answers_and_is_alerted_once() {
    let mut c = Cluster::new(1).await;
    // a probes from 127.0.0.2, and m0's backend fails every probe from there.
    c.backends[0].deny(source(0));
    for id in ["a", "b", "c"] {
        c.add(id, false, "\"majority\"");
    }
    c.wait_joined(3, Duration::from_secs(15)).await;
    let a = &c.instances[0];
    let seen = wait_until(Duration::from_secs(5), || async {
        let s = a.status().await.unwrap_or_default();
        s["members"][0]["state"] == "down"
    })
    .await;
    assert!(seen.is_some(), "a's own view of m0 never turned down");
    // Once every instance has every instance's view of m0 (right after start one may have
    // only some: a slow first probe, or a view not yet watched, leaves the decision to the
    // views there are)...
    let formed = wait_until(Duration::from_secs(10), || async {
        let mut all = true;
        for i in &c.instances {
            let s = i.status().await.unwrap_or_default();
            all &= s["members"][0]["views"].as_array().map(Vec::len) == Some(3);
        }
        all
    })
    .await;
    assert!(formed.is_some(), "an instance never had three views of m0");
    // ...for longer than the detection bound, all three keep answering m0.
    let until = Instant::now() + DETECTION * 3;
    while Instant::now() < until {
        for i in &c.instances {
            let got = i.answers().await;
            if got != [M0, M1] {
                let st = i.status().await.unwrap_or_default();
                panic!(
                    "{} dropped m0: {got:?}; {} {}",
                    i.id, st["cluster"], st["members"][0]
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let told = wait_until(Duration::from_secs(5), || async {
        !c.hook.events("view_disagrees").is_empty()
    })
    .await;
    assert!(told.is_some(), "no alert says a disagrees");
    let s = c.instances[1].status().await.unwrap();
    let views = &s["members"][0]["views"];
    assert_eq!(views.as_array().map(Vec::len), Some(3), "{views}");
    assert!(views
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["instance"] == "a" && v["up"] == false && v["decided"] == false));

    // Now m0 really fails: every instance drops it within the detection bound plus 1 s.
    c.backends[0].refuse();
    let took = c.wait_answers(&[M1], Duration::from_secs(5)).await;
    eprintln!("m0 refused: every instance answers without it after {took:?}");
    assert!(
        took.is_some_and(|t| t <= DETECTION + Duration::from_secs(1)),
        "{took:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let dis = c.hook.events("view_disagrees");
    assert_eq!(dis.len(), 1, "{dis:?}");
    assert_eq!(dis[0]["instance"], "a");
    assert!(
        dis[0]["reason"]
            .as_str()
            .unwrap()
            .contains("a alone sees web/m0 down"),
        "{dis:?}"
    );
    let downs = c.hook.events("member_down");
    assert_eq!(downs.len(), 1, "one alert for one event: {downs:?}");
    let explain = api(
        c.instances[2].admin,
        "/explain?name=app.example.test.",
        None,
    )
    .await;
    assert!(
        explain.contains("down by the quorum: 3 of 3 instances see it down"),
        "{explain}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_alert_leader_dies_another_sends_exactly_one_alert_per_event() {
    let mut c = Cluster::three(1).await;
    let s = c.instances[0].status().await.unwrap();
    let leader = s["cluster"]["leader"].as_str().unwrap().to_string();
    let k = c.instances.iter().position(|i| i.id == leader).unwrap();
    c.instances[k].kill();
    let took = wait_until(Duration::from_secs(TTL + 5), || async {
        let others = c.instances.iter().filter(|i| i.child.is_some());
        let mut leaders = Vec::new();
        for i in others {
            let s = i.status().await.unwrap_or_default();
            leaders.push(s["cluster"]["leader"].as_str().unwrap_or("").to_string());
        }
        leaders
            .iter()
            .all(|l| !l.is_empty() && *l != leader && *l == leaders[0])
    })
    .await;
    eprintln!("leader {leader} killed: a new leader after {took:?} (lease TTL {TTL} s)");
    assert!(took.is_some(), "no new leader");
    c.wait_joined(2, Duration::from_secs(5)).await;

    c.bounce_m0().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (down, up) = (c.hook.events("member_down"), c.hook.events("member_up"));
    assert_eq!(
        (down.len(), up.len()),
        (1, 1),
        "{:?}",
        c.hook.got.lock().unwrap()
    );
    assert_ne!(down[0]["instance"], leader.as_str());
    assert!(
        down[0]["reason"]
            .as_str()
            .unwrap()
            .contains("2 of 2 instances see it down"),
        "{down:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_etcd_fails_every_instance_keeps_answering_on_its_own_view_and_rejoins() {
    let mut c = Cluster::three(3).await;

    // A steady load on all three: every query must get its two addresses (or one, while m0
    // is down below).
    let load = Load::start(c.instances.iter().map(|i| i.dns).collect());

    // Two of three etcd members stop: no quorum. After the lease TTL, each instance answers
    // from its own view.
    c.etcd.stop_member(1);
    c.etcd.stop_member(2);
    let fell = wait_until(Duration::from_secs(TTL * 3 + 5), || async {
        for i in 0..3 {
            if c.link(i).await != "fallback" {
                return false;
            }
        }
        true
    })
    .await;
    eprintln!("etcd quorum lost: every instance fell back after {fell:?}");
    assert!(fell.is_some(), "not every instance fell back");
    assert_eq!(
        metric(c.instances[0].admin, "gtmd_cluster_connected").await,
        Some(0.0)
    );
    // Then the last member stops too; a backend failure is still followed, by each alone.
    c.etcd.stop_member(0);
    c.bounce_m0().await;

    // etcd returns: every instance rejoins.
    for m in 0..3 {
        c.etcd.start_member(m);
    }
    c.etcd.wait_healthy().await;
    c.wait_joined(3, Duration::from_secs(30)).await;
    let (sent, failed) = load.finish().await;
    eprintln!("{sent} queries during the etcd failure, {failed} failed");
    assert!(sent > 300, "{sent}");
    assert_eq!(failed, 0);
    let lost = c.hook.events("cluster_lost");
    let back = c.hook.events("cluster_rejoined");
    assert_eq!(
        (lost.len(), back.len()),
        (3, 3),
        "{:?}",
        c.hook.got.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_counts_in_the_quorum() {
    let mut c = Cluster::new(1).await;
    // a (127.0.0.2) and the agent (127.0.0.4) fail m0's probes; b (127.0.0.3) does not.
    c.backends[0].deny(source(0));
    c.backends[0].deny(source(2));
    c.add("a", false, "\"majority\"");
    c.add("b", false, "\"majority\"");
    c.wait_joined(2, Duration::from_secs(15)).await;
    // a alone of two: not enough, m0 stays.
    tokio::time::sleep(DETECTION * 2).await;
    assert!(c
        .wait_answers(&[M0, M1], Duration::from_secs(2))
        .await
        .is_some());
    let z = c.add("z", true, "\"majority\"");
    c.wait_joined(3, Duration::from_secs(15)).await;
    let took = c.wait_answers(&[M1], Duration::from_secs(5)).await;
    assert!(
        took.is_some(),
        "a and the agent (2 of 3) did not take m0 out"
    );
    let s = c.instances[1].status().await.unwrap();
    let kinds: Vec<&str> = s["cluster"]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["server", "server", "agent"]);
    // The agent answers no DNS.
    assert!(answer_or_empty(c.instances[z].dns).await.is_empty());
    // The agent stops: its views go with it, and m0 is back (1 of 2 says down).
    c.instances[z].stop();
    assert!(c
        .wait_answers(&[M0, M1], Duration::from_secs(5))
        .await
        .is_some());
}

#[test]
fn the_example_cluster_configs_load() {
    let dir = repo().join("dist/examples/cluster");
    for f in ["a.toml", "b.toml", "c.toml"] {
        let cfg = gtmd::config::Config::load(&dir.join(f)).unwrap();
        let cl = cfg.cluster.clone().expect("a [cluster] table");
        assert_eq!(cl.id, f.trim_end_matches(".toml"));
        assert_eq!(cl.endpoints, ["http://127.0.0.1:2379"]);
        cfg.load_zones().unwrap();
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`:
/// ca.pem, server.pem, server-key.pem, client.pem, client-key.pem.
fn certificates(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    for (name, san, usage) in [
        ("server", "127.0.0.1", ExtendedKeyUsagePurpose::ServerAuth),
        ("client", "gtmd", ExtendedKeyUsagePurpose::ClientAuth),
    ] {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![san.to_string()]).unwrap();
        p.extended_key_usages = vec![usage];
        p.distinguished_name.push(rcgen::DnType::CommonName, san);
        let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
    }
}

/// One etcd serving clients over TLS only, and only those with a certificate of the CA in
/// `d` (see [`certificates`]); returns it and its client URL.
fn tls_etcd(d: &Path) -> (KillOnDrop, String) {
    // A port found free may be taken before etcd binds it: then etcd exits, and it is
    // started again on other ports.
    for _ in 0..5 {
        let (client, peer) = (free_addr(), free_addr());
        let url = format!("https://{client}");
        let pem = |f: &str| d.join(f).display().to_string();
        let log = std::fs::File::create(d.join("etcd.log")).unwrap();
        let etcd = Command::new("etcd")
            .args(["--name", "tls", "--data-dir", &pem("data")])
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args(["--listen-peer-urls", &format!("http://{peer}")])
            .args(["--initial-advertise-peer-urls", &format!("http://{peer}")])
            .args(["--initial-cluster", &format!("tls=http://{peer}")])
            .args([
                "--cert-file",
                &pem("server.pem"),
                "--key-file",
                &pem("server-key.pem"),
            ])
            .args(["--client-cert-auth", "--trusted-ca-file", &pem("ca.pem")])
            .args(["--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd");
        let mut etcd = KillOnDrop(etcd);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if etcd.0.try_wait().ok().flatten().is_some() {
                break;
            }
            if std::net::TcpStream::connect(client).is_ok() {
                return (etcd, url);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(d.join("data"));
    }
    let log = std::fs::read_to_string(d.join("etcd.log")).unwrap_or_default();
    panic!("etcd over TLS did not start: {log}");
}

/// Starts instance `id` on the TLS etcd at `url`, with the client certificate of `d` when
/// `with_cert`, its one member probed by TCP at `port`.
fn tls_instance(d: &Path, id: &str, url: &str, with_cert: bool, port: u16) -> Instance {
    let pem = |f: &str| d.join(f).display().to_string();
    let (dns, admin) = (free_addr(), free_addr());
    let cert = if with_cert {
        format!(
            "cert_file = {:?}\nkey_file = {:?}\n",
            pem("client.pem"),
            pem("client-key.pem")
        )
    } else {
        String::new()
    };
    let cfg = format!(
        "[cluster]\nendpoints = [\"{url}\"]\nid = \"{id}\"\nlease_ttl = \"{TTL}s\"\nca_file = {ca:?}\n{cert}\
         [server]\nlisten = [\"{dns}\"]\nzones_dir = {zones:?}\n[admin]\nlisten = \"{admin}\"\n\
         [checks.web]\ntype = \"tcp\"\nport = {port}\ninterval = \"200ms\"\ntimeout = \"150ms\"\n\
         [pools.web]\ncheck = \"web\"\nmembers = [{{ address = \"{M0}\", name = \"m0\", probe_address = \"127.0.0.1\" }}]\n\
         [names.\"{NAME}\"]\npools = [\"web\"]\n",
        ca = pem("ca.pem"),
        zones = repo().join("zones").display().to_string(),
    );
    Instance::spawn(d, id, &cfg, (dns, admin), false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_reaches_etcd_over_tls_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certificates(d);
    let (_etcd, url) = tls_etcd(d);
    let backend = Backend::start().await;
    let port = backend.addr.port();
    let good = tls_instance(d, "good", &url, true, port);
    let joined = wait_until(Duration::from_secs(20), || async {
        good.status()
            .await
            .is_some_and(|s| s["cluster"]["link"] == "connected")
    })
    .await;
    let log = || std::fs::read_to_string(&good.log).unwrap_or_default();
    assert!(joined.is_some(), "no TLS session: {}", log());
    assert_eq!(good.answers().await, [M0]);
    // Without its client certificate an instance is refused, says why, and still answers.
    let bare = tls_instance(d, "bare", &url, false, port);
    let refused = wait_until(Duration::from_secs(TTL + 10), || async {
        bare.status().await.is_some_and(|s| {
            s["cluster"]["link"] == "fallback" && s["cluster"]["problem"].is_string()
        })
    })
    .await;
    assert!(refused.is_some(), "{:?}", bare.status().await);
    assert_eq!(bare.answers().await, [M0]);
    let s = good.status().await.unwrap();
    assert_eq!(
        s["cluster"]["instances"].as_array().map(Vec::len),
        Some(1),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_logs_in_to_etcd_with_a_user_and_password() {
    let mut c = Cluster::new(1).await;
    let ep = c.etcd.endpoints()[0].clone();
    let etcdctl = |args: &[&str]| {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &ep])
            .args(args)
            .output()
            .expect("etcdctl (Debian: apt install etcd-client)");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Only /gtmd/t/ for the user gtmd.
    etcdctl(&["user", "add", "root:rootpw"]);
    etcdctl(&["role", "add", "gtmd"]);
    etcdctl(&[
        "role",
        "grant-permission",
        "gtmd",
        "--prefix=true",
        "readwrite",
        "/gtmd/t/",
    ]);
    etcdctl(&["user", "add", "gtmd:s3cret"]);
    etcdctl(&["user", "grant-role", "gtmd", "gtmd"]);
    etcdctl(&["auth", "enable"]);
    let pw = c.dir.path().join("etcd-password");
    std::fs::write(&pw, "s3cret\n").unwrap();
    let a = c.add("a", false, "\"majority\"");
    // The same instance with the password file named: the config is written again.
    c.instances[a].stop();
    let cfg = std::fs::read_to_string(&c.instances[a].config)
        .unwrap()
        .replacen(
            "[cluster]\n",
            &format!(
                "[cluster]\nusername = \"gtmd\"\npassword_file = {:?}\n",
                pw.display().to_string()
            ),
            1,
        );
    std::fs::write(&c.instances[a].config, cfg).unwrap();
    c.instances[a].start();
    c.wait_joined(1, Duration::from_secs(15)).await;
    let body = json!({ "target": "web/m1", "action": "disable", "reason": "auth" });
    api(c.instances[a].admin, "/overrides", Some(body)).await;
    assert!(c
        .wait_answers(&[M0], Duration::from_secs(2))
        .await
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_ends_on_every_instance_with_one_alert() {
    let c = Cluster::three(1).await;
    let body = json!({ "target": "web/m1", "action": "disable", "reason": "drain", "for": "2s" });
    api(c.instances[1].admin, "/overrides", Some(body)).await;
    assert!(c
        .wait_answers(&[M0], Duration::from_secs(1))
        .await
        .is_some());
    let back = c.wait_answers(&[M0, M1], Duration::from_secs(6)).await;
    assert!(back.is_some(), "the drain did not end everywhere");
    let cleared = wait_until(Duration::from_secs(3), || async {
        for i in &c.instances {
            let s = i.status().await.unwrap_or_default();
            if s["overrides"].as_array().is_none_or(|o| !o.is_empty()) {
                return false;
            }
        }
        true
    })
    .await;
    assert!(cleared.is_some(), "an ended drain is still listed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ended = c.hook.events("override_ended");
    assert_eq!(ended.len(), 1, "{:?}", c.hook.got.lock().unwrap());
    assert!(c.hook.events("override_cleared").is_empty());
}
