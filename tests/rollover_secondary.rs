//! A ZSK rollover with a secondary that signs with its own copy of the keys: gtmd and a Knot
//! secondary (`dnssec-signing: on`, a `manual: on` policy, gtmd's keys imported with
//! `keymgr import-bind`) go through docs/dnssec.md's steps together. Before, during and after,
//! answers from both validate with `delv` against the zone's trust anchor, and throughout
//! (sampled every 50 ms) each server signs only with keys that both servers publish, so a
//! validator that takes the DNSKEY set from one and an answer from the other never fails.
//! `.ci/run` installs `knot` and `bind9-dnsutils`.

use crate::common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::signing::*;
use common::*;
use hickory_proto::rr::RecordType;

/// TTLs of 1 s, so that the rollover's waits are short.
const ZONE: &str =
    "$TTL 1\n@ 1 SOA ns1 hostmaster 1 7200 3600 1209600 1\n NS ns1\nns1 A 192.0.2.1\nwww A 192.0.2.80\n";

/// What is asked of both servers, with the DO bit, at every sample.
const ASKED: [(&str, RecordType); 4] = [
    ("www.example.test.", RecordType::A),
    ("app.example.test.", RecordType::A),
    ("nope.example.test.", RecordType::A),
    ("example.test.", RecordType::DNSKEY),
];

/// The Knot secondary: its configuration file, and its key manager and control tool.
struct Knot {
    conf: PathBuf,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    _daemon: Option<KillOnDrop>,
}

impl Knot {
    /// A Knot secondary of example.test. taking the zone from `primary`, which signs it with
    /// the keys it is given by `keymgr` (not yet started).
    fn new(primary: SocketAddr, port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let conf = format!(
            "server:\n    listen: 127.0.0.1@{port}\n    rundir: {d}\ndatabase:\n    storage: {d}\n    kasp-db: {d}/kasp\n\
             remote:\n  - id: gtmd\n    address: 127.0.0.1@{}\n\
             acl:\n  - id: notify\n    address: 127.0.0.0/8\n    action: notify\n\
             policy:\n  - id: gtmd-keys\n    manual: on\n\
             zone:\n  - domain: example.test.\n    storage: {d}\n    master: gtmd\n    acl: notify\n\
             \x20   dnssec-signing: on\n    dnssec-policy: gtmd-keys\n",
            primary.port()
        );
        let path = dir.path().join("knot.conf");
        std::fs::write(&path, conf).unwrap();
        Knot {
            conf: path,
            addr: ([127, 0, 0, 1], port).into(),
            _dir: dir,
            _daemon: None,
        }
    }

    fn start(&mut self) {
        self._daemon = Some(daemon(&installed("knotd", "knot"), &["-c"], &self.conf));
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = Command::new(installed(tool, "knot"))
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{tool} {args:?}: {out:?}");
    }

    /// `keymgr example.test. ARGS`.
    fn keymgr(&self, args: &[&str]) {
        let mut all = vec!["example.test."];
        all.extend_from_slice(args);
        self.run("keymgr", &all);
    }

    /// Has the running Knot read its keys again (`knotc zone-keys-load`).
    fn keys_load(&self) {
        self.run("knotc", &["zone-keys-load", "example.test."]);
    }
}

/// gtmd's configuration: the zone, two backends behind app.example.test., transfers and
/// NOTIFY to the secondary, and the zone's keys (TOML array items).
fn write_config(dir: &Path, backends: &[Backend], knot_port: u16, keys: &[String]) {
    let b: Vec<&Backend> = backends.iter().collect();
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nzones_dir = \"zones\"\n{}\n\
         [zones.\"example.test.\"]\nallow_transfer = [\"127.0.0.0/8\"]\nnotify = [\"127.0.0.1:{knot_port}\"]\n\
         [zones.\"example.test.\".dnssec]\nkeys = [{}]\n",
        web_config(&b, "[admin]\nlisten = \"127.0.0.1:0\"", "app.example.test."),
        keys.join(", "),
    );
    std::fs::write(dir.join("gtmd.toml"), text).unwrap();
}

fn entry(key: &Path, sign: bool) -> String {
    format!(
        "{{ file = {:?}, sign = {sign} }}",
        key.display().to_string()
    )
}

/// Each server's answers to [`ASKED`] are signed by keys in each server's DNSKEY set; else
/// what is not.
async fn consistent(servers: [SocketAddr; 2]) -> Result<(), String> {
    let mut sets = Vec::new();
    for s in servers {
        sets.push(published(s).await);
    }
    for s in servers {
        let mut used = BTreeSet::new();
        for (name, rtype) in ASKED {
            used.extend(signers(&signed_answer(s, name, rtype).await));
        }
        for (t, set) in servers.iter().zip(&sets) {
            if !used.is_subset(set) {
                return Err(format!("{s} signs with {used:?}; {t} publishes {set:?}"));
            }
        }
    }
    Ok(())
}

