//! The cluster harness: a real etcd of one or three members on loopback ports, gtmd
//! instances run from the binary on it, two HTTP backends (members m0 and m1), a webhook
//! receiver, and a steady query load.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use hickory_proto::rr::RecordType;
pub const NAME: &str = "app.example.test.";
pub const M0: &str = "192.0.2.10";
pub const M1: &str = "192.0.2.11";
/// The lease TTL of the instances in these tests.
pub const TTL: u64 = 3;
/// Probes every 200 ms, timeout 150 ms, fall 3 (so that one slow probe on a busy machine
/// does not count as a failure): a failure is seen within about 0.8 s.
pub const DETECTION: Duration = Duration::from_millis(200 * 3 + 150 + 40);

/// One etcd member: its name, client and peer addresses.
pub struct EtcdMember {
    pub name: String,
    pub client: SocketAddr,
    pub peer: SocketAddr,
    pub child: Option<KillOnDrop>,
}

/// A real etcd cluster of one or three members on loopback, data in a temporary directory.
pub struct Etcd {
    pub members: Vec<EtcdMember>,
    pub dir: tempfile::TempDir,
}

impl Etcd {
    pub async fn start(n: usize, ip: IpAddr) -> Etcd {
        let members = (0..n)
            .map(|i| EtcdMember {
                name: format!("e{i}"),
                client: free_on(ip),
                peer: free_on(ip),
                child: None,
            })
            .collect();
        let mut e = Etcd {
            members,
            dir: tempfile::tempdir().unwrap(),
        };
        for i in 0..n {
            e.start_member(i);
        }
        e.wait_healthy().await;
        e
    }

    pub fn start_member(&mut self, i: usize) {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://{}", m.name, m.peer))
            .collect();
        let m = &self.members[i];
        let (client, peer) = (format!("http://{}", m.client), format!("http://{}", m.peer));
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", m.name))).unwrap();
        let child = Command::new("etcd")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(self.dir.path().join(&m.name))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &initial.join(",")])
            .args([
                "--initial-cluster-token",
                "gtmd-test",
                "--log-level",
                "warn",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd (Debian: apt install etcd-server)");
        self.members[i].child = Some(KillOnDrop(child));
    }

    pub fn stop_member(&mut self, i: usize) {
        self.members[i].child = None;
    }

    /// Stops member `i`, deletes its data directory and starts it again: a single-member
    /// etcd comes back empty, as after the loss of its disk.
    pub fn wipe_member(&mut self, i: usize) {
        self.stop_member(i);
        let data = self.dir.path().join(&self.members[i].name);
        std::fs::remove_dir_all(&data).unwrap_or_else(|e| panic!("{}: {e}", data.display()));
        self.start_member(i);
    }

    /// Puts `value` (no lease) at `key` under the test cluster's prefix.
    pub async fn put(&self, key: &str, value: &str) {
        let mut c = etcd_client::Client::connect(self.endpoints(), None)
            .await
            .expect("etcd client");
        c.put(format!("/gtmd/t/{key}"), value, None)
            .await
            .expect("etcd put");
    }

    /// The value at `key` under the test cluster's prefix, if any.
    pub async fn get(&self, key: &str) -> Option<String> {
        let mut c = etcd_client::Client::connect(self.endpoints(), None)
            .await
            .ok()?;
        let r = c.get(format!("/gtmd/t/{key}"), None).await.ok()?;
        let kv = r.kvs().first()?;
        Some(String::from_utf8_lossy(kv.value()).into_owned())
    }

    /// The create revision and lease of `key` under the test cluster's prefix, if it
    /// exists: a key deleted and put again has a new create revision.
    pub async fn created(&self, key: &str) -> Option<(i64, i64)> {
        let mut c = etcd_client::Client::connect(self.endpoints(), None)
            .await
            .ok()?;
        let r = c.get(format!("/gtmd/t/{key}"), None).await.ok()?;
        let kv = r.kvs().first()?;
        Some((kv.create_revision(), kv.lease()))
    }

    /// Sends `sig` (`STOP` or `CONT`) to member `i`.
    pub fn signal(&self, i: usize, sig: &str) {
        let pid = self.members[i].child.as_ref().expect("etcd runs").0.id();
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {pid}");
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://{}", m.client))
            .collect()
    }

    /// Waits until a write through etcd succeeds (it has a leader).
    pub async fn wait_healthy(&self) {
        let eps = self.endpoints();
        let ok = wait_until(Duration::from_secs(20), || {
            let eps = eps.clone();
            async move {
                let put = async {
                    let mut c = etcd_client::Client::connect(eps, None).await.ok()?;
                    c.put("/health", "ok", None).await.ok()
                };
                matches!(
                    tokio::time::timeout(Duration::from_secs(2), put).await,
                    Ok(Some(_))
                )
            }
        })
        .await;
        assert!(ok.is_some(), "etcd did not become healthy");
    }
}

