//! DNSSEC helpers shared by the signing tests: keys made by `gtmd dnssec keygen`, `delv`
//! with a trust anchor (bind9-dnsutils), and the key tags a server publishes and signs with.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::op::Message;
use hickory_proto::rr::{RData, RecordType};

/// Runs the gtmd binary with `args`; its standard output (panics if it fails).
pub fn gtmd_bin(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gtmd"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gtmd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A key for example.test. made by `gtmd dnssec keygen` in `dir`; returns its base path.
pub fn keygen(dir: &Path, extra: &[&str]) -> PathBuf {
    let mut args = vec![
        "dnssec",
        "keygen",
        "example.test",
        "--dir",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    PathBuf::from(gtmd_bin(&args).trim())
}

/// The key tag in a BIND key's base name (`Kexample.test.+013+01234` → `1234`).
pub fn tag_of(key: &Path) -> String {
    let s = key.to_string_lossy();
    let t = s.rsplit('+').next().unwrap().trim_start_matches('0');
    if t.is_empty() { "0" } else { t }.to_string()
}

/// `delv` for `name`/`rtype` through `server`, anchored at example.test.; its output.
pub fn delv(server: SocketAddr, anchor: &str, name: &str, rtype: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let anchors = dir.path().join("anchors.conf");
    std::fs::write(
        &anchors,
        format!(
            "trust-anchors {{ example.test. static-ds {}; }};\n",
            quoted_digest(anchor)
        ),
    )
    .unwrap();
    let out = Command::new("delv")
        .args(["@127.0.0.1", "-p", &server.port().to_string(), "-a"])
        .arg(&anchors)
        .args(["+root=example.test", name, rtype])
        .output()
        .expect("delv is installed (apt-get install bind9-dnsutils)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// "TAG ALG DT DIGEST" with the digest quoted, as trust-anchors wants it.
pub fn quoted_digest(anchor: &str) -> String {
    let (head, digest) = anchor.rsplit_once(' ').unwrap();
    format!("{head} \"{digest}\"")
}

pub fn assert_delv(server: SocketAddr, anchor: &str, name: &str, rtype: &str, expect: &str) {
    let out = delv(server, anchor, name, rtype);
    assert!(
        out.contains(expect),
        "delv {name} {rtype}: expected {expect:?}:\n{out}"
    );
}

/// `name`/`rtype` asked of `server` with the DO bit.
pub async fn signed_answer(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let mut q = super::query_msg(name, rtype, true);
    if let Some(e) = q.edns.as_mut() {
        e.set_dnssec_ok(true);
    }
    super::udp(server, &q).await
}

/// The key tags of the RRSIGs in an answer (answer and authority sections).
pub fn signers(m: &Message) -> BTreeSet<u16> {
    m.answers
        .iter()
        .chain(m.authorities.iter())
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::RRSIG(s)) => Some(s.input().key_tag),
            _ => None,
        })
        .collect()
}

/// The key tags of the DNSKEY set `server` publishes for example.test.
pub async fn published(server: SocketAddr) -> BTreeSet<u16> {
    let m = signed_answer(server, "example.test.", RecordType::DNSKEY).await;
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::DNSKEY(k)) => k.calculate_key_tag().ok(),
            _ => None,
        })
        .collect()
}
