//! A name whose only member is disabled by hand answers NODATA, and its all-down alert says
//! so rather than naming the all-down behaviour it could not apply.

use crate::common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_all_down_alert_says_nodata_when_the_only_member_is_disabled() {
    let b = Backend::start().await;
    let hook = Receiver::start(200).await;
    let config = format!(
        "[alerts]\nwebhook = \"{}\"\nrate = 600\nburst = 100\n\
         [checks.web]\ntype = \"http\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\n\
         [pools.p]\ncheck = \"web\"\nmembers = [{{ name = \"m\", address = \"192.0.2.10\", probe_address = \"127.0.0.1\", probe_port = {} }}]\n\
         [names.\"app.example.test.\"]\npools = [\"p\"]\n",
        hook.url,
        b.addr.port()
    );
    let g = start(&config, &repo().join("zones")).await;
    let body = serde_json::json!({"target": "p/m", "action": "disable", "reason": "test"});
    let admin = g.admin;
    tokio::task::spawn_blocking(move || {
        gtmd::ops::ctl::request(admin, "POST", "/overrides", None, Some(&body))
    })
    .await
    .unwrap()
    .expect("the override is set");
    wait_until(Duration::from_secs(10), || async {
        !hook.events("name_all_down").is_empty()
    })
    .await
    .expect("a name_all_down alert within 10 s");
    assert!(a_of(g.dns, "app.example.test.").await.is_empty());
    let alert = &hook.events("name_all_down")[0];
    let reason = alert["reason"].as_str().unwrap();
    assert!(reason.contains("NODATA"), "{alert}");
    assert!(!reason.contains("All"), "{alert}");
}