/// A loopback address of one test cluster's own (127.10.N.1, then 127.11.N.1 and on): the
/// ports a test frees when it restarts an instance or an etcd member are never picked by
/// another test meanwhile.
pub fn own_ip() -> IpAddr {
    static N: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    IpAddr::from([127, 10 + (n / 250) as u8, 1 + (n % 250) as u8, 1])
}

/// `ip` with a port that was free a moment ago (see [`super::free_on`]).
pub fn free_on(ip: IpAddr) -> SocketAddr {
    super::free_on(ip)
}

/// One gtmd instance (or agent) of a test cluster, run from the binary.
pub struct Instance {
    pub id: String,
    pub dns: SocketAddr,
    pub admin: SocketAddr,
    pub config: PathBuf,
    pub log: PathBuf,
    pub agent: bool,
    /// Environment variables the process gets (beyond the test's own).
    pub env: Vec<(String, String)>,
    pub child: Option<KillOnDrop>,
}

impl Instance {
    /// Writes `cfg` to `dir/ID.toml` and starts the instance on it, its log in `dir/ID.log`.
    pub fn spawn(
        dir: &Path,
        id: &str,
        cfg: &str,
        (dns, admin): (SocketAddr, SocketAddr),
        agent: bool,
    ) -> Instance {
        Instance::spawn_with(dir, id, cfg, (dns, admin), agent, Vec::new())
    }

    /// As [`Instance::spawn`], the process with the environment variables `env` too.
    pub fn spawn_with(
        dir: &Path,
        id: &str,
        cfg: &str,
        (dns, admin): (SocketAddr, SocketAddr),
        agent: bool,
        env: Vec<(String, String)>,
    ) -> Instance {
        let config = dir.join(format!("{id}.toml"));
        std::fs::write(&config, cfg).unwrap();
        let mut i = Instance {
            id: id.to_string(),
            dns,
            admin,
            config,
            log: dir.join(format!("{id}.log")),
            agent,
            env,
            child: None,
        };
        i.start();
        i
    }

    pub fn start(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gtmd"));
        if self.agent {
            cmd.arg("agent");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = cmd
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(KillOnDrop(child));
    }

    /// SIGKILL: no goodbye to etcd, its lease runs out by itself.
    pub fn kill(&mut self) {
        self.child = None;
    }

    /// SIGTERM, then waits for the exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            sigterm(c.id());
            let _ = c.0.wait();
        }
    }

    /// SIGSTOP: the process holds its sockets and its etcd lease runs on, but it does
    /// nothing (SIGKILL still ends it).
    pub fn pause(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-STOP", &c.id().to_string()])
                .status();
        }
    }

    pub async fn status(&self) -> Option<serde_json::Value> {
        let a = self.admin;
        let r = tokio::task::spawn_blocking(move || {
            gtmd::ops::ctl::request(a, "GET", "/status", None, None)
        })
        .await
        .ok()?
        .ok()?;
        serde_json::from_str(&r).ok()
    }

    pub async fn answers(&self) -> Vec<String> {
        answer_or_empty(self.dns).await
    }
}

/// Sends SIGTERM through the `kill` command (no unsafe code in tests).
pub fn sigterm(pid: u32) {
    let _ = Command::new("kill").arg(pid.to_string()).status();
}