/// Samples [`consistent`] every 50 ms until `stop`: (samples, what failed).
async fn watch(servers: [SocketAddr; 2], stop: Arc<AtomicBool>) -> (usize, Vec<String>) {
    let (mut n, mut bad) = (0, Vec::new());
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = consistent(servers).await {
            bad.push(e);
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (n, bad)
}

/// Both servers' answers validate with `delv`: positive, bound, negative, DNSKEY.
fn both_validate(servers: [SocketAddr; 2], anchor: &str, when: &str) {
    let full = "; fully validated";
    for s in servers {
        for (name, rtype, expect) in [
            ("www.example.test", "A", full),
            ("app.example.test", "A", full),
            ("example.test", "DNSKEY", full),
            (
                "nope.example.test",
                "A",
                "; negative response, fully validated",
            ),
        ] {
            let out = delv(s, anchor, name, rtype);
            assert!(
                out.contains(expect),
                "{when}: delv @{s} {name} {rtype}:\n{out}"
            );
        }
    }
}

/// Waits (at most 10 s) until `f` holds for both servers.
async fn both<F, Fut>(servers: [SocketAddr; 2], what: &str, f: F)
where
    F: Fn(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let done = wait_until(Duration::from_secs(10), || async {
        f(servers[0]).await && f(servers[1]).await
    })
    .await;
    assert!(done.is_some(), "not within 10 s: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zsk_rollover_with_a_knot_secondary_signing_its_own_copy_keeps_both_validating() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    std::fs::write(dir.path().join("zones/example.test.zone"), ZONE).unwrap();
    let backends = vec![Backend::start().await, Backend::start().await];
    let (ksk, zsk1, zsk2) = (
        keygen(dir.path(), &[]),
        keygen(dir.path(), &["--zsk"]),
        keygen(dir.path(), &["--zsk"]),
    );
    let tag = |k: &Path| tag_of(k).parse::<u16>().unwrap();
    let (t1, t2) = (tag(&zsk1), tag(&zsk2));
    let port = free_addr().port();
    let config = |keys: &[String]| write_config(dir.path(), &backends, port, keys);
    config(&[entry(&ksk, true), entry(&zsk1, true)]);
    let g = start_file(&dir.path().join("gtmd.toml")).await;
    let cfg = dir.path().join("gtmd.toml");
    let ds = gtmd_bin(&["-c", cfg.to_str().unwrap(), "dnssec", "ds", "example.test."]);
    let f: Vec<&str> = ds.split_whitespace().collect();
    let anchor = f[4..8].join(" ");
    // The secondary holds the KSK and the signing ZSK, as gtmd does.
    let mut knot = Knot::new(g.dns, port);
    for k in [&ksk, &zsk1] {
        knot.keymgr(&["import-bind", &format!("{}.private", k.display())]);
    }
    knot.start();
    let servers = [g.dns, knot.addr];
    both(servers, "the secondary signs the zone", |s| async move {
        a_of(s, "app.example.test.").await.len() == 2
            && signers(&signed_answer(s, "www.example.test.", RecordType::A).await) == [t1].into()
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch(servers, stop.clone()));
    both_validate(servers, &anchor, "before");

    // 1. Publish the new ZSK on both, signing with neither; wait for the DNSKEY TTL.
    config(&[entry(&ksk, true), entry(&zsk1, true), entry(&zsk2, false)]);
    gtmd::ops::ctl::request(g.admin, "POST", "/reload", None, None).unwrap();
    knot.keymgr(&["import-bind", &format!("{}.private", zsk2.display())]);
    knot.keymgr(&["set", &tag_of(&zsk2), "active=0"]);
    knot.keys_load();
    both(servers, "the new ZSK published", |s| async move {
        published(s).await.contains(&t2)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    both_validate(servers, &anchor, "new ZSK published");

    // 2. Switch on both: the new ZSK signs, the old one stays published; wait for the
    //    largest TTL once both sign with the new key only.
    config(&[entry(&ksk, true), entry(&zsk1, false), entry(&zsk2, true)]);
    gtmd::ops::ctl::request(g.admin, "POST", "/reload", None, None).unwrap();
    knot.keymgr(&["set", &tag_of(&zsk2), "active=+0"]);
    knot.keymgr(&["set", &tag_of(&zsk1), "retire=+0"]);
    knot.keys_load();
    both(servers, "only the new ZSK signs", |s| async move {
        signers(&signed_answer(s, "www.example.test.", RecordType::A).await) == [t2].into()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    both_validate(servers, &anchor, "switched to the new ZSK");

    // 3. Retire the old ZSK on both.
    config(&[entry(&ksk, true), entry(&zsk2, true)]);
    gtmd::ops::ctl::request(g.admin, "POST", "/reload", None, None).unwrap();
    knot.keymgr(&["set", &tag_of(&zsk1), "remove=+0"]);
    knot.keys_load();
    let left: BTreeSet<u16> = [tag(&ksk), t2].into();
    both(servers, "the old ZSK removed", |s| {
        let left = left.clone();
        async move { published(s).await == left }
    })
    .await;
    both_validate(servers, &anchor, "after");

    stop.store(true, Ordering::Relaxed);
    let (samples, bad) = watcher.await.unwrap();
    eprintln!("{} of {samples} samples inconsistent", bad.len());
    assert!(
        bad.is_empty(),
        "{} of {samples} samples had a signature by a key a server does not publish: {bad:#?}",
        bad.len()
    );
    assert!(samples > 20, "only {samples} samples");
}
