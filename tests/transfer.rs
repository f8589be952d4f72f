//! Zone transfers into real secondaries: Knot DNS and NSD pull a zone from gtmd by AXFR and
//! must then hold every record of it. Needs `knotd` and `nsd` (`.ci/run` installs them).

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
    panic!("{bin} is not installed: apt-get install -y knot nsd (see .ci/run)");
}

/// Starts `kind` ("knot" or "nsd") as a secondary of `zone` with `primary` as its primary,
/// allowing transfers out to loopback.
fn secondary(kind: &str, zone: &str, primary: SocketAddr) -> Secondary {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let port = free_addr().port();
    let conf = if kind == "knot" {
        format!(
            "server:\n    listen: 127.0.0.1@{port}\n    rundir: {d}\ndatabase:\n    storage: {d}\n\
             remote:\n  - id: primary\n    address: {}@{}\n\
             acl:\n  - id: xfr\n    address: 127.0.0.0/8\n    action: [transfer, notify]\n\
             zone:\n  - domain: {zone}\n    storage: {d}\n    file: {d}/{zone}zone\n    master: primary\n    acl: xfr\n",
            primary.ip(),
            primary.port()
        )
    } else {
        format!(
            "server:\n    ip-address: 127.0.0.1@{port}\n    username: \"\"\n    zonesdir: \"{d}\"\n\
             pidfile: \"{d}/nsd.pid\"\n    database: \"\"\n    xfrdfile: \"{d}/xfrd.state\"\n\
             zonelistfile: \"{d}/zone.list\"\nremote-control:\n    control-enable: no\n\
             zone:\n    name: {zone}\n    zonefile: {zone}zone\n    request-xfr: {}@{} NOKEY\n\
             allow-notify: 127.0.0.1 NOKEY\n    provide-xfr: 127.0.0.0/8 NOKEY\n",
            primary.ip(),
            primary.port()
        )
    };
    let conf_path = dir.path().join("secondary.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let conf_path = conf_path.display().to_string();
    let (bin, args) = if kind == "knot" {
        ("knotd", vec!["-c", conf_path.as_str()])
    } else {
        ("nsd", vec!["-d", "-c", conf_path.as_str()])
    };
    let child = Command::new(sbin(bin))
        .args(&args)
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
async fn a_zone_of_large_records_arrives_whole_in_knot_and_nsd() {
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
    let g = start_with("", "allow_transfer = [\"127.0.0.0/8\"]", zones.path()).await;
    let ours = axfr(g.dns, "big.test.")
        .await
        .expect("gtmd transfers the zone");
    let txt = ours.iter().filter(|r| r.contains(" TXT ")).count();
    assert_eq!(txt, 300, "gtmd's own AXFR");

    for kind in ["knot", "nsd"] {
        let s = secondary(kind, "big.test.", g.dns);
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
