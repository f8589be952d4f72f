//! Shared test harness: start gtmd in-process on 127.0.0.1:0, send real DNS queries over UDP
//! and TCP, and run real HTTP/TCP backends that a test can break and restore.
#![allow(dead_code)]

pub mod geo;
pub mod lab;
#[cfg(feature = "cluster")]
pub mod nemesis;
pub mod signing;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gtmd::app::{self, Listeners};
use gtmd::config::Config;
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

#[cfg(feature = "cluster")]
pub mod cluster;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A gtmd running inside the test process.
pub struct Gtmd {
    pub dns: SocketAddr,
    pub admin: SocketAddr,
    pub stop: CancellationToken,
    pub running: Option<app::Running>,
}

impl Drop for Gtmd {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts gtmd with `config` (TOML; listen addresses are replaced by 127.0.0.1:0) and waits
/// until it serves DNS.
pub async fn start(config: &str, zones: &Path) -> Gtmd {
    start_with(config, "", zones).await
}

/// As [`start`], with `server` (lines of the [server] table) added.
pub async fn start_with(config: &str, server: &str, zones: &Path) -> Gtmd {
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nzones_dir = {:?}\n{server}\n[admin]\nlisten = \"127.0.0.1:0\"\n{config}",
        zones.display().to_string()
    );
    let cfg = Config::parse(&text, "test.toml", Path::new("/")).expect("test config is valid");
    start_config(cfg).await
}

/// Starts gtmd on the configuration file `path` (whose listen addresses must be port 0), so
/// that a reload reads the file again.
pub async fn start_file(path: &Path) -> Gtmd {
    start_config(Config::load(path).expect("test config is valid")).await
}

async fn start_config(cfg: Config) -> Gtmd {
    let listeners = Listeners::bind(&cfg).await.unwrap();
    let dns = listeners.dns[0].local_addr().unwrap();
    let admin = listeners.admin.local_addr().unwrap();
    let stop = CancellationToken::new();
    let running = app::start(cfg, listeners, stop.clone()).await.unwrap();
    let mut ready = running.ready.clone();
    tokio::time::timeout(Duration::from_secs(10), ready.wait_for(|r| *r))
        .await
        .expect("ready within 10 s")
        .unwrap();
    Gtmd {
        dns,
        admin,
        stop,
        running: Some(running),
    }
}

/// Waits up to 15 s for a server at `addr` (`who`, for the message) to answer the SOA of
/// `zone` over UDP; panics if it does not.
pub async fn wait_answering(who: &str, addr: SocketAddr, zone: &str) {
    let probe = query_msg(zone, RecordType::SOA, false).to_vec().unwrap();
    let up = wait_until(Duration::from_secs(15), || {
        let probe = probe.clone();
        async move {
            udp_raw(addr, &probe, Duration::from_millis(200))
                .await
                .is_some()
        }
    })
    .await;
    assert!(up.is_some(), "{who} did not start on {addr}");
}

/// An A query message for `name` carrying the EDNS client subnet `addr/source`.
pub fn ecs_msg(name: &str, addr: &str, source: u8) -> Message {
    use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
    let mut m = query_msg(name, RecordType::A, true);
    let subnet = ClientSubnet::new(addr.parse().unwrap(), source, 0);
    m.edns
        .as_mut()
        .unwrap()
        .options_mut()
        .insert(EdnsOption::Subnet(subnet));
    m
}

/// An A query for `name` carrying the EDNS client subnet `addr/source`, over UDP.
pub async fn ecs_query(dns: SocketAddr, name: &str, addr: &str, source: u8) -> Message {
    udp(dns, &ecs_msg(name, addr, source)).await
}

/// Three HTTP backends (for pools eu, us and ap).
pub async fn three_backends() -> (Backend, Backend, Backend) {
    tokio::join!(Backend::start(), Backend::start(), Backend::start())
}

