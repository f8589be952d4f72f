//! `gtmd ctl`: the operator's command line over the admin API, with reqwest's blocking client.

use std::net::SocketAddr;
use std::time::Duration;

/// One request to the admin API at `addr`; returns the body of a 2xx answer, or the error.
///
/// It runs on a thread of its own, so that it may be called from inside an async runtime
/// (tests do) as well as from the command line.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Result<String, String> {
    // A server bound to every address is reached on loopback.
    let addr = match addr.ip() {
        std::net::IpAddr::V4(a) if a.is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        }
        std::net::IpAddr::V6(a) if a.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    };
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|e| format!("{method:?} is not an HTTP method: {e}"))?;
    std::thread::scope(|s| {
        s.spawn(|| send(addr, method, path, token, body))
            .join()
            .unwrap_or_else(|_| Err("the request thread failed".into()))
    })
}

fn send(
    addr: SocketAddr,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Result<String, String> {
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
    let post = method == reqwest::Method::POST;
    let mut req = client.request(method, format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    } else if post {
        // A change must carry a header no cross-origin form can send.
        req = req.header(reqwest::header::CONTENT_TYPE, "application/json");
    }
    let resp = req
        .send()
        .map_err(|e| format!("cannot reach the admin API at {addr}: {e}"))?;
    let code = resp.status();
    let text = resp
        .text()
        .map_err(|e| format!("admin API at {addr}: {e}"))?;
    if code.is_success() {
        Ok(text)
    } else {
        Err(format!(
            "admin API answered {}: {}",
            code.as_u16(),
            text.trim_end()
        ))
    }
}

/// `gtmd ctl history`'s lines for a `/history` reply: a line per step with data (its start
/// in UTC, then the member's state and probe latency min/avg/max in ms, or the name's
/// queries per second by type and each answer's share), then the changes, oldest first.
pub fn history_lines(h: &serde_json::Value) -> Vec<String> {
    let step = h["step"].as_u64().unwrap_or(5);
    let start = h["start_ms"].as_u64().unwrap_or(0);
    let at = |k: usize| {
        let t = std::time::UNIX_EPOCH + Duration::from_millis(start + k as u64 * step * 1000);
        humantime::format_rfc3339_seconds(t).to_string()
    };
    let steps = h["steps"].as_u64().unwrap_or(0) as usize;
    let mut out = Vec::new();
    for m in h["members"].as_array().into_iter().flatten() {
        out.push(format!(
            "{} (step {step} s): time, state, probe latency min/avg/max ms",
            m["member"].as_str().unwrap_or("")
        ));
        out.extend((0..steps).filter_map(|k| member_line(m, k, &at)));
    }
    for n in h["names"].as_array().into_iter().flatten() {
        out.push(format!(
            "{} (step {step} s): time, queries/s (A, AAAA, other), answer shares",
            n["name"].as_str().unwrap_or("")
        ));
        out.extend((0..steps).filter_map(|k| name_line(n, k, &at)));
    }
    let events: Vec<&serde_json::Value> = h["events"].as_array().into_iter().flatten().collect();
    if !events.is_empty() {
        out.push("changes:".into());
    }
    for e in events.into_iter().rev() {
        let who = match (e["pool"].as_str(), e["member"].as_str()) {
            (Some(p), Some(m)) => format!("{p}/{m}"),
            _ => ["name", "pool", "region", "target"]
                .iter()
                .find_map(|k| e[*k].as_str())
                .unwrap_or("")
                .to_string(),
        };
        let to = e["new_state"]
            .as_str()
            .map(|s| format!(" -> {s}"))
            .unwrap_or_default();
        out.push(format!(
            "{}  {} {who}{to}",
            e["time"].as_str().unwrap_or(""),
            e["event"].as_str().unwrap_or("")
        ));
    }
    out
}

/// Step `k` of a member: its state and latencies; none for a step without data.
fn member_line(m: &serde_json::Value, k: usize, at: &dyn Fn(usize) -> String) -> Option<String> {
    let ms = |v: &serde_json::Value| v.as_f64().map_or("-".into(), |x| format!("{x:.2}"));
    let state = m["state"][k].as_str()?;
    let l = &m["latency_ms"];
    Some(format!(
        "{}  {state:<8} {} / {} / {}",
        at(k),
        ms(&l["min"][k]),
        ms(&l["avg"][k]),
        ms(&l["max"][k])
    ))
}

/// Step `k` of a name: its query rate by type and each answer's share.
fn name_line(n: &serde_json::Value, k: usize, at: &dyn Fn(usize) -> String) -> Option<String> {
    let qps = n["qps"][k].as_f64()?;
    let rate = |i: usize| n["queries"][i]["per_second"][k].as_f64().unwrap_or(0.0);
    let shares: Vec<String> = n["shares"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let share = s["share"][k].as_f64()?;
            Some(format!("{} {:.0}%", s["answer"].as_str()?, share * 100.0))
        })
        .collect();
    Some(format!(
        "{}  {qps:.1} q/s ({:.1}, {:.1}, {:.1})  {}",
        at(k),
        rate(0) + rate(1),
        rate(2) + rate(3),
        rate(4) + rate(5),
        shares.join(", ")
    ))
}
