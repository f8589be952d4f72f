//! Zone files from the outside: a device, a FIFO or a file beyond a zone's size, in the zones
//! directory or named by `$INCLUDE`, is refused at once with its file and line, by the real
//! `gtmd check-config` and by a reload of a running server, which keeps serving the zones it
//! had. Also: an included file that itself begins with `$INCLUDE`, and TTLs of 2^31 or more
//! (RFC 2181 section 8).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::rr::RecordType;

const ZONE: &str = "$ORIGIN example.test.\n$TTL 300\n@ IN SOA ns1 host 1 7200 3600 1209600 300\n\
                    @ IN NS ns1\nns1 IN A 192.0.2.1\nwww IN A 192.0.2.80\n";

/// How long a refusal may take before the test calls it a hang. A refusal takes
/// milliseconds; the bound is for a loaded machine, not a speed claim.
const HANG: Duration = Duration::from_secs(20);

/// A configuration file on port 0 and its zones directory, holding example.test.
struct Files {
    dir: tempfile::TempDir,
    config: PathBuf,
    zone: PathBuf,
}

impl Files {
    fn new(zone_text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("zones")).unwrap();
        let zone = dir.path().join("zones/example.test.zone");
        std::fs::write(&zone, zone_text).unwrap();
        let config = dir.path().join("gtmd.toml");
        std::fs::write(
            &config,
            "[server]\nlisten = [\"127.0.0.1:0\"]\nzones_dir = \"zones\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n",
        )
        .unwrap();
        Files { dir, config, zone }
    }

    /// A path in the zones directory.
    fn at(&self, name: &str) -> PathBuf {
        self.dir.path().join("zones").join(name)
    }

    /// Makes a FIFO at `path`.
    fn fifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    }
}

/// Runs the gtmd binary's `check-config` on `config`: whether it passed, and what it said. A
/// run still going after [`HANG`] is killed and fails the test.
fn check_config(config: &Path) -> (bool, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_gtmd"))
        .args(["check-config", config.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < HANG,
            "check-config still running after {HANG:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (status.success(), out)
}

/// check-config fails, naming the zone file's `line` and saying `what`.
fn refused(f: &Files, line: usize, what: &str) {
    let (ok, out) = check_config(&f.config);
    assert!(!ok, "check-config passed: {out}");
    let want = format!("{}:{line}: $INCLUDE", f.zone.display());
    assert!(out.contains(&want), "{out} should contain {want}");
    assert!(out.contains(what), "{out} should say {what}");
}

#[test]
fn an_include_of_dev_zero_is_refused_at_once_with_its_file_and_line() {
    let f = Files::new(&format!("{ZONE}$INCLUDE /dev/zero\n"));
    refused(&f, 7, "/dev/zero: a character device, not a regular file");
}

#[test]
fn an_include_of_a_fifo_is_refused_at_once_without_waiting_for_a_writer() {
    let f = Files::new(&format!("{ZONE}$INCLUDE pipe.inc\n"));
    Files::fifo(&f.at("pipe.inc"));
    refused(&f, 7, "pipe.inc: a FIFO, not a regular file");
}

#[test]
fn a_zone_file_that_is_a_fifo_is_refused_at_once() {
    let f = Files::new(ZONE);
    Files::fifo(&f.at("other.test.zone"));
    let (ok, out) = check_config(&f.config);
    assert!(!ok, "check-config passed: {out}");
    let want = format!("{}: cannot read: a FIFO", f.at("other.test.zone").display());
    assert!(out.contains(&want), "{out} should contain {want}");
}

#[test]
fn an_include_larger_than_a_zone_may_be_is_refused_without_being_read() {
    let f = Files::new(&format!("{ZONE}$INCLUDE huge.inc\n"));
    // 2 GiB, sparse: its size says it is too large before a byte is read.
    let huge = std::fs::File::create(f.at("huge.inc")).unwrap();
    huge.set_len(2 << 30).unwrap();
    refused(
        &f,
        7,
        "larger than 1073741824 bytes together, the limit of one zone",
    );
}

#[test]
fn an_included_file_that_begins_with_include_is_zone_data() {
    let f = Files::new(&format!("{ZONE}$INCLUDE sub/b.inc\n"));
    std::fs::create_dir(f.at("sub")).unwrap();
    std::fs::write(f.at("sub/b.inc"), "$INCLUDE c.inc\nb IN A 192.0.2.2\n").unwrap();
    std::fs::write(f.at("sub/c.inc"), "c IN A 192.0.2.3\n").unwrap();
    let (ok, out) = check_config(&f.config);
    assert!(ok, "{out}");
    // An error under it is shown as it is, not as "not zone data".
    std::fs::write(
        f.at("sub/b.inc"),
        "$INCLUDE missing.inc\nb IN A 192.0.2.2\n",
    )
    .unwrap();
    let (ok, out) = check_config(&f.config);
    assert!(!ok, "{out}");
    let want = format!("{}:1: $INCLUDE", f.at("sub/b.inc").display());
    assert!(out.contains(&want), "{out} should contain {want}");
    assert!(out.contains("missing.inc: No such file"), "{out}");
    assert!(!out.contains("not zone data"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_of_2_to_the_31_or_more_is_read_as_zero() {
    let f = Files::new(&format!(
        "{ZONE}big 2147483648 IN A 192.0.2.9\nhuge 4294967295 IN A 192.0.2.10\n\
         max 2147483647 IN A 192.0.2.11\n"
    ));
    let (ok, out) = check_config(&f.config);
    assert!(ok, "{out}");
    let g = start_file(&f.config).await;
    for (name, ttl) in [("big", 0), ("huge", 0), ("max", 2147483647)] {
        let m = udp(
            g.dns,
            &query_msg(&format!("{name}.example.test."), RecordType::A, false),
        )
        .await;
        assert_eq!(m.answers.len(), 1, "{name}: {m:?}");
        assert_eq!(m.answers[0].ttl, ttl, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_onto_a_device_or_fifo_is_refused_and_the_last_good_zones_stay() {
    let f = Files::new(ZONE);
    let g = start_file(&f.config).await;
    assert_eq!(
        answer(g.dns, "www.example.test.", RecordType::A).await,
        ["192.0.2.80"]
    );
    Files::fifo(&f.at("pipe.inc"));
    for target in ["/dev/zero", "pipe.inc"] {
        std::fs::write(
            &f.zone,
            format!("{ZONE}new IN A 192.0.2.81\n$INCLUDE {target}\n"),
        )
        .unwrap();
        let r = reqwest::Client::new()
            .post(format!("http://{}/reload", g.admin))
            .header("content-type", "application/json")
            .timeout(HANG)
            .send()
            .await
            .expect("the reload answers");
        let code = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_eq!(code, 422, "{body}");
        let want = format!("{}:8: $INCLUDE", f.zone.display());
        assert!(body.contains(&want), "{body} should contain {want}");
        assert!(body.contains("not a regular file"), "{body}");
        assert_eq!(
            answer(g.dns, "www.example.test.", RecordType::A).await,
            ["192.0.2.80"]
        );
        assert!(answer(g.dns, "new.example.test.", RecordType::A)
            .await
            .is_empty());
    }
}
