//! Resource limits, each hit for real: TCP connections in all and per client, a slow sender
//! and a client that is idle, queries per connection, and the admin API's request size.
//! Each one that bites is counted in `gtmd_limits_total{limit}`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection to `dns` from the loopback address `from`.
async fn connect(dns: SocketAddr, from: &str) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(dns).await.unwrap()
}

/// Whether the server closes `s` within 5 s (reading nothing, or only the answers it sent).
async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn limit_count(admin: SocketAddr, limit: &str) -> f64 {
    let key = format!("gtmd_limits_total{{limit=\"{limit}\"}} ");
    metric(admin, &key).await.unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_tcp_cap_a_newcomer_takes_the_place_of_an_idle_connection() {
    let g = start_with(
        "",
        "tcp_max_connections = 4\ntcp_max_per_client = 2",
        &repo().join("zones"),
    )
    .await;
    let www = Some(vec!["192.0.2.80".to_string()]);
    // Two from one client are served; a third from it replaces the client's oldest.
    let mut a1 = connect(g.dns, "127.0.5.1").await;
    let mut a2 = connect(g.dns, "127.0.5.1").await;
    assert_eq!(ask_tcp(&mut a1).await, www);
    assert_eq!(ask_tcp(&mut a2).await, www);
    let mut a3 = connect(g.dns, "127.0.5.1").await;
    assert_eq!(ask_tcp(&mut a3).await, www);
    // Others get in, up to four in all, and beyond: the longest-idle one makes room.
    let mut b1 = connect(g.dns, "127.0.5.2").await;
    let mut b2 = connect(g.dns, "127.0.5.3").await;
    assert_eq!(ask_tcp(&mut b1).await, www);
    assert_eq!(ask_tcp(&mut b2).await, www);
    let mut c = connect(g.dns, "127.0.5.4").await;
    assert_eq!(ask_tcp(&mut c).await, www);
    assert!(limit_count(g.admin, "tcp_max_per_client").await >= 1.0);
    assert!(limit_count(g.admin, "tcp_max_connections").await >= 1.0);
    assert!(limit_count(g.admin, "tcp_evicted").await >= 2.0);
    assert!(
        closed(&mut a1).await,
        "the client's oldest connection stays open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_lose_their_slot() {
    let g = start_with(
        "",
        "tcp_max_per_client = 1\ntcp_read_timeout = \"300ms\"\ntcp_idle_timeout = \"600ms\"",
        &repo().join("zones"),
    )
    .await;
    // Slowloris: a length, one byte of the query, then nothing.
    let mut slow = connect(g.dns, "127.0.6.1").await;
    slow.write_all(&[0, 40, 0x12]).await.unwrap();
    assert!(
        closed(&mut slow).await,
        "a stalled query keeps its connection"
    );
    assert!(limit_count(g.admin, "tcp_read_timeout").await >= 1.0);
    // Idle after an answer: closed after the idle timeout, and the client's one slot is free.
    let mut idle = connect(g.dns, "127.0.6.1").await;
    assert!(ask_tcp(&mut idle).await.is_some());
    assert!(closed(&mut idle).await, "an idle connection stays open");
    assert!(limit_count(g.admin, "tcp_idle_timeout").await >= 1.0);
    let mut next = connect(g.dns, "127.0.6.1").await;
    assert!(ask_tcp(&mut next).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_ends_after_its_query_cap() {
    let g = start_with("", "tcp_max_queries = 5", &repo().join("zones")).await;
    let mut s = connect(g.dns, "127.0.7.1").await;
    for i in 0..5 {
        assert!(ask_tcp(&mut s).await.is_some(), "query {i}");
    }
    assert_eq!(ask_tcp(&mut s).await, None, "a sixth query was answered");
    assert!(limit_count(g.admin, "tcp_max_queries").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_already_read_are_answered_before_the_cap_closes_a_connection() {
    let g = start_with("", "tcp_max_queries = 5", &repo().join("zones")).await;
    let mut s = connect(g.dns, "127.0.7.2").await;
    // Eight queries in one write: all of them reach gtmd before the fifth answer.
    let mut framed = Vec::new();
    for id in 0..8u16 {
        let mut q = query_msg("www.example.test.", RecordType::A, true);
        q.metadata.id = id;
        let b = q.to_vec().unwrap();
        framed.extend_from_slice(&(b.len() as u16).to_be_bytes());
        framed.extend_from_slice(&b);
    }
    s.write_all(&framed).await.unwrap();
    let mut ids = Vec::new();
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => break, // closed, after the answers
            Err(_) => panic!("neither answered nor closed; answers so far: {ids:?}"),
        }
        let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut body).await.unwrap();
        ids.push(
            hickory_proto::op::Message::from_vec(&body)
                .unwrap()
                .metadata
                .id,
        );
    }
    assert_eq!(
        ids,
        (0..8).collect::<Vec<u16>>(),
        "every query read is answered, in order"
    );
    assert!(limit_count(g.admin, "tcp_max_queries").await >= 1.0);
}

/// Runs dnsperf over TCP from one address with `clients` connections; returns
/// (sent, completed, lost).
fn dnsperf_tcp(dns: SocketAddr, clients: u32) -> (u64, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let queries = dir.path().join("queries");
    std::fs::write(
        &queries,
        "www.example.test A\napp.example.test A\nnx.example.test A\nexample.test SOA\n",
    )
    .unwrap();
    let out = std::process::Command::new("dnsperf")
        .args([
            "-m",
            "tcp",
            "-s",
            "127.0.0.1",
            "-p",
            &dns.port().to_string(),
        ])
        .args([
            "-c",
            &clients.to_string(),
            "-q",
            "400",
            "-l",
            "4",
            "-Q",
            "20000",
        ])
        .arg("-d")
        .arg(&queries)
        .output()
        .expect("dnsperf runs (apt-get install dnsperf; see .ci/run)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name:?} in dnsperf's output:\n{text}"))
    };
    (
        field("Queries sent:"),
        field("Queries completed:"),
        field("Queries lost:"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_resolver_on_one_address_loses_nothing_over_tcp() {
    // Defaults: a resolver farm behind one address trips no TCP cap.
    let g = start("", &repo().join("zones")).await;
    for clients in [40, 200] {
        let dns = g.dns;
        let (sent, done, lost) = tokio::task::spawn_blocking(move || dnsperf_tcp(dns, clients))
            .await
            .unwrap();
        eprintln!("dnsperf -m tcp -c {clients}: {sent} sent, {done} completed, {lost} lost");
        assert!(sent > 1000, "-c {clients}: only {sent} queries sent");
        assert_eq!(lost, 0, "-c {clients}: {lost} of {sent} lost");
    }
}

/// `POST /overrides` with `body` as JSON.
async fn post_override(admin: SocketAddr, body: &serde_json::Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{admin}/overrides"))
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_refuses_a_huge_body() {
    let g = start("", &repo().join("zones")).await;
    let reason = "x".repeat(64 * 1024 + 1);
    let body = serde_json::json!({ "target": "app/eu-1", "action": "disable", "reason": reason });
    let r = post_override(g.admin, &body).await;
    assert_eq!(r.status().as_u16(), 413);
    assert!(limit_count(g.admin, "admin_max_body").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_takes_a_body_up_to_a_max_body_above_two_mebibytes() {
    // admin.max_body is the only bound on a body: a 2.5 MiB one reaches the handler, which
    // refuses it for its target, not for its size.
    let g = start("max_body = 3145728", &repo().join("zones")).await;
    let reason = "x".repeat(5 << 19);
    let body =
        serde_json::json!({ "target": "nosuch/member", "action": "disable", "reason": reason });
    let r = post_override(g.admin, &body).await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("nosuch"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_reads_no_more_than_max_body() {
    // A backend whose marker comes after 100 KB of body.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let body = format!("{}healthy", "x".repeat(100_000));
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            });
        }
    });
    let cfg = format!(
        "[probe]\nmax_body = 1024\n[checks.web]\ntype = \"http\"\nbody_contains = \"healthy\"\ninterval = \"2s\"\ntimeout = \"1s\"\n\
         [pools.app]\ncheck = \"web\"\nmembers = [{{ name = \"m\", address = \"192.0.2.11\", probe_address = \"127.0.0.1\", probe_port = {port} }}]\n\
         [names.\"app.example.test.\"]\npools = [\"app\"]\n"
    );
    let g = start(&cfg, &repo().join("zones")).await;
    let m = member(g.admin, "m").await;
    assert_eq!(m["state"], "down", "{m}");
    let err = m["last_error"].as_str().unwrap();
    assert!(err.contains("first 1024 bytes"), "{err}");
    assert!(limit_count(g.admin, "probe_max_body").await >= 1.0);
    server.abort();
}

/// Everything the server sends on `s` until it closes it (within 5 s), or None if it does not.
async fn until_closed(s: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    match read {
        Ok(_) => Some(String::from_utf8_lossy(&got).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_requests_are_bounded_in_time_and_connections() {
    let g = start(
        "max_time = \"2s\"\nmax_connections = 2\n",
        &repo().join("zones"),
    )
    .await;
    // One client sends half its headers; another its headers and half a body.
    let mut slow_head = TcpStream::connect(g.admin).await.unwrap();
    slow_head
        .write_all(b"GET /status HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .unwrap();
    let mut slow_body = TcpStream::connect(g.admin).await.unwrap();
    slow_body
        .write_all(b"POST /overrides HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // They hold both slots: a third connection takes the place of the one still sending its
    // headers (the other has a request under way), which is closed with nothing.
    let mut third = TcpStream::connect(g.admin).await.unwrap();
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await;
    let answer = until_closed(&mut third).await.expect("third kept open");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let head = until_closed(&mut slow_head)
        .await
        .expect("slow head kept open");
    assert!(!head.contains("200 OK"), "{head}");
    // The slow body is cut off with 408.
    let body = until_closed(&mut slow_body)
        .await
        .expect("slow body kept open");
    assert!(body.starts_with("HTTP/1.1 408"), "{body}");
    // Their slots are free again: these metrics requests are answered.
    assert!(limit_count(g.admin, "admin_max_time").await >= 1.0);
    assert!(limit_count(g.admin, "admin_max_connections").await >= 1.0);
}

/// `n` members on one TCP port, probed every 100 ms, and a name over them.
fn many_members(n: usize, port: u16, extra: &str) -> String {
    let members: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{{ name = \"m{i}\", address = \"198.51.100.{}\", probe_address = \"127.0.0.1\", probe_port = {port} }}",
                i + 1
            )
        })
        .collect();
    format!(
        "{extra}\n[checks.port]\ntype = \"tcp\"\nport = {port}\ninterval = \"100ms\"\ntimeout = \"90ms\"\n\
         [pools.app]\ncheck = \"port\"\nmembers = [{}]\n[names.\"app.example.test.\"]\npools = [\"app\"]\n",
        members.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_alert_queue_drops_and_counts() {
    // A webhook receiver that takes connections and never answers.
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", hook.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hook.accept().await {
            held.push(s);
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accept = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            drop(s);
        }
    });
    let extra = format!(
        "[alerts]\nwebhook = \"{url}\"\ntimeout = \"60s\"\nqueue = 2\nrate = 1000\nburst = 1000"
    );
    let g = start(&many_members(2, port, &extra), &repo().join("zones")).await;
    // Ten overrides set and cleared: twenty alerts. The first is stuck with the receiver,
    // two wait, the rest are dropped; the overrides themselves take effect at once.
    let client = reqwest::Client::new();
    for _ in 0..10 {
        for (path, body) in [
            (
                "/overrides",
                serde_json::json!({ "target": "app/m0", "action": "disable", "reason": "r" }),
            ),
            (
                "/overrides/clear",
                serde_json::json!({ "target": "app/m0" }),
            ),
        ] {
            let r = client
                .post(format!("http://{}{path}", g.admin))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{path}: {}", r.status());
        }
    }
    assert_eq!(
        answer(g.dns, "app.example.test.", RecordType::A)
            .await
            .len(),
        2
    );
    let dropped = metric(g.admin, "gtmd_alerts_total{result=\"dropped\"} ")
        .await
        .unwrap_or(0.0);
    assert!(dropped >= 15.0, "{dropped} dropped");
    assert_eq!(limit_count(g.admin, "alerts_queue").await, dropped);
    held.abort();
    accept.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_time_limit_does_not_cut_off_a_slow_reload() {
    // A reload that adds a member whose backend hangs waits for that member's first probe
    // (its 1.5 s timeout) before it answers: longer than admin.max_time, which bounds only
    // the client's sending of the request.
    let (ok, hang) = (Backend::start().await, Backend::start().await);
    hang.set(Mode::Hang);
    let dir = tempfile::tempdir().unwrap();
    let member = |n: &str, b: &Backend| {
        format!(
            "{{ name = \"{n}\", address = \"198.51.100.{}\", probe_address = \"127.0.0.1\", probe_port = {} }}",
            if n == "a" { 1 } else { 2 },
            b.addr.port()
        )
    };
    let config = |members: &str| {
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nzones_dir = {:?}\n\
             [admin]\nlisten = \"127.0.0.1:0\"\nmax_time = \"300ms\"\n\
             [checks.web]\ntype = \"http\"\ninterval = \"2s\"\ntimeout = \"1500ms\"\n\
             [pools.app]\ncheck = \"web\"\nmembers = [{members}]\n\
             [names.\"app.example.test.\"]\npools = [\"app\"]\n",
            repo().join("zones").display().to_string()
        )
    };
    let path = dir.path().join("gtmd.toml");
    std::fs::write(&path, config(&member("a", &ok))).unwrap();
    let g = start_file(&path).await;
    std::fs::write(
        &path,
        config(&format!("{}, {}", member("a", &ok), member("b", &hang))),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let r = reqwest::Client::new()
        .post(format!("http://{}/reload", g.admin))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"members_added\":1"), "{body}");
    assert!(
        took > Duration::from_millis(1000),
        "the reload took {took:?}"
    );
}