/// The A records of NAME at `dns`, or nothing when it does not answer in time.
pub async fn answer_or_empty(dns: SocketAddr) -> Vec<String> {
    let q = query_msg(NAME, RecordType::A, false);
    let bytes = q.to_vec().unwrap();
    match udp_raw(dns, &bytes, Duration::from_millis(500)).await {
        Some(r) => hickory_proto::op::Message::from_vec(&r)
            .map(|m| addrs(&m))
            .unwrap_or_default(),
        None => Vec::new(),
    }
}

/// A test cluster: etcd, instances, two backends (members m0 and m1) and a webhook
/// receiver. Prints each instance's log if the test fails.
pub struct Cluster {
    pub etcd: Etcd,
    pub instances: Vec<Instance>,
    pub backends: [Backend; 2],
    pub hook: Receiver,
    pub dir: tempfile::TempDir,
    /// The loopback address its instances and etcd listen on.
    pub ip: IpAddr,
    /// Whether the instances added from now on keep a state file (`dir/ID-state.json`).
    pub state_files: bool,
    /// Environment variables of the instances added from now on.
    pub env: Vec<(String, String)>,
}

/// Instance `n`'s probe source address: 127.0.0.(n + 2).
pub fn source(n: usize) -> IpAddr {
    IpAddr::from([127, 0, 0, n as u8 + 2])
}

impl Cluster {
    pub async fn new(etcd_members: usize) -> Cluster {
        let ip = own_ip();
        Cluster {
            ip,
            etcd: Etcd::start(etcd_members, ip).await,
            instances: Vec::new(),
            backends: [Backend::start().await, Backend::start().await],
            hook: Receiver::start(200).await,
            dir: tempfile::tempdir().unwrap(),
            state_files: true,
            env: Vec::new(),
        }
    }

    /// Adds and starts instance `id` (an agent when `agent`), probing from
    /// `source(self.instances.len())`.
    pub fn add(&mut self, id: &str, agent: bool, quorum: &str) -> usize {
        let n = self.instances.len();
        let (dns, admin) = (free_on(self.ip), free_on(self.ip));
        let eps: Vec<String> = self.etcd.endpoints();
        let [b0, b1] = &self.backends;
        let state = self.dir.path().join(format!("{id}-state.json"));
        let state = if self.state_files {
            format!("state_file = {:?}\n", state.display().to_string())
        } else {
            String::new()
        };
        let cfg = format!(
            "[cluster]\nendpoints = {eps:?}\nname = \"t\"\nid = \"{id}\"\nlease_ttl = \"{TTL}s\"\nquorum = {quorum}\n\
             [server]\nlisten = [\"{dns}\"]\nzones_dir = {zones:?}\n\
             [admin]\nlisten = \"{admin}\"\n{state}\
             [probe]\nsource = \"{src}\"\n\
             [alerts]\nwebhook = \"{hook}\"\nrate = 600\nburst = 100\n\
             [checks.web]\ntype = \"http\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\nfall = 3\nrise = 2\n\
             [pools.web]\ncheck = \"web\"\nmembers = [\
             {{ address = \"{M0}\", name = \"m0\", probe_address = \"127.0.0.1\", probe_port = {p0} }}, \
             {{ address = \"{M1}\", name = \"m1\", probe_address = \"127.0.0.1\", probe_port = {p1} }}]\n\
             [names.\"{NAME}\"]\npools = [\"web\"]\nttl = 5\n",
            zones = repo().join("zones").display().to_string(),
            src = source(n),
            hook = self.hook.url,
            p0 = b0.addr.port(),
            p1 = b1.addr.port(),
        );
        let env = self.env.clone();
        let i = Instance::spawn_with(self.dir.path(), id, &cfg, (dns, admin), agent, env);
        self.instances.push(i);
        n
    }

    /// etcd of `etcd_members` members, and servers a, b and c on it, joined and answering.
    pub async fn three(etcd_members: usize) -> Cluster {
        Cluster::three_with(etcd_members, true).await
    }

