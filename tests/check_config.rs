//! `gtmd check-config`, the real binary, on files with several mistakes: every error is
//! reported in file order; what would fail at start (a listen address twice, the admin API on
//! a DNS TCP address) or never answer (a zero TCP timeout) is refused; a setting the policy
//! does not use is warned of.

use std::process::Command;

const ZONE: &str = "$ORIGIN example.test.\n$TTL 300\n@ IN SOA ns1 host 1 7200 3600 1209600 300\n\
                    @ IN NS ns1\nns1 IN A 192.0.2.1\n";

/// Writes `config` beside a zones directory holding example.test and runs check-config on
/// it: whether it passed, and what it printed (stdout, then stderr).
fn check(config: &str) -> (bool, String, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    std::fs::write(dir.path().join("zones/example.test.zone"), ZONE).unwrap();
    let file = dir.path().join("gtmd.toml");
    std::fs::write(&file, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gtmd"))
        .args(["check-config", file.to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text, file, dir)
}

/// The line of `file`'s text `config` that holds `needle`, counted from 1.
fn line_of(config: &str, needle: &str) -> usize {
    config.lines().position(|l| l.contains(needle)).unwrap() + 1
}

const CHECK: &str = "[checks.t]\ntype = \"tcp\"\nport = 80\n";

#[test]
fn check_config_reports_every_error_in_file_order() {
    let config = String::from(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nzones_dir = \"zones\"\nudp_payload = 100\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [checks.b]\ntype = \"tcp\"\nport = 80\ninterval = \"often\"\n\
         [checks.a]\ntype = \"tcp\"\nport = 80\nfall = 0\n\
         [alerts]\nwebhook = \"ftp://x\"\n",
    );
    let (ok, out, file, _dir) = check(&config);
    assert!(!ok, "{out}");
    let at = |needle: &str| format!("{}:{}: ", file.display(), line_of(&config, needle));
    let want = [
        at("udp_payload"),
        at("often"),
        at("fall = 0"),
        at("webhook"),
    ];
    let mut from = 0;
    for w in &want {
        let Some(i) = out[from..].find(w.as_str()) else {
            panic!("{out}\nshould hold, in this order: {want:?}");
        };
        from += i + w.len();
    }
}

#[test]
fn a_listen_address_given_twice_is_refused() {
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:5391\", \"[::1]:5391\", \"0.0.0.0:5391\"]\n\
         zones_dir = \"zones\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{CHECK}"
    );
    let (ok, out, file, _dir) = check(&config);
    assert!(!ok, "{out}");
    let want = format!(
        "{}:2: server.listen[2]: 0.0.0.0:5391 clashes with server.listen[0] (127.0.0.1:5391)",
        file.display()
    );
    assert!(out.contains(&want), "{out} should contain {want}");
    // IPv4 and IPv6 side by side, and port 0 twice, are fine.
    let config = config.replace(", \"0.0.0.0:5391\"", ", \"127.0.0.2:0\", \"127.0.0.2:0\"");
    let (ok, out, ..) = check(&config);
    assert!(ok, "{out}");
}

#[test]
fn an_admin_address_on_a_dns_tcp_address_is_refused() {
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:5392\"]\nzones_dir = \"zones\"\n\
         [admin]\nlisten = \"127.0.0.1:5392\"\n{CHECK}"
    );
    let (ok, out, file, _dir) = check(&config);
    assert!(!ok, "{out}");
    let want = format!(
        "{}:5: admin.listen: 127.0.0.1:5392 clashes with server.listen[0] (127.0.0.1:5392)",
        file.display()
    );
    assert!(out.contains(&want), "{out} should contain {want}");
}

#[test]
fn a_tcp_timeout_of_zero_is_refused() {
    for key in ["tcp_idle_timeout", "tcp_read_timeout"] {
        let config = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nzones_dir = \"zones\"\n{key} = \"0s\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n"
        );
        let (ok, out, file, _dir) = check(&config);
        assert!(!ok, "{out}");
        let want = format!("{}:4: server.{key}: must be more than 0s", file.display());
        assert!(out.contains(&want), "{out} should contain {want}");
    }
}

#[test]
fn a_capacity_on_the_pools_of_a_weighted_or_all_name_is_warned_of() {
    for policy in ["weighted", "all"] {
        let config = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nzones_dir = \"zones\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n{CHECK}\
             [pools.a]\ncheck = \"t\"\ncapacity = 60\nmembers = [{{ address = \"192.0.2.10\" }}]\n\
             [pools.b]\ncheck = \"t\"\nmembers = [{{ address = \"192.0.2.11\" }}]\n\
             [names.\"w.example.test.\"]\npools = [\"a\", \"b\"]\npolicy = \"{policy}\"\n"
        );
        let (ok, out, ..) = check(&config);
        assert!(ok, "{out}");
        assert!(
            out.contains("warning: ")
                && out.contains("names.\"w.example.test.\": pool \"a\" has a capacity"),
            "{policy}: {out}"
        );
    }
}
