//! Zone transfers into real secondaries: Knot DNS, NSD and BIND take zones from gtmd (AXFR,
//! IXFR after NOTIFY, with TSIG) and must then hold and answer what gtmd answers. Needs
//! `knotd`, `nsd` and `named` (`.ci/run` installs them).

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A secondary server (Knot or NSD) in a scratch directory, stopped on drop.
struct Secondary {
    addr: SocketAddr,
    _child: KillOnDrop,
    _dir: tempfile::TempDir,
}

fn sbin(bin: &str) -> String {
    for d in ["/usr/sbin", "/usr/bin", "/sbin"] {
        let p = Path::new(d).join(bin);
        if p.exists() {
            return p.display().to_string();
        }
    }
    panic!("{bin} is not installed: apt-get install -y knot nsd bind9 (see .ci/run)");
}

/// A TSIG key (hmac-sha256) shared by gtmd and the secondaries.
struct Key {
    name: &'static str,
    secret: String,
}

impl Key {
    fn new(name: &'static str) -> Self {
        let bytes: [u8; 32] = rand::random();
        Key {
            name,
            secret: data_encoding::BASE64.encode(&bytes),
        }
    }

    /// The key file as `tsig-keygen` writes it.
    fn bind_file(&self) -> String {
        format!(
            "key \"{}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{}\";\n}};\n",
            self.name, self.secret
        )
    }
}

/// Starts `kind` ("knot", "nsd" or "bind") on 127.0.0.1:`port` as a secondary of `zone`
/// with `primary` as its primary (transfers signed with `key`, if any, and NOTIFY taken
/// from 127.0.0.1 with it), allowing transfers out to loopback.
fn secondary(
    kind: &str,
    zone: &str,
    primary: SocketAddr,
    key: Option<&Key>,
    port: u16,
) -> Secondary {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let (ip, pport) = (primary.ip(), primary.port());
    let conf = match kind {
        "knot" => {
            let (keys, with) = match key {
                Some(k) => (
                    format!(
                        "key:\n  - id: {}\n    algorithm: hmac-sha256\n    secret: {}\n",
                        k.name, k.secret
                    ),
                    format!("    key: {}\n", k.name),
                ),
                None => (String::new(), String::new()),
            };
            format!(
                "server:\n    listen: 127.0.0.1@{port}\n    rundir: {d}\ndatabase:\n    storage: {d}\n{keys}\
                 remote:\n  - id: primary\n    address: {ip}@{pport}\n{with}\
                 acl:\n  - id: xfr\n    address: 127.0.0.0/8\n    action: transfer\n\
                 \x20 - id: notify\n    address: 127.0.0.0/8\n{with}    action: notify\n\
                 zone:\n  - domain: {zone}\n    storage: {d}\n    file: {d}/{zone}zone\n    master: primary\n    acl: [xfr, notify]\n"
            )
        }
        "nsd" => {
            let (keys, with) = match key {
                Some(k) => (
                    format!(
                        "key:\n    name: {}\n    algorithm: hmac-sha256\n    secret: \"{}\"\n",
                        k.name, k.secret
                    ),
                    k.name.to_string(),
                ),
                None => (String::new(), "NOKEY".to_string()),
            };
            format!(
                "server:\n    ip-address: 127.0.0.1@{port}\n    username: \"\"\n    zonesdir: \"{d}\"\n\
                 pidfile: \"{d}/nsd.pid\"\n    database: \"\"\n    xfrdfile: \"{d}/xfrd.state\"\n\
                 zonelistfile: \"{d}/zone.list\"\nremote-control:\n    control-enable: no\n{keys}\
                 zone:\n    name: {zone}\n    zonefile: {zone}zone\n    request-xfr: {ip}@{pport} {with}\n\
                 allow-notify: 127.0.0.1 {with}\n    provide-xfr: 127.0.0.0/8 NOKEY\n"
            )
        }
        _ => {
            let (keys, with) = match key {
                Some(k) => (k.bind_file(), format!(" key \"{}\"", k.name)),
                None => (String::new(), String::new()),
            };
            format!(
                "options {{\n directory \"{d}\";\n listen-on port {port} {{ 127.0.0.1; }};\n listen-on-v6 {{ none; }};\n\
                 pid-file \"{d}/named.pid\";\n session-keyfile \"{d}/session.key\";\n managed-keys-directory \"{d}\";\n\
                 recursion no;\n dnssec-validation no;\n notify no;\n allow-transfer {{ 127.0.0.0/8; }};\n}};\n\
                 controls {{ }};\n{keys}\
                 zone \"{zone}\" {{\n type secondary;\n primaries port {pport} {{ {ip}{with}; }};\n\
                 file \"{d}/zone.db\";\n allow-notify {{ 127.0.0.1; }};\n}};\n"
            )
        }
    };
    let (bin, args): (&str, &[&str]) = match kind {
        "knot" => ("knotd", &["-c"]),
        "nsd" => ("nsd", &["-d", "-c"]),
        _ => ("named", &["-g", "-c"]),
    };
    launch(bin, args, conf, dir, port)
}

