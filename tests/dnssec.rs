//! Signed answers checked by real validators: `delv` (bind9-dnsutils) and a real Unbound
//! (validating, with stub zones to gtmd and the zone's trust anchor), for static and bound
//! names, negative answers, wildcards, CNAME chains and an insecure delegation; a key the
//! anchor does not match; a ZSK pre-publish rollover with Unbound validating throughout; and
//! a Knot secondary that signs the unsigned transfer with the same key.
//! `.ci/run` installs `bind9-dnsutils` and `unbound`.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::signing::*;
use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

/// The parent zone; its TTLs are 1 s so that a rollover's waits are short.
const ZONE: &str =
    "$TTL 1\n@ 1 SOA ns1 hostmaster 1 7200 3600 1209600 1\n NS ns1\nns1 A 192.0.2.1\n\
www A 192.0.2.80\nalias CNAME www\nchain CNAME alias\n*.wild A 192.0.2.99\ndeep.ent A 192.0.2.77\n\
child NS ns.child\nns.child A 192.0.2.53\nbig TXT \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\" \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"\n";
/// The delegated child, served unsigned by the same gtmd.
const CHILD: &str = "$TTL 1\n@ SOA ns hostmaster 1 7200 3600 1209600 1\n NS ns\nns A 192.0.2.53\nfoo A 192.0.2.54\n";

/// A directory with the zones, a config file signing example.test. with `keys` (TOML array
/// items), and two backends behind app.example.test.
struct Setup {
    dir: tempfile::TempDir,
    backends: Vec<Backend>,
}

impl Setup {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("zones")).unwrap();
        std::fs::write(dir.path().join("zones/example.test.zone"), ZONE).unwrap();
        std::fs::write(dir.path().join("zones/child.example.test.zone"), CHILD).unwrap();
        let backends = vec![Backend::start().await, Backend::start().await];
        Setup { dir, backends }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("gtmd.toml")
    }

    fn write_config(&self, keys: &str) {
        self.write_config_with(keys, "");
    }

    /// The config with `zone` (keys of the zone's own table) before its `dnssec` table.
    fn write_config_with(&self, keys: &str, zone: &str) {
        let b: Vec<&Backend> = self.backends.iter().collect();
        // lb.example.test. answers a CNAME to www or alias (members that are domain names).
        let lb = |n: &str, b: &Backend| {
            format!("{{ cname = \"{n}.example.test.\", probe_address = \"127.0.0.1\", probe_port = {} }}", b.addr.port())
        };
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nzones_dir = \"zones\"\n{}\n\
             [pools.lbs]\ncheck = \"web\"\nmembers = [{}, {}]\n[names.\"lb.example.test.\"]\npools = [\"lbs\"]\n\
             [zones.\"example.test.\"]\n{zone}\n\
             [zones.\"example.test.\".dnssec]\nkeys = [{keys}]\n",
            web_config(&b, "[admin]\nlisten = \"127.0.0.1:0\"", "app.example.test."),
            lb("www", b[0]),
            lb("alias", b[1]),
        );
        std::fs::write(self.path(), text).unwrap();
    }

    /// The trust anchor of the signed zone, from `gtmd dnssec ds`, as delv and Unbound take it.
    fn anchor(&self) -> String {
        let ds = gtmd_bin(&[
            "-c",
            self.path().to_str().unwrap(),
            "dnssec",
            "ds",
            "example.test.",
        ]);
        let line = ds.lines().next().expect("a DS line");
        let f: Vec<&str> = line.split_whitespace().collect();
        format!("{} {} {} {}", f[4], f[5], f[6], f[7])
    }
}

/// `name` in /usr/sbin or /usr/bin; panics naming `package` if it is not installed.
/// gtmd serving the zones signed with one new CSK: the setup, the key's base path, gtmd,
/// and the zone's trust anchor.
async fn signed_gtmd() -> (Setup, PathBuf, Gtmd, String) {
    let s = Setup::new().await;
    let key = keygen(s.dir.path(), &[]);
    s.write_config(&format!("{:?}", key.display().to_string()));
    let g = start_file(&s.path()).await;
    let anchor = s.anchor();
    (s, key, g, anchor)
}

/// A validating Unbound on loopback with stub zones for example.test. and its child to
/// gtmd, and `anchor` as example.test.'s trust anchor.
struct Unbound(UnboundProcess);

impl Unbound {
    fn start(gtmd: SocketAddr, anchor: &str) -> Self {
        let server = format!(
            "    verbosity: 1\n    val-log-level: 2\n    module-config: \"validator iterator\"\n\
             \x20   domain-insecure: \"child.example.test.\"\n    trust-anchor: \"example.test. DS {anchor}\"\n\
             \x20   prefetch: no\n    serve-expired: no\n    cache-max-ttl: 2\n    infra-host-ttl: 1\n"
        );
        Unbound(UnboundProcess::start(
            &server,
            &[("example.test.", gtmd), ("child.example.test.", gtmd)],
        ))
    }