/// The spill of a topology name by its client groups' measured traffic: clients `eu` (40%
/// of queries, answered by 192.0.2.1), `us` (40%, 192.0.2.2) and `ap` (20%, 192.0.2.3), each
/// sent as ECS /24, with pool capacities 60, 60 and 40. Once the traffic is measured, `us`
/// fails, and its clients must split 50:50 between eu and ap (the spare each has left from
/// its own measured traffic), not 80:20 as equal shares would give.
pub async fn spill_follows_measured_traffic(
    g: &Gtmd,
    name: &str,
    [eu, us, ap]: [&str; 3],
    us_backend: &mut Backend,
) {
    let mix = [eu, us, eu, us, ap];
    let seen = answers_of(g.dns, name, &mix, us, 400).await;
    assert_eq!(seen.get("192.0.2.2"), Some(&800), "{seen:?}");
    // The groups' traffic is sampled every 5 s.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    us_backend.refuse();
    wait_until(Duration::from_secs(3), || async {
        member(g.admin, "192.0.2.2").await["state"] == "down"
    })
    .await
    .expect("us goes down");
    let seen = answers_of(g.dns, name, &mix, us, 5_000).await;
    let total: u32 = seen.values().sum();
    let p = |a: &str| f64::from(seen.get(a).copied().unwrap_or(0)) * 100.0 / f64::from(total);
    println!(
        "us down: its clients got eu {:.2}%, ap {:.2}%",
        p("192.0.2.1"),
        p("192.0.2.3")
    );
    assert!((p("192.0.2.1") - 50.0).abs() <= 2.0, "{seen:?}");
    assert!((p("192.0.2.3") - 50.0).abs() <= 2.0, "{seen:?}");
}

/// Sends `rounds` × `mix` (client addresses, as ECS /24) A queries for `name`, and counts
/// the answers of client `counted`.
pub async fn answers_of(
    dns: SocketAddr,
    name: &str,
    mix: &[&str],
    counted: &str,
    rounds: u16,
) -> std::collections::HashMap<String, u32> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut seen = std::collections::HashMap::new();
    let mut id = 0u16;
    for _ in 0..rounds {
        for &client in mix {
            id = id.wrapping_add(1);
            let m = udp_ask(&sock, dns, ecs_msg(name, client, 24), id)
                .await
                .expect("an answer within 2 s");
            if client == counted {
                *seen.entry(addrs(&m).join(",")).or_default() += 1;
            }
        }
    }
    seen
}

/// A loopback address with a port that was free a moment ago (for the gtmd binary, whose
/// configuration must name its ports).
pub fn free_addr() -> SocketAddr {
    free_on(std::net::Ipv4Addr::LOCALHOST.into())
}

/// `ip` with a port that was free a moment ago and that this process has not handed out
/// before: the kernel may give a port it just gave again once its listener is closed, and two
/// parts of one test (one server's DNS and another's admin API) must never share one.
pub fn free_on(ip: std::net::IpAddr) -> SocketAddr {
    static GIVEN: std::sync::Mutex<Vec<SocketAddr>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let addr = std::net::TcpListener::bind((ip, 0))
            .unwrap()
            .local_addr()
            .unwrap();
        if !given.contains(&addr) {
            given.push(addr);
            return addr;
        }
    }
    panic!("no port on {ip} that was not handed out before")
}

/// The value of the first /metrics sample whose line starts with `line_start` (a name, with
/// labels as exported).
pub async fn metric(admin: SocketAddr, line_start: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Sends `q` with ID `id` on `sock` and waits (at most 2 s) for the reply with that ID,
/// skipping late replies to earlier queries.
pub async fn udp_ask(
    sock: &UdpSocket,
    dns: SocketAddr,
    mut q: Message,
    id: u16,
) -> Option<Message> {
    q.metadata.id = id;
    sock.send_to(&q.to_vec().unwrap(), dns).await.unwrap();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            let n = sock.recv(&mut buf).await.unwrap();
            if let Ok(m) = Message::from_vec(&buf[..n]) {
                if m.metadata.id == id {
                    return m;
                }
            }
        }
    })
    .await
    .ok()
}

/// A query message for `name`/`rtype` with EDNS (payload 1232) and RD clear.
pub fn query_msg(name: &str, rtype: RecordType, edns: bool) -> Message {
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    m.metadata.recursion_desired = false;
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m
}

