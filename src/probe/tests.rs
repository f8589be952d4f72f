use super::*;
use crate::config::Config;

fn limit_hits(limit: &str) -> f64 {
    let key = format!("gtmd_limits_total{{limit=\"{limit}\"}} ");
    crate::base::metrics::handle()
        .render()
        .lines()
        .find(|l| l.starts_with(&key))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn fast_tally() -> Tally {
    let pace = Pace {
        interval: Duration::from_secs(1),
        fast: Some(Duration::from_millis(100)),
        thresholds: Thresholds { fall: 3, rise: 2 },
    };
    Tally::new(1, "t", pace)
}

#[test]
fn a_late_result_of_an_older_probe_is_not_counted_over_a_newer_one() {
    let mut t = fast_tally();
    let now = Instant::now();
    let first = t.sent(now);
    assert!(t.record(first, Ok(()), Duration::ZERO).is_some());
    // Two probes overlap; the newer answers first, the older times out later.
    let older = t.sent(now);
    let newer = t.sent(now);
    let r = t.record(newer, Ok(()), Duration::ZERO).expect("counted");
    assert!(r.ok);
    assert!(t
        .record(older, Err("timed out".into()), Duration::ZERO)
        .is_none());
    assert_eq!(t.health.streak, 0);
}

#[test]
fn an_unanswered_probe_of_an_up_member_brings_the_next_one_a_fast_interval_after_it() {
    let mut t = fast_tally();
    let now = Instant::now();
    // Unknown: the first probe's result is awaited.
    let n = t.sent(now);
    assert_eq!(t.next(), None);
    t.record(n, Ok(()), Duration::ZERO).unwrap();
    // Up and idle: the steady pace.
    let due = t.next().unwrap();
    assert!(due >= now + Duration::from_millis(900));
    // Up with a probe out: the next one a fast interval after it was sent.
    let sent = Instant::now();
    t.sent(sent);
    assert_eq!(t.next(), Some(sent + Duration::from_millis(100)));
    // Down with a probe out and nothing counted against it: its result is awaited.
    let mut t = fast_tally();
    let n = t.sent(now);
    t.record(n, Err("refused".into()), Duration::ZERO).unwrap();
    t.sent(now);
    assert_eq!(t.next(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_makes_probes_wait_and_loses_nothing() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accept = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            drop(s);
        }
    });
    let members: Vec<String> = (0..4)
        .map(|i| format!("{{ name = \"m{i}\", address = \"198.51.100.{i}\", probe_address = \"127.0.0.1\" }}"))
        .collect();
    let text = format!(
        "[checks.port]\ntype = \"tcp\"\nport = {port}\ninterval = \"100ms\"\ntimeout = \"90ms\"\n\
         [pools.app]\ncheck = \"port\"\nmembers = [{}]\n",
        members.join(", ")
    );
    let cfg = Config::parse(&text, "test.toml", std::path::Path::new("/")).unwrap();
    let (tx, mut rx) = mpsc::channel(1);
    let mut prober = Prober::new(tx);
    let start = Instant::now();
    let (ids, started) = prober.sync(&cfg).unwrap();
    assert_eq!(started, 4);
    // Nobody reads for 600 ms (an engine that is behind): one report fits, and every
    // other loop finds the queue full, counts it, and waits.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(limit_hits("probe_queue") >= 3.0);
    // Once reports are taken again, every loop's waiting report arrives (its first one,
    // made at once, not a later one) and probing goes on: each loop is heard from at
    // least twice within 2 s.
    let mut heard: HashMap<u64, usize> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while heard.len() < 4 || heard.values().any(|&n| n < 2) {
        let batch = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("every loop reports again within 2 s")
            .unwrap();
        for r in batch {
            assert!(r.ok, "{:?}", r.error);
            let n = heard.entry(r.probe).or_default();
            if *n == 0 {
                let made = r.at.duration_since(start);
                assert!(
                    made < Duration::from_millis(300),
                    "first report made at {made:?}"
                );
            }
            *n += 1;
        }
    }
    let mut got: Vec<u64> = heard.into_keys().collect();
    got.sort_unstable();
    let mut want: Vec<u64> = ids.iter().flatten().copied().collect();
    want.sort_unstable();
    assert_eq!(got, want);
    accept.abort();
}
