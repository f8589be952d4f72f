//! The status page at the admin API's `/`, driven in a real headless Chromium through
//! chromedriver (Debian `chromium` and `chromium-driver`; `.ci/run` installs them): a member
//! goes down in the page when its backend is refused, a change without the token is
//! refused, and one with it takes the member out of the DNS answers.
//!
//! With `GTMD_SCREENSHOT=PATH` the test saves its screenshot of the page there (docs/operation.md's
//! `dist/status-page.png` is made so); it always writes `target/status-page.png`.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};

const NAME: &str = "app.example.test.";

/// `name` in /usr/bin; panics naming `package` if it is not installed.
fn installed(name: &str, package: &str) -> std::path::PathBuf {
    let p = Path::new("/usr/bin").join(name);
    assert!(
        p.exists(),
        "{name} is not installed (apt-get install {package})"
    );
    p
}

/// chromedriver on a free loopback port, once it answers.
async fn chromedriver() -> (KillOnDrop, String) {
    let port = free_addr().port();
    let child = std::process::Command::new(installed("chromedriver", "chromium-driver"))
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let up = wait_until(Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    assert!(up.is_some(), "chromedriver does not listen on {port}");
    (KillOnDrop(child), url)
}

/// Ends every Chromium process of a session (found by its profile folder) when dropped, so
/// that a test that fails before closing its session leaves none behind.
struct Profile(tempfile::TempDir);

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::process::Command::new("pkill")
            .args(["-KILL", "-f", &self.0.path().display().to_string()])
            .status();
    }
}

/// A headless Chromium session, and the guard of its processes.
async fn browser(driver: &str) -> (Client, Profile) {
    installed("chromium", "chromium");
    let profile = Profile(tempfile::tempdir().unwrap());
    let dir = format!("--user-data-dir={}", profile.0.path().display());
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,1100", dir]
        }
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let c = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(driver)
        .await
        .expect("a Chromium session through chromedriver");
    (c, profile)
}

