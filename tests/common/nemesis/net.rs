//! Threads inside a lab host's network namespace (`setns` on the thread itself: its sockets
//! then live in that namespace), a small blocking HTTP client with deadlines for the admin
//! API, and the test's HTTP backends whose behaviour the nemesis switches.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Moves the calling thread into the network namespace `ns` (an `ip netns` name).
pub fn enter(ns: &str) {
    let path = format!("/var/run/netns/{ns}");
    let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
    // SAFETY: setns(2) on a valid namespace file descriptor changes only the calling
    // thread's network namespace; the descriptor outlives the call.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(
        r,
        0,
        "setns into {path}: {}",
        std::io::Error::last_os_error()
    );
}

/// Runs `f` on a new thread inside the namespace `ns`.
pub fn spawn_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter(&ns);
        f()
    })
}

/// One HTTP/1.1 request with `Connection: close`, every step bounded by `limit`: the status
/// code and body, or an error saying what failed.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    limit: Duration,
) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, limit).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(limit)).ok();
    s.set_write_timeout(Some(limit)).ok();
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\n{auth}content-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let deadline = Instant::now() + limit;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        if Instant::now() > deadline {
            return Err("read: deadline".into());
        }
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no header end")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status code")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((code, body))
}

/// The body of a chunked transfer encoding.
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(len.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// How a backend answers its health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// HTTP 200.
    Up = 0,
    /// Not listening: connections are refused.
    Refuse = 1,
    /// Accepts and never answers.
    Hang = 2,
    /// Fails two requests, answers one, over and over.
    Flap = 3,
}

impl Mode {
    pub fn from_u8(v: u8) -> Mode {
        match v {
            0 => Mode::Up,
            1 => Mode::Refuse,
            2 => Mode::Hang,
            _ => Mode::Flap,
        }
    }
}

/// A real HTTP backend listening at `addr` inside a lab host, switched by the test.
pub struct Backend {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    pub fn start(ns: &str, addr: SocketAddr) -> Backend {
        let mode = Arc::new(AtomicU8::new(Mode::Up as u8));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (mode.clone(), stop.clone());
        let thread = spawn_in(ns, move || serve(addr, &m, &s));
        Backend {
            addr,
            mode,
            stop,
            thread: Some(thread),
        }
    }

    pub fn set(&self, m: Mode) {
        self.mode.store(m as u8, Ordering::SeqCst);
    }

    pub fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(Ordering::SeqCst))
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The accept loop: listens while the mode is not `Refuse`, polling every 5 ms.
fn serve(addr: SocketAddr, mode: &Arc<AtomicU8>, stop: &Arc<AtomicBool>) {
    let hits = Arc::new(AtomicU64::new(0));
    let mut listener: Option<TcpListener> = None;
    while !stop.load(Ordering::SeqCst) {
        if Mode::from_u8(mode.load(Ordering::SeqCst)) == Mode::Refuse {
            listener = None;
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        if listener.is_none() {
            listener = TcpListener::bind(addr).ok();
            if let Some(l) = &listener {
                l.set_nonblocking(true).unwrap();
            }
        }
        let Some(l) = &listener else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        match l.accept() {
            Ok((conn, _)) => {
                let (m, st, n) = (
                    mode.clone(),
                    stop.clone(),
                    hits.fetch_add(1, Ordering::SeqCst),
                );
                std::thread::spawn(move || answer(conn, &m, &st, n));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Answers one health check as the mode says.
fn answer(mut conn: TcpStream, mode: &AtomicU8, stop: &AtomicBool, n: u64) {
    conn.set_nonblocking(false).ok();
    conn.set_read_timeout(Some(Duration::from_secs(1))).ok();
    let mut buf = [0u8; 2048];
    let _ = conn.read(&mut buf);
    let ok = match Mode::from_u8(mode.load(Ordering::SeqCst)) {
        Mode::Up => true,
        Mode::Flap => n % 3 == 2,
        Mode::Refuse => false,
        Mode::Hang => {
            let until = Instant::now() + Duration::from_secs(5);
            while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            return;
        }
    };
    let resp: &[u8] = if ok {
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n"
    } else {
        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    };
    let _ = conn.write_all(resp);
}
