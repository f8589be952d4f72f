//! A Jepsen-style fault lab for the cluster: three etcd members (e1-e3), three gtmd
//! instances (g1-g3), two backend regions (r1, r2: two HTTP backends each, the members of
//! the one pool behind [`NAME`]), a Knot secondary of g1's zone (s1, told by NOTIFY) and a
//! client host (DNS clients, status pollers, ctl client, webhook sink), each a network
//! namespace of [`Lab`]. Everything that happens goes into a
//! [`History`]; [`checker`] judges it; [`faults`] breaks things, by hand or from a seed.

pub mod alerts;
pub mod checker;
pub mod faults;
pub mod history;
pub mod net;
pub mod random;
pub mod serials;
pub mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::lab::Lab;
use super::{installed, repo, KillOnDrop};
use history::{Ev, History, Recorders, Target};
use net::{Backend, Mode};

pub const NAME: &str = "app.example.test.";
pub const ETCD: [&str; 3] = ["e1", "e2", "e3"];
pub const GTMD: [&str; 3] = ["g1", "g2", "g3"];
pub const REGIONS: [&str; 2] = ["r1", "r2"];
/// Members: two per region, `(name, answered address, region index, port)`.
pub const MEMBERS: [(&str, &str, usize, u16); 4] = [
    ("r1a", "192.0.2.10", 0, 8081),
    ("r1b", "192.0.2.11", 0, 8082),
    ("r2a", "192.0.2.20", 1, 8081),
    ("r2b", "192.0.2.21", 1, 8082),
];
pub const CLIENT: &str = "client";
/// The Knot secondary of [`ZONE`], whose primary is g1.
pub const SECONDARY: &str = "s1";
/// The zone that holds [`NAME`].
pub const ZONE: &str = "example.test.";
/// The instances' lease TTL.
pub const LEASE_TTL: Duration = Duration::from_secs(3);
/// What the quorum adds to one instance's detection: a verdict of an instance that died or
/// was cut off counts until its lease ends (`lease_ttl`), and an instance whose etcd member
/// stops answering moves to another within about 1 s.
pub const QUORUM_DELAY: Duration = Duration::from_secs(LEASE_TTL.as_secs() + 1);
/// What the quorum adds while no fault touches etcd, the instances' processes or their
/// paths to etcd (and none has for `QUORUM_DELAY` + 2 s): a view written to etcd reaches
/// every instance by its watch.
pub const QUORUM_CALM: Duration = Duration::from_secs(1);
const TOKEN: &str = "nemesis-token";

/// The bounds the checker holds the cluster to, read from an instance's `/status`.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// The longest one instance takes to see a member fail (`recovery.detection`).
    pub detection: Duration,
    /// The longest one instance takes to see a member recover (`recovery.return_detection`).
    pub recovery: Duration,
}

/// The lab and everything running in it. Dropping it stops all and removes the namespaces.
pub struct World {
    recorders: Option<Recorders>,
    pub backends: Vec<Backend>,
    pub gtmd: Vec<Option<KillOnDrop>>,
    pub etcd: Vec<Option<KillOnDrop>>,
    pub secondary: Option<KillOnDrop>,
    pub h: Arc<History>,
    pub bounds: Bounds,
    pub lab: Lab,
    pub dir: tempfile::TempDir,
}

/// Polls `f` every 50 ms until it holds or `limit` passes: the time it took.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