/// The text of the state cell of member `target` (`POOL/MEMBER`) in the page.
async fn member_state(c: &Client, target: &str) -> String {
    let css = format!("tr[data-member=\"{target}\"] td.state");
    match c.find(Locator::Css(&css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until `f` holds of the page; panics after `limit`.
async fn until_page<F, Fut>(limit: Duration, what: &str, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_until(limit, &mut f)
        .await
        .unwrap_or_else(|| panic!("the page did not show {what} within {limit:?}"))
}

/// Disables `target` from the page: its Disable button, a reason, the form sent.
async fn disable_from_page(c: &Client, target: &str, reason: &str) {
    let css = format!("tr[data-member=\"{target}\"] button.disable");
    // The page redraws its tables twice a second: click in one script run, so the button
    // cannot go stale between finding and clicking it.
    let clicked = c
        .execute(
            "const b = document.querySelector(arguments[0]); if (b) b.click(); return !!b;",
            vec![serde_json::Value::String(css.clone())],
        )
        .await
        .unwrap();
    assert_eq!(clicked, serde_json::Value::Bool(true), "{css}");
    let r = c.find(Locator::Id("reason")).await.unwrap();
    r.clear().await.unwrap();
    r.send_keys(reason).await.unwrap();
    c.find(Locator::Id("confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// The text of the element with id `id`.
async fn text_of(c: &Client, id: &str) -> String {
    c.find(Locator::Id(id))
        .await
        .unwrap()
        .text()
        .await
        .unwrap_or_default()
}

async fn message(c: &Client) -> String {
    c.find(Locator::Id("message"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap_or_default()
}

fn headers_of(admin: SocketAddr) -> reqwest::header::HeaderMap {
    reqwest::blocking::get(format!("http://{admin}/"))
        .unwrap()
        .headers()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_follows_health_and_disables_a_member_with_the_token_only() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let (mut b0, b1) = (Backend::start().await, Backend::start().await);
    let admin = format!("token_file = {:?}", token.display().to_string());
    let g = start(
        &web_config(&[&b0, &b1], &admin, NAME),
        &repo().join("zones"),
    )
    .await;
    let (_driver, url) = chromedriver().await;
    let (c, _profile) = browser(&url).await;
    c.goto(&format!("http://{}/", g.admin)).await.unwrap();

    // The page's own headers: a strict CSP, no framing, no sniffing; and no token in it.
    let a = g.admin;
    let h = tokio::task::spawn_blocking(move || headers_of(a))
        .await
        .unwrap();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    let source = c.source().await.unwrap();
    assert!(!source.contains("s3cret"), "the token is not in the page");

    until_page(Duration::from_secs(5), "web/m0 up", || async {
        member_state(&c, "web/m0").await == "up"
    })
    .await;

    // A refused backend: down in the page within 2 s.
    b0.refuse();
    let took = until_page(Duration::from_secs(2), "web/m0 down", || async {
        member_state(&c, "web/m0").await.starts_with("down")
    })
    .await;
    println!("backend refused: down in the page after {took:?}");
    // The change is in the timeline too.
    until_page(Duration::from_secs(2), "the member_down event", || async {
        let t = text_of(&c, "events").await;
        t.contains("member_down web/m0")
    })
    .await;

    // Without the token: refused, and m1 stays in the answers.
    disable_from_page(&c, "web/m1", "page test without a token").await;
    until_page(Duration::from_secs(3), "the refusal", || async {
        message(&c).await.starts_with("refused (401)")
    })
    .await;
    assert_eq!(a_of(g.dns, NAME).await, ["192.0.2.11"]);

    // With the token (kept in the session): m1 leaves the answers, checked with a query.
    let t = c.find(Locator::Id("token")).await.unwrap();
    t.send_keys("s3cret-token").await.unwrap();
    disable_from_page(&c, "web/m1", "page test").await;
    until_page(Duration::from_secs(3), "the change done", || async {
        message(&c).await.starts_with("done")
    })
    .await;
    wait_until(Duration::from_secs(3), || async {
        !a_of(g.dns, NAME).await.contains(&"192.0.2.11".to_string())
    })
    .await
    .expect("web/m1 leaves the answers");
    until_page(Duration::from_secs(3), "the override", || async {
        let css = "tr[data-member=\"web/m1\"] td.override";
        match c.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default().contains("page test"),
            Err(_) => false,
        }
    })
    .await;

    // The explain box answers in words.
    c.find(Locator::Id("explain-go"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_page(Duration::from_secs(3), "the explanation", || async {
        let t = text_of(&c, "explain").await;
        t.contains("app.example.test.: policy all")
            && t.contains("web/m1 (192.0.2.11): disabled by hand")
            && t.contains("Recovery: clients leave a failed member within")
    })
    .await;

    let png = c.screenshot().await.unwrap();
    std::fs::write(repo().join("target/status-page.png"), &png).unwrap();
    if let Ok(path) = std::env::var("GTMD_SCREENSHOT") {
        std::fs::write(path, &png).unwrap();
    }
    c.close().await.unwrap();
}

/// The value of attribute `attr` of the first element matching `css`, if any.
async fn attr_of(c: &Client, css: &str, attr: &str) -> Option<String> {
    let e = c.find(Locator::Css(css)).await.ok()?;
    e.attr(attr).await.ok().flatten()
}

/// The number after "up to " in an accessible label ("... up to 80.1 ms ...").
fn up_to(label: &str) -> f64 {
    label
        .split("up to ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0)
}

/// The history charts in a real Chromium: a backend that stops answering shows as the
/// member's down band and its probe latency rising to the timeout within 10 s; the name's
/// answer shares move to the member left; the change is marked on the charts; the charts
/// are focusable images with labels in words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_charts_show_a_failure_its_latency_and_the_answer_shift_within_ten_seconds() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let (b0, b1) = (Backend::start().await, Backend::start().await);
    let g = start(&web_config(&[&b0, &b1], "", NAME), &repo().join("zones")).await;
    // A steady trickle of queries, for the name's query rate.
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let (dns, s2) = (g.dns, stop.clone());
    let load = tokio::spawn(async move {
        while !s2.load(Ordering::Relaxed) {
            a_of(dns, NAME).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let (_driver, url) = chromedriver().await;
    let (c, _profile) = browser(&url).await;
    c.goto(&format!("http://{}/", g.admin)).await.unwrap();
    let m0 = "div[data-history-member=\"web/m0\"]";
    let name = format!("div[data-history-name=\"{NAME}\"]");
    until_page(Duration::from_secs(12), "m0 up in its timeline", || async {
        c.find(Locator::Css(&format!("{m0} rect.band-up")))
            .await
            .is_ok()
    })
    .await;
    until_page(Duration::from_secs(12), "the name's query rate", || async {
        let css = format!("{name} svg.chart:last-of-type");
        attr_of(&c, &css, "aria-label")
            .await
            .is_some_and(|l| up_to(&l) > 1.0)
    })
    .await;

    b0.set(Mode::Hang);
    let failed = std::time::Instant::now();
    until_page(Duration::from_secs(10), "m0's down band", || async {
        c.find(Locator::Css(&format!("{m0} rect.band-down")))
            .await
            .is_ok()
    })
    .await;
    let band = failed.elapsed();
    let latency = format!("{m0} svg.chart:last-of-type");
    until_page(
        Duration::from_secs(10) - band.min(Duration::from_secs(10)),
        "m0's latency at the timeout",
        || async {
            attr_of(&c, &latency, "aria-label")
                .await
                .is_some_and(|l| up_to(&l) >= 40.0)
        },
    )
    .await;
    println!(
        "backend hung: down band after {band:?}, latency chart risen after {:?}",
        failed.elapsed()
    );
    until_page(
        Duration::from_secs(6),
        "the answer shares moved to m1",
        || async {
            attr_of(&c, &format!("{name} svg.chart"), "aria-label")
                .await
                .is_some_and(|l| l.contains("192.0.2.10 0%") && l.contains("192.0.2.11 100%"))
        },
    )
    .await;
    until_page(Duration::from_secs(6), "the member_down mark", || async {
        c.find(Locator::Css(&format!("{m0} line.mark")))
            .await
            .is_ok()
    })
    .await;
    // Keyboard and screen readers: each chart is a focusable image with a label in words.
    assert_eq!(
        attr_of(&c, &format!("{m0} svg.chart"), "tabindex")
            .await
            .as_deref(),
        Some("0")
    );
    assert_eq!(
        attr_of(&c, &format!("{m0} svg.chart"), "role")
            .await
            .as_deref(),
        Some("img")
    );
    let words = attr_of(&c, &format!("{m0} svg.chart"), "aria-label")
        .await
        .unwrap_or_default();
    assert!(
        words.contains("up from") && words.contains("down from"),
        "{words}"
    );
    // The events list filters by kind.
    c.find(Locator::Id("filter-kind"))
        .await
        .unwrap()
        .send_keys("member_down")
        .await
        .unwrap();
    until_page(Duration::from_secs(3), "the filtered changes", || async {
        let t = text_of(&c, "events").await;
        t.contains("member_down web/m0") && !t.contains("member_up")
    })
    .await;

    // For the README's picture (GTMD_SCREENSHOT_HISTORY): the member back, and a while more.
    if std::env::var("GTMD_SCREENSHOT_HISTORY").is_ok() {
        tokio::time::sleep(Duration::from_secs(20)).await;
        b0.set(Mode::Ok);
        tokio::time::sleep(Duration::from_secs(25)).await;
        let f = c.find(Locator::Id("filter-kind")).await.unwrap();
        f.clear().await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await; // the list drawn again
    }
    c.execute(
        "document.getElementById('history').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    let png = c.screenshot().await.unwrap();
    std::fs::write(repo().join("target/status-history.png"), &png).unwrap();
    if let Ok(path) = std::env::var("GTMD_SCREENSHOT_HISTORY") {
        std::fs::write(path, &png).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    c.close().await.unwrap();
}