/// Runs `bin` with `args` and then the path of `conf`, written into `dir`; it answers on
/// 127.0.0.1:`port`.
fn launch(bin: &str, args: &[&str], conf: String, dir: tempfile::TempDir, port: u16) -> Secondary {
    let path = dir.path().join("server.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(sbin(bin))
        .args(args)
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Secondary {
        addr: ([127, 0, 0, 1], port).into(),
        _child: KillOnDrop(child),
        _dir: dir,
    }
}

/// The records of an AXFR of `zone` from `server`, as text lines; None if refused or cut.
async fn axfr(server: SocketAddr, zone: &str) -> Option<BTreeSet<String>> {
    let mut s = TcpStream::connect(server).await.ok()?;
    let q = query_msg(zone, RecordType::AXFR, false).to_vec().unwrap();
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    s.write_all(&framed).await.ok()?;
    let mut records = BTreeSet::new();
    let mut soas = 0;
    while soas < 2 {
        let mut len = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut len))
            .await
            .ok()?
            .ok()?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await.ok()?;
        let m = Message::from_vec(&buf).ok()?;
        assert!(!m.truncation, "TC set in a transfer message from {server}");
        if m.response_code != ResponseCode::NoError || m.answers.is_empty() {
            return None;
        }
        for r in &m.answers {
            if r.record_type() == RecordType::SOA {
                soas += 1;
                if soas == 2 {
                    break;
                }
            }
            records.insert(format!(
                "{} {} {} {}",
                r.name.to_ascii().to_lowercase(),
                r.ttl,
                r.record_type(),
                r.data
            ));
        }
    }
    Some(records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_of_large_records_arrives_whole_in_knot_nsd_and_bind() {
    // 300 TXT records of 2,000 bytes each: about 600 KB, ten messages or more.
    let zones = tempfile::tempdir().unwrap();
    let chunk = format!("\"{}\"", "x".repeat(249));
    let mut text = String::from(
        "$TTL 300\n@ SOA ns1 hostmaster 7 3600 600 86400 300\n NS ns1\nns1 A 192.0.2.1\n",
    );
    for i in 0..300 {
        text += &format!("t{i} TXT {}\n", [chunk.as_str(); 8].join(" "));
    }
    std::fs::write(zones.path().join("big.test.zone"), text).unwrap();
    // The secondaries sign their requests: every message of the transfer is signed, each
    // MAC chained to the one before, and each secondary checks them all.
    let key = Key::new("big-xfr");
    let keyfile = zones.path().join("xfr.key");
    std::fs::write(&keyfile, key.bind_file()).unwrap();
    let server = format!(
        "allow_transfer = [\"127.0.0.0/8\"]\ntsig_keys = [{:?}]",
        keyfile.display().to_string()
    );
    let g = start_with("", &server, zones.path()).await;
    let ours = axfr(g.dns, "big.test.")
        .await
        .expect("gtmd transfers the zone");
    let txt = ours.iter().filter(|r| r.contains(" TXT ")).count();
    assert_eq!(txt, 300, "gtmd's own AXFR");

    for kind in ["knot", "nsd", "bind"] {
        let s = secondary(kind, "big.test.", g.dns, Some(&key), free_addr().port());
        let loaded = wait_until(Duration::from_secs(20), || async {
            let m = udp_raw(
                s.addr,
                &query_msg("big.test.", RecordType::SOA, false)
                    .to_vec()
                    .unwrap(),
                Duration::from_millis(300),
            )
            .await;
            m.and_then(|b| Message::from_vec(&b).ok())
                .is_some_and(|m| m.response_code == ResponseCode::NoError && m.authoritative)
        })
        .await;
        assert!(loaded.is_some(), "{kind} did not load the zone from gtmd");
        let theirs = axfr(s.addr, "big.test.")
            .await
            .unwrap_or_else(|| panic!("{kind} does not transfer the zone out"));
        let missing: Vec<&String> = ours.difference(&theirs).collect();
        let extra: Vec<&String> = theirs.difference(&ours).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{kind}: {} records missing, {} extra; first missing: {:?}",
            missing.len(),
            extra.len(),
            missing.first()
        );
        // And it answers the names, over TCP (each answer is 2 KB).
        let m = tcp(s.addr, &query_msg("t263.big.test.", RecordType::TXT, true)).await;
        assert_eq!(m.response_code, ResponseCode::NoError, "{kind}: {m:?}");
        assert_eq!(m.answers.len(), 1, "{kind}");
    }
}

