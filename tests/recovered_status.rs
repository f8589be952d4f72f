//! What `/status` shows of a member once it has recovered: no error of the outage it is
//! back from.

use crate::common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_member_shows_no_last_error_in_status() {
    let (mut a, b) = (Backend::start().await, Backend::start().await);
    let g = start(
        &web_config(&[&a, &b], "", "app.example.test."),
        &repo().join("zones"),
    )
    .await;
    a.refuse();
    wait_until(Duration::from_secs(10), || async {
        member(g.admin, "m0").await["state"] == "down"
    })
    .await
    .expect("m0 down within 10 s");
    let s = member(g.admin, "m0").await;
    assert!(s["last_error"].is_string(), "{s}");
    a.restore().await;
    wait_until(Duration::from_secs(10), || async {
        member(g.admin, "m0").await["state"] == "up"
    })
    .await
    .expect("m0 up within 10 s");
    let s = member(g.admin, "m0").await;
    assert!(
        s["last_error"].is_null(),
        "an up member still shows its outage's error: {s}"
    );
}
