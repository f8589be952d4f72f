//! Zone transfers under clients that ask for AXFR and never read, with real TCP clients on a
//! zone of 100,000 records: transfers are bounded per client and in all, the server's memory
//! stays bounded, and a secondary elsewhere still gets the whole zone meanwhile.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const RECORDS: usize = 100_000;

/// A zone `big.test.` of [`RECORDS`] A records with long names (about 7 MB on the wire, more
/// than the kernel's socket buffers hold).
fn big_zone(dir: &std::path::Path) {
    let mut z = String::from("$TTL 300\n@ SOA ns hm 1 2 3 4 300\n NS ns\nns A 192.0.2.1\n");
    for i in 0..RECORDS {
        z += &format!(
            "host-{i:06}-with-a-rather-long-label-to-fill-the-wire A 10.{}.{}.{}\n",
            i >> 16,
            (i >> 8) & 255,
            i & 255
        );
    }
    std::fs::write(dir.join("big.test.zone"), z).unwrap();
}

/// Sends an AXFR for big.test. over a new connection from `from`.
async fn ask_axfr(dns: SocketAddr, from: &str) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    // A small window, as a client that does not read soon shows.
    s.set_recv_buffer_size(4096).unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut s = s.connect(dns).await.unwrap();
    let q = query_msg("big.test.", RecordType::AXFR, false)
        .to_vec()
        .unwrap();
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    s.write_all(&framed).await.unwrap();
    s
}

/// Reads a transfer's messages until the closing SOA: the response code of the first and the
/// number of records.
async fn read_axfr(s: &mut TcpStream) -> (ResponseCode, usize) {
    let mut records = 0;
    let mut soas = 0;
    let mut first = None;
    loop {
        let mut len = [0u8; 2];
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut len));
        if !matches!(read.await, Ok(Ok(_))) {
            return (first.unwrap_or(ResponseCode::ServFail), records);
        }
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await.unwrap();
        let m = Message::from_vec(&buf).unwrap();
        let code = *first.get_or_insert(m.response_code);
        records += m.answers.len();
        soas += m
            .answers
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA)
            .count();
        if code != ResponseCode::NoError || soas >= 2 {
            return (code, records);
        }
    }
}

/// This process's resident memory, bytes (gtmd runs inside it).
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_a_transfer_hold_bounded_memory_and_slots() {
    let dir = tempfile::tempdir().unwrap();
    big_zone(dir.path());
    // Stalled transfers keep their slots for the whole test.
    let server = "allow_transfer = [\"127.0.0.0/8\"]\ntcp_read_timeout = \"30s\"";
    let g = start_with("", server, dir.path()).await;
    // A secondary gets the whole zone: SOA, NS, ns A, the records, SOA.
    let mut s = ask_axfr(g.dns, "127.0.32.1").await;
    assert_eq!(
        read_axfr(&mut s).await,
        (ResponseCode::NoError, RECORDS + 4)
    );
    let before = rss();
    // 200 clients ask and never read: 100 from one address, 100 from five others.
    let mut idle = Vec::new();
    for i in 0..200 {
        let from = if i < 100 {
            "127.0.31.1".to_string()
        } else {
            format!("127.0.31.{}", 2 + i % 5)
        };
        idle.push(ask_axfr(g.dns, &from).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut peak = rss();
    // Meanwhile a secondary elsewhere gets the whole zone...
    let mut s = ask_axfr(g.dns, "127.0.32.1").await;
    assert_eq!(
        read_axfr(&mut s).await,
        (ResponseCode::NoError, RECORDS + 4)
    );
    peak = peak.max(rss());
    let grown = peak.saturating_sub(before) / (1 << 20);
    eprintln!("resident memory grew by {grown} MiB with 200 stalled transfers");
    // ...while one more transfer from the crowded address is refused.
    let mut s = ask_axfr(g.dns, "127.0.31.1").await;
    assert_eq!(read_axfr(&mut s).await.0, ResponseCode::Refused);
    assert!(grown < 100, "resident memory grew by {grown} MiB");
    drop(idle);
}