/// The SOA serial `server` answers for `zone` over UDP, if it answers authoritatively.
async fn soa_serial(server: SocketAddr, zone: &str) -> Option<u32> {
    let q = query_msg(zone, RecordType::SOA, false).to_vec().unwrap();
    let b = udp_raw(server, &q, Duration::from_millis(300)).await?;
    let m = Message::from_vec(&b).ok()?;
    if m.response_code != ResponseCode::NoError || !m.authoritative {
        return None;
    }
    m.answers.iter().find_map(|r| match &r.data {
        hickory_proto::rr::RData::SOA(s) => Some(s.serial),
        _ => None,
    })
}

/// Polls every secondary at once until each answers `want` for `name`; the time each took.
async fn all_answer(
    secs: &[(&str, &Secondary)],
    name: &str,
    want: &[&str],
    limit: Duration,
) -> Vec<(String, Option<Duration>)> {
    let mut set = tokio::task::JoinSet::new();
    for (i, (kind, s)) in secs.iter().enumerate() {
        let (kind, addr, name) = (kind.to_string(), s.addr, name.to_string());
        let want: Vec<String> = want.iter().map(|w| w.to_string()).collect();
        set.spawn(async move {
            let took = wait_until(limit, || async { a_of(addr, &name).await == want }).await;
            (i, kind, took)
        });
    }
    let mut out = set.join_all().await;
    out.sort_by_key(|(i, _, _)| *i);
    out.into_iter().map(|(_, k, t)| (k, t)).collect()
}

const SEC_ZONE: &str =
    "$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 300\n NS ns1\nns1 A 127.0.0.1\n";