/// Sends raw bytes over UDP and returns the reply, or None after `wait`.
pub async fn udp_raw(server: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let local = if server.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let sock = UdpSocket::bind(local).await.unwrap();
    sock.send_to(bytes, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(wait, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

pub async fn udp(server: SocketAddr, m: &Message) -> Message {
    let b = udp_raw(server, &m.to_vec().unwrap(), Duration::from_secs(3))
        .await
        .unwrap_or_else(|| panic!("no UDP answer from {server} to {:?}", m.queries));
    Message::from_vec(&b).unwrap()
}

/// Sends several queries on one TCP connection (pipelined) and reads as many replies.
pub async fn tcp_many(server: SocketAddr, msgs: &[Message]) -> Vec<Message> {
    let mut s = TcpStream::connect(server).await.unwrap();
    let mut out = Vec::new();
    for m in msgs {
        let b = m.to_vec().unwrap();
        out.extend_from_slice(&(b.len() as u16).to_be_bytes());
        out.extend_from_slice(&b);
    }
    s.write_all(&out).await.unwrap();
    let mut replies = Vec::new();
    for _ in msgs {
        let mut len = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut len))
            .await
            .unwrap()
            .unwrap();
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await.unwrap();
        replies.push(Message::from_vec(&buf).unwrap());
    }
    replies
}

/// The admin API's /status as JSON.
pub async fn status(admin: SocketAddr) -> serde_json::Value {
    reqwest::get(format!("http://{admin}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The status entry of the member called `name`.
pub async fn member(admin: SocketAddr, name: &str) -> serde_json::Value {
    let s = status(admin).await;
    s["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .cloned()
        .unwrap()
}

/// The addresses gtmd answers for `name`/`rtype` over UDP right now.
pub async fn answer(dns: SocketAddr, name: &str, rtype: RecordType) -> Vec<String> {
    addrs(&udp(dns, &query_msg(name, rtype, true)).await)
}

pub async fn tcp(server: SocketAddr, m: &Message) -> Message {
    tcp_many(server, std::slice::from_ref(m)).await.remove(0)
}

/// One query for `www.example.test. A` on the open connection `s`: its answer's addresses,
/// or None if the connection is closed first (or no answer comes within 3 s).
pub async fn ask_tcp(s: &mut TcpStream) -> Option<Vec<String>> {
    let q = query_msg("www.example.test.", RecordType::A, true)
        .to_vec()
        .unwrap();
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    s.write_all(&framed).await.ok()?;
    let mut len = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut len))
        .await
        .ok()?
        .ok()?;
    let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.ok()?;
    Some(addrs(&Message::from_vec(&body).unwrap()))
}

/// The addresses in the answer section, sorted.
pub fn addrs(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| r.data.ip_addr())
        .map(|a| a.to_string())
        .collect();
    v.sort();
    v
}

/// Polls `f` until it returns true or `limit` passes; returns the time it took.
pub async fn wait_until<F, Fut>(limit: Duration, mut f: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// How a test backend answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// HTTP 200 "ok".
    Ok = 0,
    /// HTTP 500.
    Error = 1,
    /// Accepts and never answers.
    Hang = 2,
    /// Fails two requests, then answers one, over and over (E E O E E O ...).
    Flap = 3,
    /// HTTP 302 to another path (which would answer 200).
    Redirect = 4,
    /// HTTP 200 with the body "maintenance".
    Maintenance = 5,
}

/// A real HTTP backend on 127.0.0.1 whose behaviour a test switches. `refuse()` closes the
/// listening socket (connections are refused); `restore()` listens again on the same port.
pub struct Backend {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub hits: Arc<std::sync::atomic::AtomicU64>,
    /// The head of the last request received.
    pub last_request: Arc<std::sync::Mutex<String>>,
    /// Requests from these source addresses get HTTP 500 (a path that fails for one prober).
    denied: Arc<std::sync::Mutex<Vec<std::net::IpAddr>>>,
}

impl Backend {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut b = Backend {
            addr,
            mode: Arc::new(AtomicU8::new(Mode::Ok as u8)),
            task: None,
            hits: Arc::default(),
            last_request: Arc::default(),
            denied: Arc::default(),
        };
        b.serve(listener);
        b
    }

    fn serve(&mut self, listener: TcpListener) {
        let (mode, hits, last, denied) = (
            self.mode.clone(),
            self.hits.clone(),
            self.last_request.clone(),
            self.denied.clone(),
        );
        self.task = Some(tokio::spawn(async move {
            loop {
                let Ok((mut s, peer)) = listener.accept().await else {
                    return;
                };
                let mut mode = mode.load(Ordering::SeqCst);
                if denied.lock().unwrap().contains(&peer.ip()) {
                    mode = Mode::Error as u8;
                }
                let n = hits.fetch_add(1, Ordering::SeqCst);
                if mode == Mode::Flap as u8 {
                    mode = if n % 3 == 2 { 0 } else { 1 };
                }
                let last = last.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    *last.lock().unwrap() = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let Some(resp) = response_for(mode) else {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    };
                    let _ = s.write_all(resp).await;
                    let _ = s.shutdown().await;
                });
            }
        }));
    }

    /// Requests from `ip` get HTTP 500 from now on.
    pub fn deny(&self, ip: std::net::IpAddr) {
        self.denied.lock().unwrap().push(ip);
    }

    pub fn set(&self, m: Mode) {
        self.mode.store(m as u8, Ordering::SeqCst);
    }

    pub fn refuse(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    pub async fn restore(&mut self) {
        self.refuse();
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot listen on {} again: {e}", self.addr),
            }
        };
        self.set(Mode::Ok);
        self.serve(listener);
    }
}

