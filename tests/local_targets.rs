//! Members that are domain names inside gtmd's own zones: their addresses come from what gtmd
//! itself answers (zone records and bound names alike), not from `probe.resolvers`, which
//! here point at a socket that never answers. Real backends on loopback, real UDP queries,
//! a real reload of the zone file.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use hickory_proto::rr::RecordType;
use tokio::net::{TcpListener, UdpSocket};

/// The zone app.test., with `records`.
fn write_zone(zones: &Path, records: &str) {
    std::fs::write(
        zones.join("app.test.zone"),
        format!("$ORIGIN app.test.\n$TTL 1\n@ SOA ns hostmaster 1 3600 600 86400 1\n@ NS ns\nns A 192.0.2.1\n{records}"),
    )
    .unwrap();
}

/// A config file in `dir` (listening on port 0) with `rest` after the listen settings, and
/// `probe.resolvers` at `dead` (a socket that reads nothing and answers nothing).
fn write_config(dir: &Path, dead: SocketAddr, rest: &str) -> PathBuf {
    let zones = dir.join("zones");
    std::fs::create_dir_all(&zones).unwrap();
    let path = dir.join("gtmd.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nzones_dir = {:?}\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [probe]\nresolvers = [\"{dead}\"]\n{rest}",
            zones.display().to_string()
        ),
    )
    .unwrap();
    path
}

/// A TCP check on `port`, every 100 ms, fall and rise 1; pool front with one member whose
/// name is `target`, bound at www.app.test.
fn front(port: u16, target: &str) -> String {
    format!(
        "[checks.port]\ntype = \"tcp\"\nport = {port}\ninterval = \"100ms\"\ntimeout = \"80ms\"\nfall = 1\nrise = 1\n\
         [pools.front]\ncheck = \"port\"\nmembers = [{{ cname = \"{target}\", name = \"lb\" }}]\n\
         [names.\"www.app.test.\"]\npools = [\"front\"]\n"
    )
}

/// Waits until member `name`'s state is `state`; panics with its status after `limit`.
async fn wait_state(admin: SocketAddr, name: &str, state: &str, limit: Duration) {
    let ok = wait_until(limit, || async {
        member(admin, name).await["state"] == state
    })
    .await;
    assert!(
        ok.is_some(),
        "{name} not {state} after {limit:?}: {}",
        member(admin, name).await
    );
}

