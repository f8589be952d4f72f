//! The Debian package where systemd is PID 1: a minimal Debian 12 root (debootstrap, from the
//! host's own apt mirror) booted by systemd-nspawn in a network namespace of its own. Inside it
//! the package installs without starting gtmd; `systemctl enable --now gtmd` reaches ready
//! (Type=notify) and dig answers; a reload takes a good edit and refuses a bad one (the running
//! configuration is kept and the journal names the file, line and problem); an upgrade restarts
//! the running service; a stop is clean; a removal keeps the conffiles and a purge takes them.
//! Needs root, debootstrap and systemd-container (`.ci/run` installs them), and the mirror.
//! Every wait is bounded; the container and its root go when the test ends, however it ends.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::repo;

/// The Debian release of the root; the package is built on (and for) it.
const SUITE: &str = "bookworm";

/// Runs `cmd`, killed after `secs` seconds (coreutils' timeout), and returns its output.
fn bounded(secs: u64, cmd: &mut Command) -> Output {
    let prog = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut t = Command::new("timeout");
    t.args(["--kill-after=5", &secs.to_string()])
        .arg(&prog)
        .args(&args);
    if let Some(dir) = cmd.get_current_dir() {
        t.current_dir(dir);
    }
    t.output().unwrap_or_else(|e| panic!("{prog:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The host's Debian mirror: the first URI of the apt source that carries `SUITE`.
fn mirror() -> String {
    let deb822 =
        std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    for stanza in deb822.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                .unwrap_or_default()
        };
        if field("Suites:").iter().any(|s| s == SUITE) {
            if let Some(uri) = field("URIs:").into_iter().next() {
                return uri;
            }
        }
    }
    let list = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    for line in list.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() >= 3 && w[0] == "deb" && w[2] == SUITE {
            return w[1].to_string();
        }
    }
    panic!("no apt source for {SUITE} in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list");
}

/// A booted container. Dropping it kills its init and systemd-nspawn, then removes its root.
struct Container {
    nspawn: Child,
    leader: u32,
    log: PathBuf,
    _root: tempfile::TempDir,
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() && self.leader != 0 {
            let journal = self.sh(20, "journalctl -u gtmd --no-pager -n 30").1;
            eprintln!("gtmd's journal in the container:\n{journal}");
        }
        // Never kill(0): that would be this test's whole process group.
        if self.leader != 0 {
            // SAFETY: plain kill(2) of the container's init, which this test started.
            unsafe { libc::kill(self.leader as i32, libc::SIGKILL) };
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("systemd-nspawn's last lines:");
            for l in tail.iter().rev() {
                eprintln!("  {l}");
            }
        }
    }
}

/// The child of `parent` that runs `comm`, if any.
fn child_running(parent: u32, comm: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.find_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // pid (comm) state ppid ...
        let (name, rest) = stat.split_once(") ")?;
        let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == parent && name.ends_with(&format!("({comm}"))).then_some(pid)
    })
}