/// The canned HTTP response of a mode; None means hang.
fn response_for(mode: u8) -> Option<&'static [u8]> {
    Some(match mode {
        0 => b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n",
        1 => b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        4 => b"HTTP/1.1 302 Found\r\nlocation: /elsewhere\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        5 => b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\nconnection: close\r\n\r\nmaintenance\n",
        _ => return None,
    })
}

/// A real HTTPS backend with a self-signed certificate for `name`; records the SNI it sees.
pub struct TlsBackend {
    pub addr: SocketAddr,
    pub sni: Arc<std::sync::Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsBackend {
    pub async fn start(name: &str) -> Self {
        let cert = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        let der = rustls::pki_types::CertificateDer::from(cert.cert.der().to_vec());
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sni: Arc<std::sync::Mutex<Vec<Option<String>>>> = Arc::default();
        let seen = sni.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(s).await else {
                        return;
                    };
                    seen.lock()
                        .unwrap()
                        .push(tls.get_ref().1.server_name().map(str::to_string));
                    let mut buf = [0u8; 2048];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls.write_all(response_for(0).unwrap()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Self { addr, sni, task }
    }
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.refuse();
    }
}

/// A webhook receiver on loopback: answers every POST with `status` and keeps the bodies.
pub struct Receiver {
    pub url: String,
    pub got: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl Receiver {
    pub async fn start(status: u16) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let got: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Default::default();
        let g = got.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let g = g.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n @ 1..) = s.read(&mut chunk).await else {
                            return;
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() < end + 4 + len {
                            continue;
                        }
                        let body = &buf[end + 4..end + 4 + len];
                        g.lock()
                            .unwrap()
                            .push(serde_json::from_slice(body).unwrap());
                        let resp = format!(
                            "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        );
                        let _ = s.write_all(resp.as_bytes()).await;
                        return;
                    }
                });
            }
        });
        Receiver { url, got }
    }

    pub fn events(&self, event: &str) -> Vec<serde_json::Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a["event"] == event)
            .cloned()
            .collect()
    }
}

/// Starts the gtmd binary on `config` (a file) and returns it once its admin API answers.
pub fn spawn_gtmd(config: &Path, admin: SocketAddr) -> std::process::Child {
    spawn_gtmd_in(Path::new("."), config, admin)
}