    /// As [`Cluster::three`], the instances with or without a state file.
    pub async fn three_with(etcd_members: usize, state_files: bool) -> Cluster {
        Cluster::three_set(etcd_members, |c| c.state_files = state_files).await
    }

    /// As [`Cluster::three`], `set` applied before the instances are added.
    pub async fn three_set(etcd_members: usize, set: impl FnOnce(&mut Cluster)) -> Cluster {
        let mut c = Cluster::new(etcd_members).await;
        set(&mut c);
        for id in ["a", "b", "c"] {
            c.add(id, false, "\"majority\"");
        }
        c.wait_joined(3, Duration::from_secs(20)).await;
        let both = c.wait_answers(&[M0, M1], Duration::from_secs(5)).await;
        assert!(
            both.is_some(),
            "the three instances do not answer both members"
        );
        c
    }

    /// m0's backend fails until every server has taken m0 out, then comes back until every
    /// server answers it again.
    pub async fn bounce_m0(&mut self) {
        self.backends[0].refuse();
        let out = self.wait_answers(&[M1], Duration::from_secs(5)).await;
        assert!(out.is_some(), "m0 refused, but still answered");
        self.backends[0].restore().await;
        let back = self.wait_answers(&[M0, M1], Duration::from_secs(5)).await;
        assert!(back.is_some(), "m0 back, but not answered");
    }

    /// Waits until every running instance is connected and sees `n` live instances.
    pub async fn wait_joined(&self, n: usize, limit: Duration) {
        let ok = wait_until(limit, || async {
            for i in self.instances.iter().filter(|i| i.child.is_some()) {
                let Some(s) = i.status().await else {
                    return false;
                };
                let c = &s["cluster"];
                if c["link"] != "connected" || c["instances"].as_array().map(Vec::len) != Some(n) {
                    return false;
                }
            }
            true
        })
        .await;
        assert!(
            ok.is_some(),
            "the instances did not all join with {n} live instances"
        );
    }

    /// Waits until every running server answers exactly `want`.
    pub async fn wait_answers(&self, want: &[&str], limit: Duration) -> Option<Duration> {
        wait_until(limit, || async {
            for i in self
                .instances
                .iter()
                .filter(|i| i.child.is_some() && !i.agent)
            {
                if i.answers().await != want {
                    return false;
                }
            }
            true
        })
        .await
    }

    pub async fn link(&self, i: usize) -> String {
        let s = self.instances[i].status().await.unwrap_or_default();
        s["cluster"]["link"].as_str().unwrap_or("").to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for i in &self.instances {
                let log = std::fs::read_to_string(&i.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- {} ({}) ---", i.id, i.log.display());
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

/// An admin API request (POST with a body, else GET), off the runtime; panics on an error.
pub async fn api(admin: SocketAddr, path: &str, body: Option<serde_json::Value>) -> String {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let method = if body.is_some() { "POST" } else { "GET" };
        gtmd::ops::ctl::request(admin, method, &path, None, body.as_ref())
    })
    .await
    .unwrap()
    .unwrap()
}

/// A steady query load on `servers` until stopped: queries sent, and those that got no
/// address in time.
pub struct Load {
    pub stop: Arc<AtomicBool>,
    pub counts: Arc<[AtomicU64; 2]>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Load {
    pub fn start(servers: Vec<SocketAddr>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let counts: Arc<[AtomicU64; 2]> = Arc::default();
        let (s, n) = (stop.clone(), counts.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::SeqCst) {
                for &dns in &servers {
                    n[0].fetch_add(1, Ordering::SeqCst);
                    if answer_or_empty(dns).await.is_empty() {
                        n[1].fetch_add(1, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Load { stop, counts, task }
    }

    /// Stops; returns (sent, failed).
    pub async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        let n = &self.counts;
        (n[0].load(Ordering::SeqCst), n[1].load(Ordering::SeqCst))
    }
}

pub fn overrides_in(path: &Path) -> usize {
    gtmd::base::state::load(path).map(|l| l.len()).unwrap_or(0)
}
