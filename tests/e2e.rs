//! End to end: the gtmd binary (release, under `cargo test --release`), queried with the real
//! `dig`, with a real HTTP backend that the test stops and starts again.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

struct Proc {
    child: KillOnDrop,
    lines: mpsc::Receiver<String>,
}

fn spawn(args: &[&str], cwd: &Path) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gtmd"));
    cmd.args(args).current_dir(cwd);
    spawn_cmd(cmd)
}

/// Starts `cmd` (the gtmd binary), its stderr echoed and passed on line by line.
fn spawn_cmd(mut cmd: Command) -> Proc {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("gtmd| {l}");
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    Proc {
        child: KillOnDrop(child),
        lines,
    }
}

/// Waits for a log line containing `needle` and returns the value of `key=` in it.
fn log_value(p: &Proc, needle: &str, key: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match p.lines.recv_timeout(left) {
            Ok(l) if l.contains(needle) => {
                let v = l.split(&format!("{key}=")).nth(1).expect("key in line");
                return v.split_whitespace().next().unwrap().to_string();
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("gtmd never logged {needle:?}");
}

fn dig(args: &[&str]) -> String {
    let out = Command::new("dig")
        .args(["+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig is installed (apt-get install -y dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn dig_short(port: &str, args: &[&str]) -> Vec<String> {
    let mut a = vec!["@127.0.0.1", "-p", port, "+short"];
    a.extend_from_slice(args);
    let mut v: Vec<String> = dig(&a).lines().map(str::to_string).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_sees_a_backend_leave_and_return_and_sigterm_exits_cleanly() {
    let mut eu = Backend::start().await;
    let us = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nzones_dir = {:?}\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [checks.web]\ntype = \"http\"\npath = \"/\"\ninterval = \"500ms\"\ntimeout = \"300ms\"\nfall = 3\nrise = 2\n\
         [pools.web]\ncheck = \"web\"\nmembers = [\n\
           {{ address = \"192.0.2.10\", name = \"eu\", probe_address = \"127.0.0.1\", probe_port = {} }},\n\
           {{ address = \"192.0.2.20\", name = \"us\", probe_address = \"127.0.0.1\", probe_port = {} }},\n]\n\
         [names.\"app.example.test.\"]\npools = [\"web\"]\nttl = 5\n",
        repo().join("zones").display().to_string(),
        eu.addr.port(),
        us.addr.port()
    );
    let path = dir.path().join("gtmd.toml");
    std::fs::write(&path, config).unwrap();
    let mut p = spawn(&["--config", path.to_str().unwrap()], dir.path());
    let udp = log_value(&p, "serving DNS", "udp");
    let port = udp.rsplit(':').next().unwrap().to_string();

    let both = vec!["192.0.2.10".to_string(), "192.0.2.20".to_string()];
    assert_eq!(dig_short(&port, &["app.example.test", "A"]), both);
    assert_eq!(
        dig_short(&port, &["+tcp", "www.example.test", "AAAA"]),
        vec!["2001:db8::80"]
    );
    let nx = dig(&["@127.0.0.1", "-p", &port, "+norec", "nx.example.test", "A"]);
    assert!(
        nx.contains("status: NXDOMAIN") && nx.contains("flags: qr aa;"),
        "{nx}"
    );
    let full = dig(&["@127.0.0.1", "-p", &port, "app.example.test", "A"]);
    assert!(
        full.contains("app.example.test.\t5\tIN\tA"),
        "the bound name's TTL: {full}"
    );

    eu.refuse();
    let t0 = Instant::now();
    assert!(poll(Duration::from_secs(10), || dig_short(
        &port,
        &["app.example.test"]
    ) == ["192.0.2.20"]));
    eprintln!(
        "e2e: dig saw the dead backend leave after {:?}",
        t0.elapsed()
    );
    eu.restore().await;
    assert!(poll(Duration::from_secs(10), || dig_short(
        &port,
        &["app.example.test"]
    ) == both));

    let kill = Command::new("kill")
        .args(["-TERM", &p.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert_eq!(
        wait_exit(&mut p.child, Duration::from_secs(10)),
        Some(0),
        "SIGTERM exits 0"
    );
}

/// The README's run command (no --config: the embedded sample on 127.0.0.1:5353, admin on
/// 127.0.0.1:8053, zones/ from the working directory) and the README's dig lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_default_answers_the_readme_dig_lines() {
    let p = spawn(&[], &repo());
    let udp = log_value(&p, "serving DNS", "udp");
    assert_eq!(udp, "127.0.0.1:5353");
    assert_eq!(
        dig_short("5353", &["app.example.test", "A"]),
        vec!["192.0.2.10"]
    );
    assert_eq!(
        dig_short("5353", &["app.example.test", "AAAA"]),
        vec!["2001:db8::10"]
    );
    assert_eq!(dig_short("5353", &["www.example.test"]), vec!["192.0.2.80"]);
    assert_eq!(
        dig_short("5353", &["geo.example.test", "A"]),
        vec!["192.0.2.30"]
    );
    assert_eq!(
        dig_short(
            "5353",
            &["geo.example.test", "A", "+subnet=198.51.100.0/24"]
        ),
        vec!["192.0.2.40"]
    );
    let out = Command::new("curl")
        .args(["-s", "http://127.0.0.1:8053/status"])
        .output();
    if let Ok(out) = out {
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(
            s.contains("\"state\":\"down\"") && s.contains("\"state\":\"up\""),
            "{s}"
        );
    }
}

fn check_config(file: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gtmd"))
        .args(["check-config", file.to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn check_config_names_file_line_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    std::fs::copy(
        repo().join("zones/example.test.zone"),
        zones.join("example.test.zone"),
    )
    .unwrap();
    let good = dir.path().join("good.toml");
    std::fs::copy(repo().join("dist/gtmd.toml"), &good).unwrap();
    let (ok, out) = check_config(&good);
    assert!(ok, "{out}");
    assert!(
        out.contains("ok (1 zones, 3 pools, 5 members, 2 bound names)"),
        "{out}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[server]\nlisten = [\"127.0.0.1:53\"]\nlisen = 1\n").unwrap();
    let (ok, out) = check_config(&bad);
    assert!(!ok);
    assert!(
        out.contains("bad.toml:3: server.lisen: unknown field `lisen`, expected one of"),
        "{out}"
    );

    let sample = std::fs::read_to_string(&good).unwrap();
    let line = 1 + sample
        .lines()
        .position(|l| l.starts_with("timeout = \"500ms\""))
        .unwrap();
    std::fs::write(
        &bad,
        sample.replace("timeout = \"500ms\"", "timeout = \"5s\""),
    )
    .unwrap();
    let (ok, out) = check_config(&bad);
    assert!(!ok);
    let want =
        format!("bad.toml:{line}: checks.admin-http.timeout: must be above 0 and below interval");
    assert!(out.contains(&want), "{out}");

    let zone = std::fs::read_to_string(zones.join("example.test.zone"))
        .unwrap()
        .replace("www     IN A    192.0.2.80", "www     IN A    192.0.2.800");
    std::fs::write(zones.join("example.test.zone"), zone).unwrap();
    let (ok, out) = check_config(&good);
    assert!(!ok);
    assert!(out.contains("example.test.zone:19: bad A data"), "{out}");
    std::fs::copy(
        repo().join("zones/example.test.zone"),
        zones.join("example.test.zone"),
    )
    .unwrap();

    let zone = std::fs::read_to_string(zones.join("example.test.zone")).unwrap();
    let at = zone.lines().count() + 1;
    std::fs::write(
        zones.join("example.test.zone"),
        zone + "app IN A 192.0.2.1\n",
    )
    .unwrap();
    let (ok, out) = check_config(&good);
    assert!(!ok);
    assert!(
        out.contains("good.toml:")
            && out.contains("names.\"app.example.test.\": app.example.test. is bound to pools but")
            && out.contains(&format!("example.test.zone:{at} gives it A records")),
        "{out}"
    );
}

fn poll(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn wait_exit(c: &mut Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(s)) = c.try_wait() {
            return s.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// systemd's notify protocol, with a fake NOTIFY_SOCKET: READY=1 only once DNS is served,
/// watchdog pings, RELOADING=1 then READY=1 around a SIGHUP's reload, STOPPING=1 on SIGTERM.
#[test]
fn systemd_hears_ready_watchdog_reloading_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let config = dir.path().join("gtmd.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nzones_dir = {:?}\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            repo().join("zones").display().to_string()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gtmd"));
    cmd.args(["--config", config.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "200000");
    let mut p = spawn_cmd(cmd); // killed on drop, whatever happens below
    let mut buf = [0u8; 512];
    let mut recv = || {
        let n = sock.recv(&mut buf).expect("a notification within 10 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = recv();
    assert!(first.contains("READY=1"), "{first}");
    // Once READY is sent, DNS answers.
    let udp = log_value(&p, "serving DNS", "udp");
    let port = udp.rsplit(':').next().unwrap();
    assert_eq!(dig_short(port, &["www.example.test"]), vec!["192.0.2.80"]);
    // Watchdog pings at half of WATCHDOG_USEC.
    let start = Instant::now();
    let mut pings = 0;
    while pings < 3 {
        if recv().contains("WATCHDOG=1") {
            pings += 1;
        }
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    // SIGHUP reloads: RELOADING=1 with the monotonic time systemd asks for, then READY=1.
    let pid = p.child.id().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let mut reloading = recv();
    while reloading.contains("WATCHDOG=1") {
        reloading = recv();
    }
    assert!(reloading.contains("RELOADING=1"), "{reloading}");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    let mut ready = recv();
    while ready.contains("WATCHDOG=1") {
        ready = recv();
    }
    assert!(ready.contains("READY=1"), "{ready}");
    assert!(p.child.try_wait().unwrap().is_none(), "SIGHUP stopped gtmd");
    // SIGTERM says STOPPING=1 and exits 0.
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let mut stopping = false;
    while !stopping {
        stopping = recv().contains("STOPPING=1");
    }
    assert_eq!(wait_exit(&mut p.child, Duration::from_secs(10)), Some(0));
}

/// The systemd units in dist/ pass `systemd-analyze verify` (with ExecStart pointing at the
/// binary under test, since /usr/bin/gtmd is not installed here).
#[test]
fn the_systemd_unit_verifies() {
    verify_unit(
        "gtmd.service",
        &[
            "Type=notify",
            "WatchdogSec=",
            "StateDirectory=gtmd",
            "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        ],
    );
}

#[test]
fn the_agent_unit_verifies() {
    verify_unit(
        "gtmd-agent.service",
        &[
            "Type=notify",
            "gtmd agent --config",
            "StateDirectory=gtmd-agent",
        ],
    );
}

fn verify_unit(name: &str, keys: &[&str]) {
    let unit = std::fs::read_to_string(repo().join("dist").join(name)).unwrap();
    for key in keys {
        assert!(unit.contains(key), "{key}");
    }
    assert_unit_verifies(name, &unit, Path::new(env!("CARGO_BIN_EXE_gtmd")));
}