/// A listener on `ip:port` that accepts (and drops) connections until aborted.
async fn listen(ip: &str, port: u16) -> tokio::task::JoinHandle<()> {
    let l = TcpListener::bind((ip, port)).await.unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            drop(s);
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_named_in_gtmds_own_zone_is_probed_at_its_records_without_the_resolvers() {
    let dir = tempfile::tempdir().unwrap();
    let dead = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let backend = Backend::start().await;
    let port = backend.addr.port();
    let config = write_config(
        dir.path(),
        dead.local_addr().unwrap(),
        &front(port, "lb.app.test."),
    );
    write_zone(&dir.path().join("zones"), "lb A 127.0.0.1\n");
    let g = start_file(&config).await;
    let m = member(g.admin, "lb").await;
    assert_eq!(m["state"], "up", "{m}");
    assert_eq!(m["resolved_from"], "gtmd's own zones", "{m}");
    assert_eq!(m["resolved"], serde_json::json!(["127.0.0.1"]), "{m}");
    assert!(m["resolution_error"].is_null(), "{m}");
    // Answered: the CNAME, and the record it leads to in the same zone.
    let addrs = answer(g.dns, "www.app.test.", RecordType::A).await;
    assert_eq!(addrs, ["127.0.0.1"]);
    let s = status(g.admin).await;
    assert_eq!(s["names"][0]["fail_open"], false, "{}", s["names"][0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_reload_that_moves_the_target_is_followed_and_a_missing_target_says_it_was_resolved_locally(
) {
    let dir = tempfile::tempdir().unwrap();
    let dead = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let backend = Backend::start().await;
    let port = backend.addr.port();
    let zones = dir.path().join("zones");
    let config = write_config(
        dir.path(),
        dead.local_addr().unwrap(),
        &front(port, "lb.app.test."),
    );
    // Nothing listens at 127.0.0.2 on the backend's port.
    write_zone(&zones, "lb A 127.0.0.2\n");
    let g = start_file(&config).await;
    wait_state(g.admin, "lb", "down", Duration::from_secs(5)).await;
    write_zone(&zones, "lb A 127.0.0.1\n");
    reload(g.admin);
    wait_state(g.admin, "lb", "up", Duration::from_secs(5)).await;
    // The target goes from the zone: a clear error, not a resolver's timeout.
    write_zone(&zones, "other A 127.0.0.1\n");
    reload(g.admin);
    wait_state(g.admin, "lb", "down", Duration::from_secs(5)).await;
    let m = member(g.admin, "lb").await;
    let e = m["last_error"].as_str().unwrap_or_default();
    assert!(
        e.contains("lb.app.test.") && e.contains("NXDOMAIN") && e.contains("resolved locally"),
        "{m}"
    );
    assert!(!e.contains("timed out"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_named_after_a_gtm_name_follows_that_names_answers() {
    let dir = tempfile::tempdir().unwrap();
    let dead = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = first.local_addr().unwrap().port();
    drop(first);
    let a = listen("127.0.0.1", port).await;
    let b = listen("127.0.0.2", port).await;
    // lb.app.test. answers 127.0.0.1 while it is up, else 127.0.0.2.
    let rest = format!(
        "{}[pools.lb1]\ncheck = \"port\"\nmembers = [{{ address = \"127.0.0.1\", name = \"a\" }}]\n\
         [pools.lb2]\ncheck = \"port\"\nmembers = [{{ address = \"127.0.0.2\", name = \"b\" }}]\n\
         [names.\"lb.app.test.\"]\npools = [\"lb1\", \"lb2\"]\npolicy = \"failover\"\n",
        front(port, "lb.app.test.")
    );
    let config = write_config(dir.path(), dead.local_addr().unwrap(), &rest);
    write_zone(&dir.path().join("zones"), "");
    let g = start_file(&config).await;
    wait_state(g.admin, "lb", "up", Duration::from_secs(5)).await;
    assert_eq!(
        member(g.admin, "lb").await["resolved_from"],
        "gtmd's own zones"
    );
    // a fails: lb.app.test. answers b, and the member is probed there and stays up.
    a.abort();
    let moved = wait_until(Duration::from_secs(5), || async {
        answer(g.dns, "lb.app.test.", RecordType::A).await == ["127.0.0.2"]
    })
    .await;
    assert!(moved.is_some(), "lb.app.test. never moved to b");
    let probes = member(g.admin, "lb").await["probes"].as_u64().unwrap();
    let more = wait_until(Duration::from_secs(5), || async {
        member(g.admin, "lb").await["probes"].as_u64().unwrap() >= probes + 5
    })
    .await;
    assert!(more.is_some(), "the member is no longer probed");
    let m = member(g.admin, "lb").await;
    assert_eq!(m["state"], "up", "{m}");
    // b fails too: nothing behind lb.app.test. answers, and the member goes down.
    b.abort();
    wait_state(g.admin, "lb", "down", Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_refuses_names_whose_members_lead_to_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let dead = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rest = format!(
        "{}[pools.back]\ncheck = \"port\"\nmembers = [{{ cname = \"www.app.test.\", name = \"back\" }}]\n\
         [names.\"lb.app.test.\"]\npools = [\"back\"]\n",
        front(80, "lb.app.test.")
    );
    let config = write_config(dir.path(), dead.local_addr().unwrap(), &rest);
    let e = gtmd::config::Config::load(&config).unwrap_err().to_string();
    // Refused at the member that closes the ring (which one depends on where the search
    // starts), with the ring in words.
    assert!(e.contains("leads back to itself"), "{e}");
    assert!(
        (e.contains("pools.front.members[0].cname")
            && e.contains("lb.app.test. → www.app.test. → lb.app.test."))
            || (e.contains("pools.back.members[0].cname")
                && e.contains("www.app.test. → lb.app.test. → www.app.test.")),
        "{e}"
    );
}

fn reload(admin: SocketAddr) {
    if let Err(e) = gtmd::ops::ctl::request(admin, "POST", "/reload", None, None) {
        panic!("reload: {e}");
    }
}