/// gtmd serving sec.test. (app.sec.test. bound to `b`, probed every 100 ms, fall and rise
/// 1) to secondaries at `ports` with TSIG key `key`, NOTIFYing them.
async fn primary(
    b: &[&Backend],
    key: &Key,
    ports: &[u16],
    extra: &str,
) -> (Gtmd, tempfile::TempDir) {
    let zones = tempfile::tempdir().unwrap();
    std::fs::write(zones.path().join("sec.test.zone"), SEC_ZONE).unwrap();
    let keyfile = zones.path().join("xfr.key");
    std::fs::write(&keyfile, key.bind_file()).unwrap();
    let notify: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let config = format!(
        "{}\n[zones.\"sec.test.\"]\nallow_transfer = [\"127.0.0.0/8\"]\ntransfer_keys = [\"{}\"]\nnotify = [{}]\n",
        web_config(b, extra, "app.sec.test."),
        key.name,
        notify.join(", ")
    );
    let server = format!("tsig_keys = [{:?}]", keyfile.display().to_string());
    (start_with(&config, &server, zones.path()).await, zones)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knot_nsd_and_bind_follow_health_within_seconds_through_notify_and_ixfr_with_tsig() {
    let mut b0 = Backend::start().await;
    let b1 = Backend::start().await;
    let key = Key::new("sec-xfr");
    let kinds = ["knot", "nsd", "bind"];
    let ports: Vec<u16> = kinds.iter().map(|_| free_addr().port()).collect();
    let (g, _zones) = primary(&[&b0, &b1], &key, &ports, "").await;
    let secs: Vec<Secondary> = kinds
        .iter()
        .zip(&ports)
        .map(|(k, &p)| secondary(k, "sec.test.", g.dns, Some(&key), p))
        .collect();
    let named: Vec<(&str, &Secondary)> = kinds.iter().copied().zip(secs.iter()).collect();
    let both = ["192.0.2.10", "192.0.2.11"];
    for (kind, took) in all_answer(&named, "app.sec.test.", &both, Duration::from_secs(30)).await {
        assert!(took.is_some(), "{kind} never answered gtmd's addresses");
    }
    // The detection bound of web_config: interval 100 ms x fall 1 + timeout 80 ms, plus one
    // interval of scheduling; the secondaries must follow within 2 s of it.
    let bound = Duration::from_millis(100 + 80 + 100) + Duration::from_secs(2);
    b0.refuse();
    for (kind, took) in all_answer(
        &named,
        "app.sec.test.",
        &["192.0.2.11"],
        Duration::from_secs(10),
    )
    .await
    {
        let took = took.unwrap_or_else(|| panic!("{kind} kept answering the refused member"));
        assert!(
            took <= bound,
            "{kind} followed the failure after {took:?} (bound {bound:?})"
        );
    }
    b0.restore().await;
    for (kind, took) in all_answer(&named, "app.sec.test.", &both, Duration::from_secs(10)).await {
        let took = took.unwrap_or_else(|| panic!("{kind} never took the member back"));
        assert!(
            took <= bound,
            "{kind} followed the recovery after {took:?} (bound {bound:?})"
        );
    }
    // Every secondary holds gtmd's serial, and took the changes as IXFR differences.
    let ours = soa_serial(g.dns, "sec.test.").await.unwrap();
    for (kind, s) in &named {
        assert_eq!(soa_serial(s.addr, "sec.test.").await, Some(ours), "{kind}");
    }
    let ixfr = metric(
        g.admin,
        "gtmd_transfers_total{zone=\"sec.test.\",kind=\"IXFR\"}",
    )
    .await;
    assert!(ixfr.unwrap_or(0.0) >= 6.0, "IXFRs served: {ixfr:?}");
    let answered = metric(
        g.admin,
        "gtmd_notify_total{zone=\"sec.test.\",secondary=\"127.0.0.1:",
    )
    .await;
    assert!(answered.is_some(), "NOTIFYs are counted");
    let st = status(g.admin).await;
    let zone = st["zones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["zone"] == "sec.test.")
        .unwrap()
        .clone();
    assert_eq!(zone["serial"], ours);
    for p in &ports {
        let n = &zone["notify"][format!("127.0.0.1:{p}")];
        assert_eq!(n["serial"], ours, "{zone}");
        assert_eq!(n["answered"], true, "{zone}");
    }
}

/// Runs `dig` with `args`; its standard output.
fn dig(args: &[&str]) -> String {
    let out = Command::new("dig")
        .args(args)
        .output()
        .expect("dig is installed (dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_without_the_right_key_is_refused_as_knot_refuses_it() {
    let b0 = Backend::start().await;
    let b1 = Backend::start().await;
    let key = Key::new("sec-xfr");
    let (g, _zones) = primary(&[&b0, &b1], &key, &[], "").await;
    let (at, port) = (format!("@{}", g.dns.ip()), g.dns.port().to_string());
    let axfr = |y: Option<String>| {
        let mut args = vec![
            at.clone(),
            "-p".into(),
            port.clone(),
            "sec.test.".into(),
            "AXFR".into(),
        ];
        if let Some(y) = y {
            args.extend(["-y".to_string(), y]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        dig(&args)
    };
    let good = axfr(Some(format!("hmac-sha256:{}:{}", key.name, key.secret)));
    assert!(
        good.contains("app.sec.test.") && !good.contains("failed"),
        "{good}"
    );
    // dig checks the TSIG of the response: a bad one would fail the transfer.
    let wrong = axfr(Some(format!(
        "hmac-sha256:{}:{}",
        key.name,
        Key::new("x").secret
    )));
    assert!(
        wrong.contains("BADSIG") && wrong.contains("Transfer failed"),
        "{wrong}"
    );
    let unknown = axfr(Some(format!("hmac-sha256:nobody:{}", key.secret)));
    assert!(
        unknown.contains("BADKEY") && unknown.contains("Transfer failed"),
        "{unknown}"
    );
    let none = axfr(None);
    assert!(
        none.contains("Transfer failed") && !none.contains("app.sec.test."),
        "{none}"
    );
    // A signed SOA query gets a signed answer (a secondary's refresh check).
    let soa = dig(&[
        &at,
        "-p",
        &port,
        "sec.test.",
        "SOA",
        "-y",
        &format!("hmac-sha256:{}:{}", key.name, key.secret),
    ]);
    assert!(
        soa.contains("status: NOERROR") && soa.contains("TSIG PSEUDOSECTION"),
        "{soa}"
    );
    assert!(!soa.contains("Couldn't verify"), "{soa}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_never_moves_a_secondarys_serial_backwards() {
    let b0 = Backend::start().await;
    let b1 = Backend::start().await;
    let key = Key::new("sec-xfr");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    std::fs::write(dir.path().join("zones/sec.test.zone"), SEC_ZONE).unwrap();
    std::fs::write(dir.path().join("xfr.key"), key.bind_file()).unwrap();
    let (dns, admin, knot_port) = (free_addr(), free_addr(), free_addr().port());
    let config = format!(
        "[server]\nlisten = [\"{dns}\"]\nzones_dir = \"zones\"\ntsig_keys = [\"xfr.key\"]\n\
         [zones.\"sec.test.\"]\nallow_transfer = [\"127.0.0.0/8\"]\ntransfer_keys = [\"{}\"]\nnotify = [\"127.0.0.1:{knot_port}\"]\n\
         {}",
        key.name,
        web_config(
            &[&b0, &b1],
            &format!("[admin]\nlisten = \"{admin}\"\nstate_file = \"state.json\""),
            "app.sec.test."
        )
    );
    let cfg = dir.path().join("gtmd.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut gtmd = KillOnDrop(spawn_gtmd(&cfg, admin));
    let knot = secondary("knot", "sec.test.", dns, Some(&key), knot_port);
    let same = |want: u32| {
        let addr = knot.addr;
        async move {
            wait_until(Duration::from_secs(20), || async {
                soa_serial(addr, "sec.test.").await == Some(want)
            })
            .await
            .is_some()
        }
    };
    let first = soa_serial(dns, "sec.test.").await.unwrap();
    assert!(same(first).await, "knot took serial {first}");
    // Twenty changes in a burst: the serial runs ahead of the clock (one per change).
    let body = |action: &str| serde_json::json!({ "target": "web/m0", "action": action, "reason": "drill" });
    for _ in 0..10 {
        gtmd::ops::ctl::request(admin, "POST", "/overrides", None, Some(&body("disable"))).unwrap();
        let clear = serde_json::json!({ "target": "web/m0" });
        gtmd::ops::ctl::request(admin, "POST", "/overrides/clear", None, Some(&clear)).unwrap();
    }
    let ahead = soa_serial(dns, "sec.test.").await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    assert!(
        gtmd::dns::snapshot::serial_gt(ahead, now + 5),
        "serial {ahead} at time {now}"
    );
    assert!(same(ahead).await, "knot took serial {ahead}");
    // Killed without a chance to save anything, and started again at once: the content is
    // the same, and so is the serial.
    drop(gtmd);
    gtmd = KillOnDrop(spawn_gtmd(&cfg, admin));
    let after = soa_serial(dns, "sec.test.").await.unwrap();
    assert_eq!(
        after, ahead,
        "after a restart with nothing changed gtmd serves serial {after}, not {ahead}"
    );
    assert!(
        same(after).await,
        "knot took serial {after} after the restart"
    );
    drop(gtmd);
}

#[test]
fn the_secondaries_example_loads_with_its_key_and_zone() {
    let dir = repo().join("dist/examples/secondaries");
    let cfg = gtmd::config::Config::load(&dir.join("gtmd.toml")).expect("the example is valid");
    let zones = cfg.load_zones().expect("its zones load");
    assert_eq!(zones.iter().count(), 1);
    let t = &cfg.wire.transfer;
    assert_eq!(t.keys.len(), 1);
    let zone = t.zones.values().next().unwrap();
    assert_eq!(zone.notify, ["127.0.0.1:5381".parse().unwrap()]);
    // knot.conf holds the same secret as the key file gtmd reads.
    let knot = std::fs::read_to_string(dir.join("knot.conf")).unwrap();
    let secret = data_encoding::BASE64.encode(t.keys[0].key());
    assert!(
        knot.contains(&format!("secret: {secret}")),
        "knot.conf and keys/transfer.key differ"
    );
}

/// Starts `kind` ("knot" or "bind") on 127.0.0.1:`port` configured with nothing but the
/// catalog zone catalog.invalid. of `primary`: its member zones come from the catalog.
fn catalog_consumer(kind: &str, port: u16, primary: SocketAddr) -> Secondary {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let (ip, pport) = (primary.ip(), primary.port());
    let (conf, bin, args): (String, &str, Vec<&str>) = if kind == "knot" {
        (
            format!(
                "server:\n    listen: 127.0.0.1@{port}\n    rundir: {d}\ndatabase:\n    storage: {d}\n\
                 remote:\n  - id: gtmd\n    address: {ip}@{pport}\n\
                 acl:\n  - id: notify\n    address: 127.0.0.0/8\n    action: notify\n\
                 template:\n  - id: default\n    storage: {d}\n  - id: member\n    storage: {d}\n    master: gtmd\n    acl: notify\n\
                 zone:\n  - domain: catalog.invalid.\n    master: gtmd\n    acl: notify\n    catalog-role: interpret\n    catalog-template: member\n"
            ),
            "knotd",
            vec!["-c"],
        )
    } else {
        (
            format!(
                "options {{\n directory \"{d}\";\n listen-on port {port} {{ 127.0.0.1; }};\n listen-on-v6 {{ none; }};\n\
                 pid-file \"{d}/named.pid\";\n session-keyfile \"{d}/session.key\";\n managed-keys-directory \"{d}\";\n\
                 recursion no;\n dnssec-validation no;\n notify no;\n allow-new-zones yes;\n\
                 catalog-zones {{ zone \"catalog.invalid\" default-primaries port {pport} {{ {ip}; }} in-memory yes; }};\n}};\n\
                 controls {{ }};\n\
                 zone \"catalog.invalid\" {{\n type secondary;\n primaries port {pport} {{ {ip}; }};\n\
                 file \"{d}/catalog.db\";\n allow-notify {{ 127.0.0.1; }};\n}};\n"
            ),
            "named",
            vec!["-g", "-c"],
        )
    };
    launch(bin, &args, conf, dir, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knot_and_bind_learn_a_new_zone_from_the_catalog_without_their_config_edited() {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    let zone = |name: &str| {
        format!("$TTL 300\n@ SOA ns1.{name} hostmaster.{name} 1 3600 600 86400 300\n NS ns1\nns1 A 192.0.2.1\n")
    };
    std::fs::write(zones.join("a.test.zone"), zone("a.test.")).unwrap();
    let kinds = ["knot", "bind"];
    let ports: Vec<u16> = kinds.iter().map(|_| free_addr().port()).collect();
    let notify: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let cfg = dir.path().join("gtmd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nzones_dir = \"zones\"\nallow_transfer = [\"127.0.0.0/8\"]\n\
             catalog_zone = \"catalog.invalid.\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [zones.\"catalog.invalid.\"]\nallow_transfer = [\"127.0.0.0/8\"]\nnotify = [{}]\n",
            notify.join(", ")
        ),
    )
    .unwrap();
    let g = start_file(&cfg).await;
    let consumers: Vec<(&str, Secondary)> = kinds
        .iter()
        .zip(&ports)
        .map(|(k, &p)| (*k, catalog_consumer(k, p, g.dns)))
        .collect();
    let serves = |addr: SocketAddr, zone: &'static str| async move {
        wait_until(Duration::from_secs(20), || async {
            soa_serial(addr, zone).await.is_some()
        })
        .await
        .is_some()
    };
    for (kind, c) in &consumers {
        assert!(
            serves(c.addr, "a.test.").await,
            "{kind} took a.test. from the catalog"
        );
        assert!(soa_serial(c.addr, "b.test.").await.is_none(), "{kind}");
    }
    // A new zone file and a reload: the catalog's serial moves, each is told and takes it.
    std::fs::write(zones.join("b.test.zone"), zone("b.test.")).unwrap();
    gtmd::ops::ctl::request(g.admin, "POST", "/reload", None, None).unwrap();
    for (kind, c) in &consumers {
        assert!(
            serves(c.addr, "b.test.").await,
            "{kind} took b.test. from the catalog after a reload"
        );
    }
    let catalog = axfr(g.dns, "catalog.invalid.").await.unwrap();
    assert!(
        catalog
            .iter()
            .any(|r| r.starts_with("version.catalog.invalid. 0 TXT 2")),
        "{catalog:?}"
    );
    assert_eq!(
        catalog.iter().filter(|r| r.contains(" PTR ")).count(),
        2,
        "{catalog:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_name_in_a_nested_zone_answers_and_transfers_with_that_zone() {
    let b0 = Backend::start().await;
    let b1 = Backend::start().await;
    // s.zone is read before sub.s.zone: the parent comes first.
    let zones = tempfile::tempdir().unwrap();
    let soa = |z: &str| {
        format!("$TTL 300\n@ SOA ns1.{z} hostmaster.{z} 1 3600 600 86400 300\n NS ns1\nns1 A 192.0.2.1\n")
    };
    std::fs::write(
        zones.path().join("s.zone"),
        soa("s.") + "sub NS ns1.sub\nns1.sub A 192.0.2.2\n",
    )
    .unwrap();
    std::fs::write(zones.path().join("sub.s.zone"), soa("sub.s.")).unwrap();
    let config = web_config(&[&b0, &b1], "", "app.sub.s.");
    let g = start_with(&config, "allow_transfer = [\"127.0.0.0/8\"]", zones.path()).await;
    assert_eq!(
        a_of(g.dns, "app.sub.s.").await,
        ["192.0.2.10", "192.0.2.11"]
    );
    let sub = axfr(g.dns, "sub.s.").await.unwrap();
    assert!(sub.iter().any(|r| r.starts_with("app.sub.s. ")), "{sub:?}");
    let parent = axfr(g.dns, "s.").await.unwrap();
    assert!(
        !parent.iter().any(|r| r.starts_with("app.sub.s. ")),
        "{parent:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_zone_file_reaches_knot_as_a_difference() {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    let text = "$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 300\n NS ns1\nns1 A 192.0.2.1\n";
    std::fs::write(zones.join("e.test.zone"), text).unwrap();
    let port = free_addr().port();
    let cfg = dir.path().join("gtmd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nzones_dir = \"zones\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [zones.\"e.test.\"]\nallow_transfer = [\"127.0.0.0/8\"]\nnotify = [\"127.0.0.1:{port}\"]\n"
        ),
    )
    .unwrap();
    let g = start_file(&cfg).await;
    let knot = secondary("knot", "e.test.", g.dns, None, port);
    let ours = soa_serial(g.dns, "e.test.").await.unwrap();
    let took = wait_until(Duration::from_secs(20), || async {
        soa_serial(knot.addr, "e.test.").await == Some(ours)
    })
    .await;
    assert!(took.is_some(), "knot loaded the zone");
    std::fs::write(
        zones.join("e.test.zone"),
        format!("{text}www A 192.0.2.80\n"),
    )
    .unwrap();
    gtmd::ops::ctl::request(g.admin, "POST", "/reload", None, None).unwrap();
    let took = wait_until(Duration::from_secs(10), || async {
        a_of(knot.addr, "www.e.test.").await == ["192.0.2.80"]
    })
    .await;
    assert!(took.is_some(), "knot took the edit");
    let kind = |k: &str| format!("gtmd_transfers_total{{zone=\"e.test.\",kind=\"{k}\"}}");
    assert_eq!(
        metric(g.admin, &kind("IXFR")).await,
        Some(1.0),
        "the edit as a difference"
    );
    assert_eq!(
        metric(g.admin, &kind("AXFR")).await,
        Some(1.0),
        "the first load only"
    );
}