/// As [`spawn_gtmd`], run from the directory `cwd` (`config` may be relative to it).
pub fn spawn_gtmd_in(cwd: &Path, config: &Path, admin: SocketAddr) -> std::process::Child {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_gtmd"))
        .arg("--config")
        .arg(config)
        .current_dir(cwd)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while gtmd::ops::ctl::request(admin, "GET", "/readyz", None, None).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "gtmd did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// A child process (gtmd, Knot, NSD...) killed and reaped when dropped, so that a failing test
/// leaves nothing running.
/// The path of an installed program (`package` names the Debian package in the message).
pub fn installed(name: &str, package: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} is not installed (apt-get install {package})"))
}

/// Runs `bin` with `args` and `conf`, its output discarded; stopped on drop.
pub fn daemon(bin: &Path, args: &[&str], conf: &Path) -> KillOnDrop {
    let child = std::process::Command::new(bin)
        .args(args)
        .arg(conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    KillOnDrop(child)
}

/// Unbound on loopback, run by the test: `server` adds lines to its `server:` clause, and each
/// of `stubs` (zone, address) is a stub zone. The `test.` TLD is served normally (not as a
/// locally blocked name), and queries may go to loopback.
pub struct UnboundProcess {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    _child: KillOnDrop,
}

impl UnboundProcess {
    pub fn start(server: &str, stubs: &[(&str, SocketAddr)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let addr = free_addr();
        let mut conf = format!(
            "server:\n    interface: 127.0.0.1@{p}\n    port: {p}\n    do-ip6: no\n    username: \"\"\n    chroot: \"\"\n\
             \x20   directory: \"{d}\"\n    pidfile: \"{d}/unbound.pid\"\n    use-syslog: no\n    logfile: \"{d}/unbound.log\"\n\
             \x20   do-not-query-localhost: no\n    local-zone: \"test.\" nodefault\n{server}\
             remote-control:\n    control-enable: no\n",
            p = addr.port(),
        );
        for (zone, at) in stubs {
            conf += &format!(
                "stub-zone:\n    name: \"{zone}\"\n    stub-addr: {}@{}\n",
                at.ip(),
                at.port()
            );
        }
        let path = dir.path().join("unbound.conf");
        std::fs::write(&path, conf).unwrap();
        let child = daemon(&installed("unbound", "unbound"), &["-d", "-c"], &path);
        UnboundProcess {
            addr,
            dir,
            _child: child,
        }
    }

    /// Unbound's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("unbound.log")).unwrap_or_default()
    }
}

pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two HTTP members (m0 = 192.0.2.10, m1 = 192.0.2.11, probed at `b[0]` and `b[1]`, fall and
/// rise 1, every 100 ms) of pool web behind `name`; `admin` goes into the [admin] table.
pub fn web_config(b: &[&Backend], admin: &str, name: &str) -> String {
    format!(
        "{admin}\n[checks.web]\ntype = \"http\"\ninterval = \"100ms\"\ntimeout = \"80ms\"\nfall = 1\nrise = 1\n\
         [pools.web]\ncheck = \"web\"\nmembers = [\
         {{ address = \"192.0.2.10\", name = \"m0\", probe_address = \"127.0.0.1\", probe_port = {} }}, \
         {{ address = \"192.0.2.11\", name = \"m1\", probe_address = \"127.0.0.1\", probe_port = {} }}]\n\
         [names.\"{name}\"]\npools = [\"web\"]\n",
        b[0].addr.port(),
        b[1].addr.port()
    )
}

/// The A records `server` answers for `name`, sorted; empty on no answer.
pub async fn a_of(server: SocketAddr, name: &str) -> Vec<String> {
    let q = query_msg(name, RecordType::A, false).to_vec().unwrap();
    let Some(b) = udp_raw(server, &q, Duration::from_millis(300)).await else {
        return Vec::new();
    };
    let Ok(m) = Message::from_vec(&b) else {
        return Vec::new();
    };
    let mut v = addrs(&m);
    v.sort();
    v
}

/// Asserts that systemd unit `text` passes `systemd-analyze verify`, its ExecStart pointing
/// at `bin` instead of /usr/bin/gtmd (which the tests do not install).
pub fn assert_unit_verifies(name: &str, text: &str, bin: &Path) {
    let unit = text.replace("/usr/bin/gtmd", bin.to_str().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, unit).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze is installed (apt-get install -y systemd)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
