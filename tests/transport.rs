//! DNS transports: pipelined TCP, IPv6 listeners, and the DNS semantics of a pool-bound name.

use crate::common;

use std::path::Path;

use common::*;
use gtmd::app::{self, Listeners};
use gtmd::config::Config;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tokio_util::sync::CancellationToken;

const POOL: &str = "[checks.c]\ntype = \"tcp\"\nport = {PORT}\ninterval = \"1s\"\ntimeout = \"200ms\"\n\
                    [pools.p]\ncheck = \"c\"\nmembers = [{ address = \"192.0.2.10\", probe_address = \"127.0.0.1\" }]\n\
                    [names.\"app.example.test.\"]\npools = [\"p\"]\nttl = 7\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_tcp_queries_are_answered_in_order() {
    let g = start("", &repo().join("zones")).await;
    let names = [
        "www.example.test.",
        "nx.example.test.",
        "alias.example.test.",
        "mail.example.test.",
    ];
    let msgs: Vec<_> = names
        .iter()
        .map(|n| query_msg(n, RecordType::A, true))
        .collect();
    let replies = tcp_many(g.dns, &msgs).await;
    for (q, r) in msgs.iter().zip(&replies) {
        assert_eq!(q.id, r.id);
        assert_eq!(q.queries, r.queries);
    }
    assert_eq!(replies[1].response_code, ResponseCode::NXDomain);
    assert_eq!(addrs(&replies[3]), vec!["192.0.2.25"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_listener_answers_over_udp_and_tcp() {
    let text = format!(
        "[server]\nlisten = [\"[::1]:0\", \"127.0.0.1:0\"]\nzones_dir = {:?}\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        repo().join("zones").display().to_string()
    );
    let cfg = Config::parse(&text, "t.toml", Path::new("/")).unwrap();
    let Ok(listeners) = Listeners::bind(&cfg).await else {
        eprintln!("no IPv6 loopback on this machine; skipping");
        return;
    };
    let v6 = listeners.dns[0].local_addr().unwrap();
    let stop = CancellationToken::new();
    let running = app::start(cfg, listeners, stop.clone()).await.unwrap();
    running.ready.clone().wait_for(|r| *r).await.unwrap();
    assert!(v6.is_ipv6());
    let q = query_msg("www.example.test.", RecordType::AAAA, true);
    assert_eq!(addrs(&udp(v6, &q).await), vec!["2001:db8::80"]);
    assert_eq!(addrs(&tcp(v6, &q).await), vec!["2001:db8::80"]);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_name_is_authoritative_with_nodata_for_other_types() {
    let b = Backend::start().await;
    let g = start(
        &POOL.replace("{PORT}", &b.addr.port().to_string()),
        &repo().join("zones"),
    )
    .await;
    let a = udp(g.dns, &query_msg("app.example.test.", RecordType::A, true)).await;
    assert!(a.authoritative);
    assert_eq!(a.answers[0].ttl, 7);
    assert_eq!(addrs(&a), vec!["192.0.2.10"]);
    for t in [RecordType::MX, RecordType::AAAA, RecordType::TXT] {
        let m = udp(g.dns, &query_msg("app.example.test.", t, true)).await;
        assert_eq!(
            (m.response_code, m.authoritative, m.answers.len()),
            (ResponseCode::NoError, true, 0),
            "{t}"
        );
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA, "{t}");
        assert_eq!(
            m.authorities[0].ttl, 300,
            "negative TTL is min(SOA TTL, MINIMUM)"
        );
    }
    // The name is a node of the zone: a name below it is NXDOMAIN, the parent is not.
    let m = udp(
        g.dns,
        &query_msg("x.app.example.test.", RecordType::A, true),
    )
    .await;
    assert_eq!(m.response_code, ResponseCode::NXDomain);
    // ANY (RFC 8482) answers one RRset: the lowest type, here the pool's A set.
    let m = tcp(
        g.dns,
        &query_msg("app.example.test.", RecordType::ANY, true),
    )
    .await;
    assert_eq!(addrs(&m), vec!["192.0.2.10"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_transfer_is_served_to_allowed_clients_only() {
    // The harness writes [server] itself; allow_transfer is set through a full config here.
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\", \"[::1]:0\"]\nzones_dir = {:?}\nallow_transfer = [\"127.0.0.0/8\"]\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n",
        repo().join("zones").display().to_string()
    );
    let cfg = Config::parse(&text, "t.toml", Path::new("/")).unwrap();
    let listeners = Listeners::bind(&cfg).await.unwrap();
    let v4 = listeners.dns[0].local_addr().unwrap();
    let v6 = listeners.dns[1].local_addr().unwrap();
    let stop = CancellationToken::new();
    let running = app::start(cfg, listeners, stop.clone()).await.unwrap();
    running.ready.clone().wait_for(|r| *r).await.unwrap();
    let m = tcp(v4, &query_msg("example.test.", RecordType::AXFR, false)).await;
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert!(m.authoritative);
    let first = m.answers.first().unwrap();
    let last = m.answers.last().unwrap();
    assert_eq!(
        (first.record_type(), last.record_type()),
        (RecordType::SOA, RecordType::SOA)
    );
    // Every record of the zone, with the SOA opening and closing the transfer.
    let zones = gtmd::zone::load_dir(&repo().join("zones")).unwrap();
    assert_eq!(m.answers.len(), zones[0].all_records().count() + 2);
    assert!(m
        .answers
        .iter()
        .any(|r| r.name.to_ascii() == "www.example.test." && r.record_type() == RecordType::A));
    // ::1 is not in the allowed prefix.
    let m = tcp(v6, &query_msg("example.test.", RecordType::AXFR, false)).await;
    assert_eq!(m.response_code, ResponseCode::Refused);
    stop.cancel();
}
