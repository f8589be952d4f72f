//! The prober's own cost at scale: gtmd (the release binary, pinned to CPU 0) probing 1,000
//! and then 10,000 members at a 1 s interval, half HTTP and half TCP, against targets this
//! program serves on 127.0.0.1 (pinned to CPU 1). Each size is run three times in turn: gtmd
//! with a fresh connection per probe, gtmd with `keepalive` on the HTTP check, and
//! benches/probe_floor.c, a minimal C prober doing the same fresh-connection probes (the
//! kernel's cost of the probes themselves). For each it reports the CPU share over a 20 s
//! window, CPU per probe, resident memory, probes completed per second and members up.
//!
//! Run: `cargo build --release && cargo bench --bench probe_scale [-- 1000 10000] [--rounds 3]`
//! (`GTMD_BIN=PATH` measures another gtmd binary, for an A/B)
//! (each size is measured `--rounds` times, the three probers interleaved; medians at the end)
//! `-- 10000 --history 400`: gtmd alone probing for 400 s, then its RSS and what its history
//! holds (`gtmd_history_bytes`), once steps have been packed
//!
//! On loopback, the kernel runs the target's side of every handshake inside gtmd's own
//! `connect()` and `close()` calls, so gtmd is charged for work a remote backend would do.
//! `-- --netns NAME=IP` puts the targets on a separate test host instead: they listen on IP
//! inside network namespace NAME (reached over a veth pair; see docs/performance.md for the setup,
//! with receive processing steered to CPU 1), and gtmd pays only for its own side.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const PORTS: usize = 25;
const WINDOW: Duration = Duration::from_secs(20);