impl World {
    /// Builds the lab, starts etcd, the backends and the instances, waits until every
    /// instance is connected and answers every member, then starts recording.
    pub fn start() -> World {
        let mut names: Vec<&str> = ETCD.to_vec();
        names.extend(GTMD);
        names.extend(REGIONS);
        names.push(CLIENT);
        names.push(SECONDARY);
        let lab = Lab::new(&names);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), TOKEN).unwrap();
        let backends = MEMBERS
            .iter()
            .map(|(_, _, r, port)| {
                let host = lab.host(REGIONS[*r]);
                Backend::start(&host.ns, SocketAddr::from((host.ip, *port)))
            })
            .collect();
        let mut w = World {
            recorders: None,
            backends,
            gtmd: GTMD.iter().map(|_| None).collect(),
            etcd: ETCD.iter().map(|_| None).collect(),
            secondary: None,
            h: History::new(),
            bounds: Bounds {
                detection: Duration::ZERO,
                recovery: Duration::ZERO,
            },
            lab,
            dir,
        };
        for i in 0..ETCD.len() {
            w.start_etcd(i, false);
        }
        assert!(
            wait_for(Duration::from_secs(30), || w.etcd_leader().is_some()).is_some(),
            "etcd elected no leader"
        );
        for i in 0..GTMD.len() {
            w.write_config(i);
            w.start_gtmd(i);
        }
        w.wait_settled(Duration::from_secs(30));
        w.start_secondary();
        w.bounds = w.read_bounds();
        w.start_recording();
        w
    }

    fn start_recording(&mut self) {
        let targets: Vec<Target> = (0..GTMD.len())
            .map(|i| Target {
                dns: self.dns(i),
                admin: self.admin(i),
            })
            .collect();
        let addrs: Vec<String> = MEMBERS.iter().map(|m| m.1.to_string()).collect();
        let ns = self.lab.host(CLIENT).ns.clone();
        let zone = [self.dns(0), self.secondary_dns()];
        self.recorders = Some(Recorders::start(
            &ns,
            &self.h,
            &targets,
            &addrs,
            self.sink(),
            zone,
        ));
        for i in 0..GTMD.len() {
            self.h.add(Ev::Gtmd {
                inst: i,
                running: Some(true),
            });
        }
        for k in 0..MEMBERS.len() {
            self.h.add(Ev::Backend {
                member: k,
                mode: Mode::Up,
            });
        }
    }

    /// Stops the recorders (the history is complete after this).
    pub fn stop_recording(&mut self) {
        self.recorders = None;
    }

    pub fn dns(&self, i: usize) -> SocketAddr {
        SocketAddr::from((self.lab.ip(GTMD[i]), 53))
    }

    pub fn admin(&self, i: usize) -> SocketAddr {
        SocketAddr::from((self.lab.ip(GTMD[i]), 8053))
    }

    pub fn secondary_dns(&self) -> SocketAddr {
        SocketAddr::from((self.lab.ip(SECONDARY), 53))
    }

    fn sink(&self) -> SocketAddr {
        SocketAddr::from((self.lab.ip(CLIENT), 9000))
    }

    pub fn endpoints(&self) -> Vec<String> {
        ETCD.iter().map(|e| self.lab.etcd_url(e)).collect()
    }

    pub fn log(&self, host: &str) -> PathBuf {
        self.dir.path().join(format!("{host}.log"))
    }

    /// Writes instance `i`'s configuration file.
    pub fn write_config(&self, i: usize) {
        let ip = self.lab.ip(GTMD[i]);
        let members: Vec<String> = MEMBERS
            .iter()
            .map(|(n, a, r, p)| {
                let probe = self.lab.ip(REGIONS[*r]);
                format!("{{ address = \"{a}\", name = \"{n}\", probe_address = \"{probe}\", probe_port = {p} }}")
            })
            .collect();
        let cfg = format!(
            "[cluster]\nendpoints = {eps:?}\nname = \"t\"\nid = \"{id}\"\nlease_ttl = \"{ttl}s\"\nquorum = \"majority\"\n\
             [server]\nlisten = [\"{ip}:53\"]\nzones_dir = {zones:?}\n\
             [admin]\nlisten = \"{ip}:8053\"\ntoken_file = {token:?}\nstate_file = {state:?}\n\
             [alerts]\nwebhook = \"http://{sink}/hook\"\nrate = 6000\nburst = 1000\n\
             [rrl]\nexempt = [\"{client}\"]\n\
             [checks.web]\ntype = \"http\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\nfall = 3\nrise = 2\n\
             [pools.web]\ncheck = \"web\"\nmembers = [{members}]\n\
             [names.\"{NAME}\"]\npools = [\"web\"]\nttl = 5\n{zones_table}",
            zones_table = if i == 0 {
                let s1 = self.lab.ip(SECONDARY);
                format!("[zones.\"{ZONE}\"]\nallow_transfer = [\"{s1}\"]\nnotify = [\"{s1}:53\"]\n")
            } else {
                String::new()
            },
            eps = self.endpoints(),
            id = GTMD[i],
            ttl = LEASE_TTL.as_secs(),
            zones = repo().join("zones").display().to_string(),
            token = self.dir.path().join("token").display().to_string(),
            state = self.dir.path().join(format!("{}-state.json", GTMD[i])).display().to_string(),
            sink = self.sink(),
            // The client asks more often than response rate limiting lets one address.
            client = self.lab.ip(CLIENT),
            members = members.join(", "),
        );
        std::fs::write(self.dir.path().join(format!("{}.toml", GTMD[i])), cfg).unwrap();
    }

    /// Starts instance `i` (its log appended to `gN.log`).
    pub fn start_gtmd(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(GTMD[i]))
            .unwrap();
        let config = self.dir.path().join(format!("{}.toml", GTMD[i]));
        let child = self
            .lab
            .command(GTMD[i], env!("CARGO_BIN_EXE_gtmd"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start gtmd in {}: {e}", GTMD[i]));
        self.gtmd[i] = Some(KillOnDrop(child));
    }

    /// Starts the Knot secondary of [`ZONE`] (its files kept across restarts in `s1/`), and
    /// waits until it has the zone.
    pub fn start_secondary(&mut self) {
        let dir = self.dir.path().join(SECONDARY);
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        let (ip, primary) = (self.lab.ip(SECONDARY), self.lab.ip(GTMD[0]));
        let conf = format!(
            "server:\n    listen: {ip}@53\n    rundir: {d}\n\
             log:\n  - target: stderr\n    any: info\n\
             database:\n    storage: {d}\n\
             remote:\n  - id: primary\n    address: {primary}@53\n\
             acl:\n  - id: notify\n    address: {primary}\n    action: notify\n\
             zone:\n  - domain: {ZONE}\n    storage: {d}\n    file: {d}/{ZONE}zone\n    master: primary\n    acl: [notify]\n"
        );
        let path = dir.join("knot.conf");
        std::fs::write(&path, conf).unwrap();
        let knotd = installed("knotd", "knot");
        let log = self.dir.path().join(format!("{SECONDARY}.log"));
        let args = ["-c", path.to_str().unwrap()];
        self.secondary = Some(
            self.lab
                .spawn_in(SECONDARY, knotd.to_str().unwrap(), &args, &log),
        );
        let at = self.secondary_dns();
        let ns = self.lab.host(CLIENT).ns.clone();
        let has = wait_for(Duration::from_secs(20), || {
            let ns = ns.clone();
            net::spawn_in(&ns, move || history::zone_serial(at).is_some())
                .join()
                .unwrap()
        });
        assert!(has.is_some(), "the Knot secondary did not get {ZONE}");
    }

    /// Starts etcd member `i`; `existing`: it joins the running cluster (after it was
    /// replaced with an empty data directory).
    pub fn start_etcd(&mut self, i: usize, existing: bool) {
        let n = ETCD[i];
        let initial: Vec<String> = ETCD
            .iter()
            .map(|m| format!("{m}=http://{}:2380", self.lab.ip(m)))
            .collect();
        let (client, peer) = (
            self.lab.etcd_url(n),
            format!("http://{}:2380", self.lab.ip(n)),
        );
        let data = self.dir.path().join(format!("{n}.etcd"));
        let initial = initial.join(",");
        let state = if existing { "existing" } else { "new" };
        let args = [
            "--name",
            n,
            "--data-dir",
            data.to_str().unwrap(),
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &initial,
            "--initial-cluster-state",
            state,
            "--initial-cluster-token",
            "nemesis",
            "--log-level",
            "warn",
            // etcd 3.5 and later do this by default: a member that was cut off does not
            // force an election when it returns (without it, the whole cluster stalled for
            // about 4 s after a healed partition, and every instance fell back).
            "--pre-vote",
        ];
        let log = self.dir.path().join(format!("{n}.etcd.log"));
        self.etcd[i] = Some(self.lab.spawn_in(n, "etcd", &args, &log));
    }

    /// The endpoint of etcd's leader, as `etcdctl endpoint status` from the client says.
    pub fn etcd_leader(&self) -> Option<String> {
        let out = self.lab.etcdctl(
            CLIENT,
            &self.endpoints(),
            &["endpoint", "status", "-w", "json"],
        )?;
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        v.as_array()?
            .iter()
            .find(|e| {
                let s = &e["Status"];
                s["leader"].as_u64().is_some() && s["header"]["member_id"] == s["leader"]
            })
            .and_then(|e| e["Endpoint"].as_str().map(str::to_string))
    }

    /// The index of etcd's leader.
    pub fn etcd_leader_index(&self) -> Option<usize> {
        let l = self.etcd_leader()?;
        self.endpoints().iter().position(|e| *e == l)
    }

    /// Instance `i`'s `/status`, asked from the client host.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        let a = self.admin(i);
        net::spawn_in(&self.lab.host(CLIENT).ns, move || history::status_at(a))
            .join()
            .unwrap()
    }

    /// An admin API change through instance `i` from the client host: status and body.
    pub fn post(&self, i: usize, path: &str, body: &str) -> Result<(u16, String), String> {
        let (a, p, b) = (self.admin(i), path.to_string(), body.to_string());
        net::spawn_in(&self.lab.host(CLIENT).ns, move || {
            net::http(a, "POST", &p, Some(TOKEN), Some(&b), Duration::from_secs(5))
        })
        .join()
        .unwrap()
    }

    /// Waits until every running instance is connected, sees every other and answers every
    /// member.
    pub fn wait_settled(&self, limit: Duration) {
        let n = self.gtmd.iter().filter(|g| g.is_some()).count();
        let ok = wait_for(limit, || {
            (0..GTMD.len())
                .filter(|i| self.gtmd[*i].is_some())
                .all(|i| {
                    self.status(i).is_some_and(|s| {
                        let s = &s;
                        s["cluster"]["link"] == "connected"
                            && s["cluster"]["instances"].as_array().map(Vec::len) == Some(n)
                            && name_status(s)["answer"].as_array().map(Vec::len)
                                == Some(MEMBERS.len())
                    })
                })
        });
        if ok.is_none() {
            let s: Vec<_> = (0..GTMD.len())
                .map(|i| self.status(i).map(|s| s["cluster"].clone()))
                .collect();
            panic!("the cluster did not settle in {limit:?}: {s:?}");
        }
    }

    /// The detection and recovery bounds `/status` states for NAME.
    fn read_bounds(&self) -> Bounds {
        let s = self.status(0).expect("g1 answers /status");
        let r = &name_status(&s)["recovery"];
        let secs = |k: &str| {
            Duration::from_secs_f64(
                r[k].as_f64()
                    .unwrap_or_else(|| panic!("/status names.{NAME}.recovery.{k}: {r}")),
            )
        };
        Bounds {
            detection: secs("detection"),
            recovery: secs("return_detection"),
        }
    }
}

/// The entry of NAME in a `/status`'s `names` (null when absent).
pub fn name_status(s: &serde_json::Value) -> serde_json::Value {
    s["names"]
        .as_array()
        .and_then(|l| l.iter().find(|n| n["name"] == NAME))
        .cloned()
        .unwrap_or_default()
}

impl Drop for World {
    fn drop(&mut self) {
        self.recorders = None;
        if std::thread::panicking() {
            for g in GTMD {
                let log = std::fs::read_to_string(self.log(g)).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(25).collect();
                eprintln!("--- {g} ---");
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}