impl Container {
    /// Boots `root` (taken over: removed on drop) and waits until its systemd has started up.
    fn boot(root: tempfile::TempDir, log: PathBuf) -> Container {
        let mut cmd = Command::new("systemd-nspawn");
        cmd.args([
            "--boot",
            "--register=no",
            "--private-network",
            "--console=passive",
        ])
        .arg(format!("--machine=gtmd-test-{}", std::process::id()))
        .arg("--directory")
        .arg(root.path());
        // Without systemd and D-Bus on the host there is no one to ask for a scope: stay in
        // this cgroup.
        if !Path::new("/run/systemd/system").is_dir()
            || !Path::new("/run/dbus/system_bus_socket").exists()
        {
            cmd.arg("--keep-unit");
        }
        let file = std::fs::File::create(&log).unwrap();
        let nspawn = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("systemd-nspawn runs (apt-get install systemd-container)");
        let mut ct = Container {
            nspawn,
            leader: 0,
            log,
            _root: root,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while ct.leader == 0 {
            if let Ok(Some(status)) = ct.nspawn.try_wait() {
                let log = std::fs::read_to_string(&ct.log).unwrap_or_default();
                panic!("systemd-nspawn exited ({status}) before booting:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "no systemd in the container after 30 s"
            );
            ct.leader = child_running(ct.nspawn.id(), "systemd").unwrap_or(0);
            std::thread::sleep(Duration::from_millis(100));
        }
        let state = ct.sh(90, "systemctl is-system-running --wait").1;
        let failed = ct.ok("systemctl --failed --no-legend");
        assert!(
            state.trim() == "running" || state.trim() == "degraded",
            "the container did not start up: {state}\nfailed units: {failed}"
        );
        println!("container state: {} {}", state.trim(), failed.trim());
        ct
    }

    /// Runs `script` with sh inside the container, for at most `secs` seconds: success and
    /// output (stdout then stderr).
    fn sh(&self, secs: u64, script: &str) -> (bool, String) {
        let out = bounded(
            secs + 10,
            Command::new("nsenter")
                .args(["-t", &self.leader.to_string(), "-a", "timeout"])
                .arg(secs.to_string())
                .args(["sh", "-c", script]),
        );
        (out.status.success(), text(&out))
    }

    /// As [`Container::sh`] within 60 s; panics unless `script` succeeds.
    fn ok(&self, script: &str) -> String {
        let (ok, out) = self.sh(60, script);
        assert!(ok, "in the container, {script:?} failed:\n{out}");
        out
    }

    /// Polls `script` until its output satisfies `want`, for at most `secs` seconds.
    fn wait_for(&self, secs: u64, script: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let out = self.sh(20, script).1;
            if want(&out) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "after {secs} s, {script:?} still says:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Halts the container (SIGTERM to systemd-nspawn) and waits up to 30 s for it.
    fn halt(mut self) {
        // SAFETY: plain kill(2) of the systemd-nspawn this test started.
        unsafe { libc::kill(self.nspawn.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.nspawn.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "the container did not halt in 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // Gone with the container: its number may be another process's by now.
        self.leader = 0;
    }
}

/// Builds the package from the binary under test into `dir`, and returns its path.
fn build_package(dir: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = bounded(
        300,
        Command::new(cargo)
            .current_dir(repo())
            .args(["deb", "--no-build", "--fast", "--output"])
            .arg(dir),
    );
    assert!(out.status.success(), "cargo deb: {}", text(&out));
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .unwrap_or_else(|| panic!("no .deb in {}", dir.display()))
}

/// A minimal Debian root with systemd, D-Bus and dig, under /var/tmp (not a tmpfs /tmp).
fn bootstrap() -> tempfile::TempDir {
    let root = tempfile::Builder::new()
        .prefix("gtmd-nspawn-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let debootstrap = common::installed("debootstrap", "debootstrap");
    let mirror = mirror();
    let out = bounded(
        300,
        Command::new(debootstrap)
            .args([
                "--variant=minbase",
                "--include=systemd,systemd-sysv,dbus,dnsutils",
            ])
            .arg(SUITE)
            .arg(root.path())
            .arg(&mirror),
    );
    assert!(
        out.status.success(),
        "debootstrap from {mirror}: {}",
        text(&out)
    );
    root
}

fn phase(name: &str, since: &mut Instant) {
    println!("{name}: {:.1} s", since.elapsed().as_secs_f64());
    *since = Instant::now();
}

#[test]
fn the_package_installs_runs_reloads_and_goes_under_a_booted_systemd() {
    // SAFETY: geteuid(2) has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "booting a container needs root"
    );
    let scratch = tempfile::tempdir().unwrap();
    let mut t = Instant::now();
    let deb = build_package(scratch.path());
    phase("cargo deb", &mut t);
    let root = bootstrap();
    phase("debootstrap", &mut t);
    std::fs::copy(&deb, root.path().join("root/gtmd.deb")).unwrap();
    let ct = Container::boot(root, scratch.path().join("nspawn.log"));
    phase("boot", &mut t);
    install_and_start(&ct);
    phase("install, enable --now, dig", &mut t);
    reload_good_and_bad(&ct);
    phase("reloads", &mut t);
    upgrade_and_stop(&ct);
    phase("upgrade, stop", &mut t);
    remove_and_purge(&ct);
    phase("remove, purge", &mut t);
    ct.halt();
    phase("halt", &mut t);
}

const DIG: &str = "dig +short +time=2 +tries=1 @127.0.0.1 -p 5353";

fn install_and_start(ct: &Container) {
    // gtmd needs nothing the minimal root lacks: apt installs it from the file alone.
    let out = ct.ok("DEBIAN_FRONTEND=noninteractive apt-get install -y /root/gtmd.deb");
    assert!(out.contains("installed but not started"), "{out}");
    let state = ct
        .sh(20, "systemctl is-enabled gtmd; systemctl is-active gtmd")
        .1;
    assert_eq!(state, "disabled\ninactive\n", "the package started gtmd");

    ct.ok("systemctl enable --now gtmd");
    // Type=notify: `enable --now` returns once gtmd has said READY=1.
    let show = ct.ok("systemctl show -p ActiveState -p SubState -p StatusText gtmd");
    for want in [
        "ActiveState=active",
        "SubState=running",
        "StatusText=serving DNS",
    ] {
        assert!(show.contains(want), "{show}");
    }
    // The packaged configuration: 127.0.0.1:5353; eu-1 up, us-1 down (nothing on port 9).
    assert_eq!(ct.ok(&format!("{DIG} www.example.test A")), "192.0.2.80\n");
    assert_eq!(ct.ok(&format!("{DIG} app.example.test A")), "192.0.2.10\n");
}

/// The line of dist/gtmd.toml that sets `key`, from 1.
fn line_of(key: &str) -> usize {
    let sample = std::fs::read_to_string(repo().join("dist/gtmd.toml")).unwrap();
    1 + sample
        .lines()
        .position(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("dist/gtmd.toml sets no {key}"))
}

fn reload_good_and_bad(ct: &Container) {
    let pid = ct.ok("systemctl show -p MainPID --value gtmd");
    ct.ok("echo 'reloaded IN A 192.0.2.111' >> /etc/gtmd/zones/example.test.zone");
    ct.ok("systemctl reload gtmd");
    ct.wait_for(10, &format!("{DIG} reloaded.example.test A"), |o| {
        o == "192.0.2.111\n"
    });
    assert!(ct
        .ok("journalctl -u gtmd -o cat")
        .contains("configuration reloaded"));

    // A bad edit: the reload is refused and the journal says where and why.
    ct.ok("cp /etc/gtmd/gtmd.toml /root/gtmd.toml.good");
    ct.ok("sed -i 's/^max_in_flight = 256/max_in_flight = \"lots\"/' /etc/gtmd/gtmd.toml");
    ct.ok("systemctl reload gtmd");
    let why = format!(
        "/etc/gtmd/gtmd.toml:{}: probe.max_in_flight: invalid type",
        line_of("max_in_flight")
    );
    let journal = ct.wait_for(10, "journalctl -u gtmd -o cat", |j| j.contains(&why));
    assert!(journal.contains("reload rejected"), "{journal}");
    assert_eq!(
        ct.ok(&format!("{DIG} reloaded.example.test A")),
        "192.0.2.111\n"
    );
    assert_eq!(ct.ok(&format!("{DIG} app.example.test A")), "192.0.2.10\n");
    assert_eq!(ct.ok("systemctl is-active gtmd"), "active\n");
    assert_eq!(ct.ok("systemctl show -p MainPID --value gtmd"), pid);
    ct.ok("cp /root/gtmd.toml.good /etc/gtmd/gtmd.toml");
}

fn upgrade_and_stop(ct: &Container) {
    // An upgrade (here the same version again) restarts the running service on the new binary
    // and keeps the edited conffiles.
    let before = ct.ok("systemctl show -p MainPID --value gtmd");
    ct.ok("DEBIAN_FRONTEND=noninteractive apt-get install -y --reinstall /root/gtmd.deb");
    assert_eq!(ct.ok("systemctl is-active gtmd"), "active\n");
    let after = ct.ok("systemctl show -p MainPID --value gtmd");
    assert_ne!(before, after, "the upgrade did not restart gtmd");
    assert_eq!(
        ct.ok(&format!("{DIG} reloaded.example.test A")),
        "192.0.2.111\n"
    );

    ct.ok("systemctl stop gtmd");
    let show = ct.ok("systemctl show -p Result -p ExecMainCode -p ExecMainStatus gtmd");
    // ExecMainCode=1 is CLD_EXITED: gtmd exited by itself, with status 0.
    for want in ["Result=success", "ExecMainCode=1", "ExecMainStatus=0"] {
        assert!(show.contains(want), "{show}");
    }
    let journal = ct.ok("journalctl -u gtmd -o cat");
    assert!(!journal.contains("SIGKILL"), "{journal}");
}

fn remove_and_purge(ct: &Container) {
    ct.ok("systemctl start gtmd");
    let wants = "/etc/systemd/system/multi-user.target.wants/gtmd.service";
    ct.ok("DEBIAN_FRONTEND=noninteractive apt-get remove -y gtmd");
    assert_eq!(ct.sh(20, "systemctl is-active gtmd").1, "inactive\n");
    let status = ct.ok("dpkg-query -W -f '${db:Status-Abbrev}' gtmd");
    assert_eq!(status.trim(), "rc", "after apt remove");
    ct.ok(&format!(
        "test -f /etc/gtmd/gtmd.toml && test -f /etc/gtmd/token && test -L {wants}"
    ));

    ct.ok("DEBIAN_FRONTEND=noninteractive apt-get purge -y gtmd");
    let (known, status) = ct.sh(20, "dpkg-query -W -f '${db:Status-Abbrev}' gtmd");
    assert!(
        !known || status.trim().is_empty(),
        "after apt purge: {status}"
    );
    ct.ok(&format!(
        "test ! -e /etc/gtmd && test ! -e /var/lib/private/gtmd && test ! -L {wants}"
    ));
}