    /// The answer to a recursive query, once Unbound answers (within 10 s).
    async fn ask(&self, name: &str, rtype: RecordType) -> Message {
        let mut q = query_msg(name, rtype, true);
        q.metadata.recursion_desired = true;
        if let Some(e) = q.edns.as_mut() {
            e.set_dnssec_ok(true);
        }
        let start = Instant::now();
        loop {
            let bytes = q.to_vec().unwrap();
            if let Some(r) = udp_raw(self.0.addr, &bytes, Duration::from_secs(2)).await {
                return Message::from_vec(&r).unwrap();
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "unbound does not answer"
            );
        }
    }

    /// Asserts that `name`/`rtype` resolves with AD set and `rcode`.
    async fn validated(&self, name: &str, rtype: RecordType, rcode: ResponseCode) -> Message {
        let m = self.ask(name, rtype).await;
        let log = self.0.log();
        assert_eq!(m.response_code, rcode, "{name} {rtype}: {m}\n{log}");
        assert!(
            m.metadata.authentic_data,
            "{name} {rtype} is not validated (AD clear): {m}\n{log}"
        );
        m
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delv_and_unbound_validate_every_kind_of_answer_and_a_bound_name_after_failover() {
    let (mut s, _key, g, anchor) = signed_gtmd().await;
    let full = "; fully validated";
    let negative = "; negative response, fully validated";
    assert_delv(g.dns, &anchor, "www.example.test", "A", full);
    assert_delv(g.dns, &anchor, "app.example.test", "A", full);
    assert_delv(g.dns, &anchor, "nope.example.test", "A", negative);
    assert_delv(g.dns, &anchor, "www.example.test", "TXT", negative);
    assert_delv(g.dns, &anchor, "ent.example.test", "A", negative);
    assert_delv(g.dns, &anchor, "x.wild.example.test", "A", full);
    // A name answering a CNAME chosen among members that are domain names, any type.
    for _ in 0..4 {
        assert_delv(g.dns, &anchor, "lb.example.test", "A", full);
        assert_delv(g.dns, &anchor, "lb.example.test", "TXT", "fully validated");
    }
    assert_delv(g.dns, &anchor, "chain.example.test", "A", full);
    assert_delv(g.dns, &anchor, "example.test", "DNSKEY", full);
    assert_delv(g.dns, &anchor, "child.example.test", "DS", negative);
    // Below the insecure delegation: the parent's NSEC proves there is no DS.
    assert_delv(
        g.dns,
        &anchor,
        "foo.child.example.test",
        "A",
        "; unsigned answer",
    );

    // A backend dies: the bound name's new answer is signed too.
    let before = answer(g.dns, "app.example.test.", RecordType::A).await;
    assert_eq!(before.len(), 2);
    s.backends[0].refuse();
    let moved = wait_until(Duration::from_secs(10), || async {
        answer(g.dns, "app.example.test.", RecordType::A).await == ["192.0.2.11"]
    })
    .await;
    assert!(moved.is_some(), "the answer did not follow health");
    let out = delv(g.dns, &anchor, "app.example.test", "A");
    assert!(
        out.contains(full) && out.contains("192.0.2.11") && !out.contains("192.0.2.10"),
        "{out}"
    );

    let u = Unbound::start(g.dns, &anchor);
    let m = u
        .validated("app.example.test.", RecordType::A, ResponseCode::NoError)
        .await;
    assert_eq!(addrs(&m), ["192.0.2.11"]);
    u.validated("www.example.test.", RecordType::A, ResponseCode::NoError)
        .await;
    u.validated("chain.example.test.", RecordType::A, ResponseCode::NoError)
        .await;
    u.validated("x.wild.example.test.", RecordType::A, ResponseCode::NoError)
        .await;
    // Compact denial: a missing name is NOERROR with NXNAME in the NSEC bitmap (RFC 9824).
    u.validated("nope.example.test.", RecordType::A, ResponseCode::NoError)
        .await;
    u.validated("www.example.test.", RecordType::TXT, ResponseCode::NoError)
        .await;
    u.validated("child.example.test.", RecordType::DS, ResponseCode::NoError)
        .await;
    // The insecure child resolves (NOERROR), without AD.
    let m = u.ask("foo.child.example.test.", RecordType::A).await;
    assert_eq!(
        (m.response_code, m.metadata.authentic_data),
        (ResponseCode::NoError, false),
        "{m}"
    );
    s.backends[0].restore().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_signed_with_a_key_the_anchor_does_not_name_is_bogus_to_unbound() {
    let s = Setup::new().await;
    let good = keygen(s.dir.path(), &[]);
    s.write_config(&format!("{:?}", good.display().to_string()));
    let anchor = s.anchor();
    let wrong = keygen(s.dir.path(), &[]);
    s.write_config(&format!("{:?}", wrong.display().to_string()));
    let g = start_file(&s.path()).await;
    let u = Unbound::start(g.dns, &anchor);
    let m = u.ask("www.example.test.", RecordType::A).await;
    assert_eq!(m.response_code, ResponseCode::ServFail, "{m}");
    let out = delv(g.dns, &anchor, "www.example.test", "A");
    assert!(!out.contains("fully validated"), "{out}");
}

/// Queries `names` through Unbound for `period`, every answer validated.
async fn keep_validating(u: &Unbound, period: Duration) -> usize {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < period {
        for name in [
            "www.example.test.",
            "app.example.test.",
            "nope.example.test.",
        ] {
            u.validated(name, RecordType::A, ResponseCode::NoError)
                .await;
            n += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zsk_pre_publish_rollover_driven_by_files_keeps_unbound_validating() {
    let s = Setup::new().await;
    let ksk = keygen(s.dir.path(), &[]);
    let zsk1 = keygen(s.dir.path(), &["--zsk"]);
    let zsk2 = keygen(s.dir.path(), &["--zsk"]);
    let k = |p: &PathBuf, sign: bool| {
        format!("{{ file = {:?}, sign = {sign} }}", p.display().to_string())
    };
    s.write_config(&format!("{}, {}", k(&ksk, true), k(&zsk1, true)));
    let g = start_file(&s.path()).await;
    let anchor = s.anchor();
    let u = Unbound::start(g.dns, &anchor);
    // Each step: the key list in the config, and a reload.
    let step = |keys: &[String]| {
        s.write_config(&keys.join(", "));
        reload(g.admin);
    };
    let mut total = keep_validating(&u, Duration::from_secs(2)).await;
    // 1. Publish the new ZSK, not yet signing; wait for the DNSKEY TTL (1 s) and more.
    step(&[k(&ksk, true), k(&zsk1, true), k(&zsk2, false)]);
    total += keep_validating(&u, Duration::from_secs(3)).await;
    // 2. The new ZSK signs; the old one stays published while signatures made with it
    //    may be cached.
    step(&[k(&ksk, true), k(&zsk1, false), k(&zsk2, true)]);
    let new: u16 = tag_of(&zsk2).parse().unwrap();
    assert_eq!(
        signers(&signed_answer(g.dns, "www.example.test.", RecordType::A).await),
        [new].into()
    );
    total += keep_validating(&u, Duration::from_secs(3)).await;
    // 3. Retire the old ZSK.
    step(&[k(&ksk, true), k(&zsk2, true)]);
    total += keep_validating(&u, Duration::from_secs(3)).await;
    let dnskeys = delv(g.dns, &anchor, "example.test", "DNSKEY");
    assert!(
        dnskeys.contains("; fully validated") && dnskeys.matches("IN\tDNSKEY").count() == 2,
        "{dnskeys}"
    );
    assert!(total > 30, "only {total} validated answers");
}

fn reload(admin: SocketAddr) {
    if let Err(e) = gtmd::ops::ctl::request(admin, "POST", "/reload", None, None) {
        panic!("reload: {e}");
    }
}

/// A Knot secondary of example.test. on 127.0.0.1:`port` that signs what it transfers from
/// `primary` with the key at `key` (imported with `keymgr import-bind`, as docs/dnssec.md says).
fn knot_signer(primary: SocketAddr, key: &Path, port: u16) -> (KillOnDrop, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let conf = format!(
        "server:\n    listen: 127.0.0.1@{port}\n    rundir: {d}\ndatabase:\n    storage: {d}\n    kasp-db: {d}/kasp\n\
         remote:\n  - id: gtmd\n    address: 127.0.0.1@{}\n\
         acl:\n  - id: notify\n    address: 127.0.0.0/8\n    action: notify\n\
         policy:\n  - id: gtmd-keys\n    manual: on\n    single-type-signing: on\n\
         zone:\n  - domain: example.test.\n    storage: {d}\n    master: gtmd\n    acl: notify\n\
         \x20   dnssec-signing: on\n    dnssec-policy: gtmd-keys\n",
        primary.port()
    );
    let path = dir.path().join("knot.conf");
    std::fs::write(&path, conf).unwrap();
    let keymgr = |args: &[&str]| {
        let out = Command::new(installed("keymgr", "knot"))
            .arg("-c")
            .arg(&path)
            .arg("example.test.")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "keymgr {args:?}: {out:?}");
    };
    let private = format!("{}.private", key.display());
    keymgr(&["import-bind", &private]);
    // keymgr imports a key with the SEP flag as a KSK; as a CSK it signs the zone too.
    keymgr(&["set", &tag_of(key), "zsk=yes"]);
    (daemon(&installed("knotd", "knot"), &["-c"], &path), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_knot_secondary_signs_the_unsigned_transfer_with_the_same_key_and_follows_health() {
    let mut s = Setup::new().await;
    let key = keygen(s.dir.path(), &[]);
    let port = free_addr().port();
    s.write_config_with(
        &format!("{:?}", key.display().to_string()),
        &format!("allow_transfer = [\"127.0.0.0/8\"]\nnotify = [\"127.0.0.1:{port}\"]"),
    );
    let g = start_file(&s.path()).await;
    let anchor = s.anchor();
    let (_knot, _kdir) = knot_signer(g.dns, &key, port);
    let knot: SocketAddr = ([127, 0, 0, 1], port).into();
    let signed = wait_until(Duration::from_secs(10), || async {
        a_of(knot, "app.example.test.").await.len() == 2
    })
    .await;
    assert!(signed.is_some(), "knot did not load the zone");
    let full = "; fully validated";
    for (name, rtype, expect) in [
        ("www.example.test", "A", full),
        ("app.example.test", "A", full),
        ("x.wild.example.test", "A", full),
        ("example.test", "DNSKEY", full),
        (
            "nope.example.test",
            "A",
            "; negative response, fully validated",
        ),
    ] {
        assert_delv(knot, &anchor, name, rtype, expect);
    }
    s.backends[0].refuse();
    let moved = wait_until(Duration::from_secs(10), || async {
        a_of(knot, "app.example.test.").await == ["192.0.2.11"]
    })
    .await;
    assert!(moved.is_some(), "knot did not follow health");
    let out = delv(knot, &anchor, "app.example.test", "A");
    assert!(
        out.contains(full) && out.contains("192.0.2.11") && !out.contains("192.0.2.10"),
        "{out}"
    );
    s.backends[0].restore().await;
}

#[test]
fn the_dnssec_example_loads_and_its_anchor_is_the_keys_ds() {
    let dir = repo().join("dist/examples/dnssec");
    let cfg = gtmd::config::Config::load(&dir.join("gtmd.toml")).expect("the example is valid");
    let zones = cfg.load_zones().expect("its zones and keys load");
    let z = zones.iter().next().expect("one zone");
    let ds = z.keys.as_ref().expect("the zone is signed").ds_lines(300);
    let f: Vec<&str> = ds[0].split_whitespace().collect();
    let anchors = std::fs::read_to_string(dir.join("anchors.conf")).unwrap();
    let want = format!(
        "example.test. static-ds {}",
        quoted_digest(&f[4..8].join(" "))
    );
    assert!(anchors.contains(&want), "anchors.conf lacks {want:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_key_at_reload_is_refused_by_file_and_line_and_the_zone_stays_signed() {
    let (s, key, g, anchor) = signed_gtmd().await;
    // The private half no longer matches the public one.
    let other = keygen(s.dir.path(), &[]);
    let private = format!("{}.private", key.display());
    std::fs::copy(format!("{}.private", other.display()), &private).unwrap();
    let e = gtmd::ops::ctl::request(g.admin, "POST", "/reload", None, None)
        .expect_err("the reload is refused");
    assert!(
        e.to_string().contains(&format!("{private}:3:")),
        "the error names the file and line: {e}"
    );
    assert_delv(g.dns, &anchor, "www.example.test", "A", "; fully validated");
    assert_delv(
        g.dns,
        &anchor,
        "nope.example.test",
        "A",
        "; negative response, fully validated",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_answer_too_big_for_udp_is_truncated_and_whole_over_tcp() {
    let (_s, _key, g, anchor) = signed_gtmd().await;
    let ask = |dnssec_ok: bool| {
        let mut q = query_msg("big.example.test.", RecordType::TXT, true);
        if let Some(e) = q.edns.as_mut() {
            e.set_max_payload(512);
            e.set_dnssec_ok(dnssec_ok);
        }
        q
    };
    // Unsigned, the two 200-byte strings fit in 512 bytes; with their RRSIG they do not.
    let plain = udp(g.dns, &ask(false)).await;
    assert!(
        !plain.metadata.truncation && plain.answers.len() == 1,
        "{plain}"
    );
    let over = udp(g.dns, &ask(true)).await;
    assert!(
        over.metadata.truncation && over.answers.is_empty(),
        "{over}"
    );
    let whole = tcp(g.dns, &ask(true)).await;
    assert!(!whole.metadata.truncation, "{whole}");
    let types: Vec<RecordType> = whole.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types, [RecordType::TXT, RecordType::RRSIG]);
    // delv retries over TCP and validates it.
    assert_delv(
        g.dns,
        &anchor,
        "big.example.test",
        "TXT",
        "; fully validated",
    );
}