fn pin_to(cpu: usize) {
    // SAFETY: cpu_set_t is a plain bitmask; all-zero is empty and CPU_SET only sets a bit.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

async fn http_target(l: TcpListener) {
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            continue;
        };
        // Answers every request on the connection until the client closes it.
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            while let Ok(1..) = s.read(&mut buf).await {
                let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n";
                if s.write_all(ok).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn tcp_target(l: TcpListener) {
    loop {
        // Accept and close: a completed connection is what a TCP check wants.
        let _ = l.accept().await;
    }
}

fn stat(pid: u32) -> (f64, f64, f64) {
    let ticks = 100.0;
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = s
        .rsplit_once(')')
        .map(|x| x.1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let cpu = (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (cpu, kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
}

/// The admin API's reply to `GET /status`, whole.
fn status_reply(admin: u16) -> Option<String> {
    get(admin, "/status")
}

/// The admin API's reply to `GET path`, whole.
fn get(admin: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", admin)).ok()?;
    // The admin API answers only a Host that names it (DNS rebinding).
    let req = format!("GET {path} HTTP/1.0\r\nhost: 127.0.0.1:{admin}\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut s, &mut reply).ok()?;
    Some(reply)
}

fn status(admin: u16) -> Option<serde_json::Value> {
    serde_json::from_str(status_reply(admin)?.split_once("\r\n\r\n")?.1).ok()
}

fn probes_and_up(v: &serde_json::Value) -> (u64, usize) {
    let m = v["members"].as_array().unwrap();
    (
        m.iter().map(|x| x["probes"].as_u64().unwrap_or(0)).sum(),
        m.iter().filter(|x| x["state"] == "up").count(),
    )
}

fn config(
    dir: &Path,
    members: usize,
    target: &str,
    http: &[u16],
    tcp: &[u16],
    admin: u16,
    keepalive: bool,
) -> PathBuf {
    let mut t = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nzones_dir = {:?}\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
         [probe]\nmax_in_flight = 1024\n\
         [checks.h]\ntype = \"http\"\npath = \"/health\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n{}\
         [checks.t]\ntype = \"tcp\"\nport = 1\ninterval = \"1s\"\ntimeout = \"500ms\"\n",
        concat!(env!("CARGO_MANIFEST_DIR"), "/zones"),
        if keepalive { "keepalive = \"60s\"\n" } else { "" }
    );
    for (pool, check, ports) in [("web", "h", http), ("db", "t", tcp)] {
        t += &format!("[pools.{pool}]\ncheck = \"{check}\"\nmembers = [\n");
        for i in 0..members / 2 {
            let n = i + if pool == "db" { members / 2 } else { 0 };
            t += &format!(
                "  {{ address = \"10.{}.{}.{}\", probe_address = \"{target}\", probe_port = {} }},\n",
                n / 65536 % 256,
                n / 256 % 256,
                n % 256,
                ports[i % ports.len()]
            );
        }
        t += "]\n";
    }
    let p = dir.join(format!("probe-{members}-{keepalive}.toml"));
    std::fs::write(&p, t).unwrap();
    p
}

/// What one prober cost over the window.
struct Row {
    cpu: f64,
    probes: f64,
    rss: f64,
    hwm: f64,
    up: String,
    ready: String,
}

impl Row {
    fn print(&self, prober: &str, members: usize) {
        println!(
            "| {prober} | {members} | {:.1}% | {:.0} | {:.1} | {:.1} | {:.1} | {} | {} |",
            self.cpu * 100.0,
            self.probes,
            self.cpu / self.probes.max(1.0) * 1e6,
            self.rss,
            self.hwm,
            self.up,
            self.ready
        );
    }
}

/// Waits out the warm-up, then measures `pid` over the window; `probes` counts completed probes.
fn window(pid: u32, probes: &dyn Fn() -> u64) -> (f64, f64, f64, f64) {
    std::thread::sleep(Duration::from_secs(5)); // let schedules spread out
    let p0 = probes();
    let (c0, _, _) = stat(pid);
    let t0 = Instant::now();
    std::thread::sleep(WINDOW);
    let (c1, rss, hwm) = stat(pid);
    let elapsed = t0.elapsed().as_secs_f64();
    let p1 = probes();
    ((c1 - c0) / elapsed, (p1 - p0) as f64 / elapsed, rss, hwm)
}

fn measure_gtmd(members: usize, target: &str, http: &[u16], tcp: &[u16], keepalive: bool) -> Row {
    let (child, admin, ready) = start_gtmd(members, target, (http, tcp), keepalive);
    let (cpu, probes, rss, hwm) = window(child.id(), &|| {
        status(admin).map_or(0, |s| probes_and_up(&s).0)
    });
    let up = status(admin).map_or(0, |s| probes_and_up(&s).1);
    let ready = format!("{:.1} s", ready.as_secs_f64());
    finish(child, (cpu, probes, rss, hwm), up.to_string(), ready)
}

/// Stops a prober and makes its row of a window's figures.
fn finish(
    mut child: Child,
    (cpu, probes, rss, hwm): (f64, f64, f64, f64),
    up: String,
    ready: String,
) -> Row {
    let _ = child.kill();
    let _ = child.wait();
    Row {
        cpu,
        probes,
        rss,
        hwm,
        up,
        ready,
    }
}

/// gtmd probing `members` (fresh connections) for `secs`, then its resident memory and what
/// its history holds (`gtmd_history_bytes`): the history's memory after more than one block
/// of steps (64 steps of 5 s) is packed.
fn measure_history(members: usize, target: &str, http: &[u16], tcp: &[u16], secs: u64) {
    let (mut child, admin, _) = start_gtmd(members, target, (http, tcp), false);
    std::thread::sleep(Duration::from_secs(secs));
    let (_, rss, hwm) = stat(child.id());
    let history = get(admin, "/metrics").and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("gtmd_history_bytes "))?;
        line.split_whitespace().nth(1)?.parse::<f64>().ok()
    });
    let _ = child.kill();
    let _ = child.wait();
    let h = history.unwrap_or(f64::NAN);
    println!(
        "| {members} | {secs} s | {rss:.1} | {hwm:.1} | {:.1} | {:.0} |",
        h / 1e6,
        h / members as f64
    );
}

/// Starts gtmd on a configuration of `members` and waits until it is ready: the process,
/// its admin port and the time it took.
fn start_gtmd(
    members: usize,
    target: &str,
    (http, tcp): (&[u16], &[u16]),
    keepalive: bool,
) -> (Child, u16, Duration) {
    let dir = std::env::temp_dir();
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = config(&dir, members, target, http, tcp, admin, keepalive);
    // GTMD_BIN: another build to compare (A/B), else this tree's release binary.
    let bin = std::env::var("GTMD_BIN")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/gtmd").into());
    let child: Child = Command::new("taskset")
        .args(["-c", "0", &bin, "--config", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("target/release/gtmd exists (cargo build --release)");
    let start = Instant::now();
    while status(admin).is_none_or(|s| s["ready"] != true) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "gtmd did not become ready; /status: {:?}",
            status_reply(admin).map(|r| r.chars().take(300).collect::<String>())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (child, admin, start.elapsed())
}

/// The same probes from benches/probe_floor.c, the least a prober can do.
fn measure_floor(floor: &Path, members: usize, target: &str, http: &[u16], tcp: &[u16]) -> Row {
    let list = |p: &[u16]| p.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
    let mut child: Child = Command::new("taskset")
        .args(["-c", "0"])
        .arg(floor)
        .args([target, &members.to_string(), &list(http), &list(tcp)])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the floor prober starts");
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let out = child.stdout.take().unwrap();
    let c = count.clone();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(out)) {
            let Ok(line) = line else { break };
            if let Ok(v) = line.trim().parse() {
                c.store(v, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let figures = window(child.id(), &|| {
        count.load(std::sync::atomic::Ordering::Relaxed)
    });
    finish(child, figures, "-".into(), "-".into())
}

/// Compiles benches/probe_floor.c next to the other build outputs.
fn build_floor() -> PathBuf {
    let out = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/probe_floor"));
    let ok = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&out)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/probe_floor.c"
        ))
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cc builds benches/probe_floor.c");
    out
}

/// Binds the target listeners, inside network namespace `netns` if given.
fn bind_targets(netns: Option<&str>, ip: &str) -> Vec<std::net::TcpListener> {
    use std::os::fd::AsRawFd;
    let home = std::fs::File::open("/proc/self/ns/net").unwrap();
    let enter = |f: &std::fs::File| {
        // SAFETY: setns on this thread with a namespace file we hold open.
        assert_eq!(
            unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) },
            0,
            "setns"
        );
    };
    if let Some(ns) = netns {
        enter(&std::fs::File::open(format!("/var/run/netns/{ns}")).expect("the namespace exists"));
    }
    let listeners = (0..2 * PORTS)
        .map(|_| {
            let l = std::net::TcpListener::bind((ip, 0)).unwrap();
            l.set_nonblocking(true).unwrap();
            l
        })
        .collect();
    enter(&home);
    listeners
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .map_or(3, |v| v.parse().expect("--rounds N"));
    let history: Option<u64> = args
        .iter()
        .position(|a| a == "--history")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("--history SECS"));
    let sizes: Vec<usize> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| *i == 0 || (args[i - 1] != "--rounds" && args[i - 1] != "--history"))
        .filter_map(|(_, a)| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1000, 10000]
    } else {
        sizes
    };
    let netns = args
        .iter()
        .position(|a| a == "--netns")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let (ns, ip) = match &netns {
        Some(v) => v
            .split_once('=')
            .map(|(n, i)| (Some(n), i))
            .expect("--netns NAME=IP"),
        None => (None, "127.0.0.1"),
    };
    pin_to(1);
    let listeners = bind_targets(ns, ip);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (http, tcp) = rt.block_on(async {
        let mut http = Vec::new();
        let mut tcp = Vec::new();
        for (i, l) in listeners.into_iter().enumerate() {
            let port = l.local_addr().unwrap().port();
            let l = TcpListener::from_std(l).unwrap();
            if i % 2 == 0 {
                http.push(port);
                tokio::spawn(http_target(l));
            } else {
                tcp.push(port);
                tokio::spawn(tcp_target(l));
            }
        }
        (http, tcp)
    });
    let place = ns.map_or("on loopback".to_string(), |n| {
        format!("on {ip} in network namespace {n}")
    });
    println!(
        "gtmd and the floor prober (benches/probe_floor.c) each in turn on CPU 0, probing at 1 s \
         (half HTTP, half TCP); targets {place}, on CPU 1; {}s window",
        WINDOW.as_secs()
    );
    println!("| prober | members | CPU (of one core) | probes/s | CPU µs per probe | RSS MB | peak RSS MB | members up | ready after |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let _guard = rt.enter();
    if let Some(secs) = history {
        println!("| members | probing for | RSS MB | peak RSS MB | history MB | history bytes per member |");
        println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
        for n in sizes {
            measure_history(n, ip, &http, &tcp, secs);
        }
        return;
    }
    let floor = build_floor();
    let mut summary = Vec::new();
    for n in sizes {
        let per = |r: &Row| r.cpu / r.probes.max(1.0) * 1e6;
        let (mut g, mut k, mut f) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let row = measure_gtmd(n, ip, &http, &tcp, false);
            row.print("gtmd", n);
            g.push(per(&row));
            let row = measure_gtmd(n, ip, &http, &tcp, true);
            row.print("gtmd, http keepalive", n);
            k.push(per(&row));
            let row = measure_floor(&floor, n, ip, &http, &tcp);
            row.print("floor", n);
            f.push(per(&row));
        }
        let (g, k, f) = (median(g), median(k), median(f));
        summary.push(format!(
            "| {n} | {g:.1} | {k:.1} | {f:.1} | {:.2}× | {:.2}× |",
            g / f,
            k / f
        ));
    }
    println!("\nMedians of {rounds} interleaved rounds, CPU µs per probe:");
    println!("| members | gtmd | gtmd, keepalive | floor | gtmd / floor | keepalive / floor |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for line in summary {
        println!("{line}");
    }
}
