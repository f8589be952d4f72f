//! What gtmd ships beside the binary: the Debian package (built with `cargo deb --no-build`
//! from the binary under test and unpacked into a scratch root), the man pages and shell
//! completions in dist/ (current with the command line), and the Prometheus rules and
//! Grafana dashboard (checked by `promtool` and against the metrics gtmd exports).
//! `.ci/run` installs cargo-deb (`cargo install cargo-deb`) and Debian's `prometheus`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::repo;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn gtmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gtmd"))
}

/// Every file of `dir`, sorted, with its contents.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn every_page_a_man_page_refers_to_is_shipped() {
    let tmp = tempfile::tempdir().unwrap();
    run(gtmd().arg("manpage").arg(tmp.path()));
    for dir in [tmp.path().to_path_buf(), repo().join("dist/man")] {
        let pages = files(&dir);
        let shipped: Vec<&str> = pages.iter().map(|p| p.0.as_str()).collect();
        for (name, text) in &pages {
            let text = String::from_utf8_lossy(text);
            // roff writes the hyphens of gtmd-ctl(8) as "\-".
            for at in text.match_indices("gtmd\\-") {
                let rest = &text[at.0..];
                let Some(end) = rest.find("(8)") else {
                    continue;
                };
                let page = &rest[..end];
                if !page
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '\\' || c == '-')
                {
                    continue;
                }
                let page = format!("{}.8", page.replace("\\-", "-"));
                assert!(
                    shipped.contains(&page.as_str()),
                    "{}/{name} refers to {page}, which is not shipped",
                    dir.display()
                );
            }
        }
    }
}

const KEYS_BEGIN: &str = "<!-- The key tables below are made from the configuration's definitions (src/config/file/); a test keeps them current. -->\n";
const KEYS_END: &str = "<!-- End of the key tables. -->\n";

/// docs/configuration.md's key tables are those the configuration's definitions make (as
/// gtmd.toml(5) is). `GTMD_REFRESH_DOCS=1` writes them.
#[test]
fn the_key_tables_of_the_configuration_reference_are_current() {
    let path = repo().join("docs/configuration.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (Some(a), Some(b)) = (doc.find(KEYS_BEGIN), doc.find(KEYS_END)) else {
        panic!("docs/configuration.md lacks the markers of its key tables");
    };
    let have = &doc[a + KEYS_BEGIN.len()..b];
    let want = gtmd::config::reference::markdown();
    if have != want && std::env::var_os("GTMD_REFRESH_DOCS").is_some() {
        let new = format!("{}{want}{}", &doc[..a + KEYS_BEGIN.len()], &doc[b..]);
        std::fs::write(&path, new).unwrap();
        return;
    }
    assert!(
        have == want,
        "docs/configuration.md's key tables are out of date; refresh with: GTMD_REFRESH_DOCS=1 cargo test --release --features cluster --test package key_tables"
    );
    // Every key written in the sample configuration is in them.
    let sample = std::fs::read_to_string(repo().join("dist/gtmd.toml")).unwrap();
    let keys = gtmd::config::reference::sections();
    for line in sample.lines().map(str::trim) {
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        if key.starts_with('#') || key.contains(['"', ' ', '{']) {
            continue;
        }
        assert!(
            keys.iter()
                .flat_map(|s| &s.keys)
                .any(|k| k.path.ends_with(&format!(".{key}"))),
            "dist/gtmd.toml writes {key}, which the reference does not name"
        );
    }
}

#[test]
fn the_man_pages_and_completions_in_dist_are_current() {
    let tmp = tempfile::tempdir().unwrap();
    let man = tmp.path().join("man");
    std::fs::create_dir(&man).unwrap();
    run(gtmd().arg("manpage").arg(&man));
    let refresh = "refresh with: target/release/gtmd manpage dist/man, and gtmd completions SHELL > dist/completions/...";
    let want = files(&man);
    let have = files(&repo().join("dist/man"));
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&have), names(&want), "{refresh}");
    for (h, w) in have.iter().zip(&want) {
        assert!(h.1 == w.1, "dist/man/{} is out of date; {refresh}", h.0);
    }
    let page = |name: &str| {
        let (_, text) = want.iter().find(|f| f.0 == name).unwrap();
        String::from_utf8_lossy(text).into_owned()
    };
    assert!(page("gtmd.8").contains(".TH gtmd 8"));
    assert!(page("gtmd.toml.5").contains(".TH gtmd.toml 5"));
    assert!(page("gtmd.8").contains("gtmd.toml(5)"));
    for (shell, file) in [
        ("bash", "gtmd.bash"),
        ("zsh", "_gtmd"),
        ("fish", "gtmd.fish"),
    ] {
        let made = run(gtmd().args(["completions", shell]));
        let have = std::fs::read_to_string(repo().join("dist/completions").join(file)).unwrap();
        assert!(
            made == have,
            "dist/completions/{file} is out of date; {refresh}"
        );
        assert!(
            made.contains("check-config") && made.contains("ctl"),
            "{shell}"
        );
    }
}

/// `name` in /usr/bin; panics naming `package` if it is not installed.
fn installed(name: &str, package: &str) -> PathBuf {
    let p = Path::new("/usr/bin").join(name);
    assert!(
        p.exists(),
        "{name} is not installed (apt-get install {package})"
    );
    p
}

#[test]
fn the_prometheus_rules_pass_promtool_and_their_unit_tests() {
    let promtool = installed("promtool", "prometheus");
    let dir = repo().join("dist/prometheus");
    let out = run(Command::new(&promtool)
        .args(["check", "rules"])
        .arg(dir.join("gtmd-rules.yml")));
    assert!(out.contains("SUCCESS"), "{out}");
    let out = run(Command::new(&promtool)
        .args(["test", "rules"])
        .arg(dir.join("gtmd-rules.test.yml")));
    assert!(out.contains("SUCCESS"), "{out}");
    let rules = std::fs::read_to_string(dir.join("gtmd-rules.yml")).unwrap();
    for alert in [
        "GtmdMemberDown",
        "GtmdRegionRemoved",
        "GtmdNameAllDown",
        "GtmdNameFailOpen",
        "GtmdNoProbeSucceeds",
        "GtmdConfigReloadFailed",
        "GtmdViewDisagrees",
    ] {
        assert!(rules.contains(&format!("alert: {alert}\n")), "{alert}");
    }
}

/// The `gtmd_...` metric names in `text`, without a histogram's `_bucket` suffix.
fn metric_names(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("gtmd_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = tail[..end].trim_end_matches("_bucket").to_string();
        if !out.contains(&name) {
            out.push(name);
        }
        rest = &tail[end..];
    }
    out
}

#[test]
fn the_dashboard_and_rules_use_only_metrics_gtmd_exports() {
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("dist/grafana/gtmd.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 15, "{}", exprs.len());
    let rules = std::fs::read_to_string(repo().join("dist/prometheus/gtmd-rules.yml")).unwrap();
    // Every metric name gtmd defines is a string constant in its source.
    let mut source = String::new();
    for f in ["src/base/metrics.rs", "src/base/alert.rs"] {
        source += &std::fs::read_to_string(repo().join(f)).unwrap();
    }
    for name in metric_names(&(exprs.join("\n") + &rules)) {
        assert!(
            source.contains(&format!("\"{name}\"")),
            "{name} is not a metric gtmd exports"
        );
    }
}

#[test]
fn the_debian_package_holds_the_binary_config_unit_man_pages_and_completions() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let has_deb = Command::new(&cargo)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_deb,
        "cargo-deb is not installed (cargo install cargo-deb)"
    );
    let tmp = tempfile::tempdir().unwrap();
    // The binary under test, as `cargo build --release` left it.
    let out = run(Command::new(&cargo)
        .current_dir(repo())
        .args(["deb", "--no-build", "--output"])
        .arg(tmp.path()));
    let deb = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .unwrap_or_else(|| panic!("no .deb in {}: {out}", tmp.path().display()));
    let file = deb.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        file.starts_with(&format!("gtmd_{}", env!("CARGO_PKG_VERSION")))
            && file.ends_with("_amd64.deb"),
        "{file}"
    );
    let fields = run(Command::new("dpkg-deb")
        .args(["-f"])
        .arg(&deb)
        .args(["Package", "Section", "Depends"]));
    assert!(
        fields.contains("Package: gtmd") && fields.contains("Section: net"),
        "{fields}"
    );
    assert!(fields.contains("libc6"), "{fields}");

    let root = tmp.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    for f in [
        "usr/bin/gtmd",
        "etc/gtmd/gtmd.toml",
        "etc/gtmd/zones/example.test.zone",
        "lib/systemd/system/gtmd.service",
        "lib/systemd/system/gtmd-agent.service",
        "usr/share/man/man8/gtmd.8.gz",
        "usr/share/man/man8/gtmd-ctl-disable.8.gz",
        "usr/share/man/man5/gtmd.toml.5.gz",
        "usr/share/bash-completion/completions/gtmd",
        "usr/share/zsh/vendor-completions/_gtmd",
        "usr/share/fish/vendor_completions.d/gtmd.fish",
        "usr/share/gtmd/prometheus/gtmd-rules.yml",
        "usr/share/gtmd/grafana/gtmd.json",
        "usr/share/doc/gtmd/README.md",
        "usr/share/doc/gtmd/docs/configuration.md",
        "usr/share/doc/gtmd/docs/operation.md",
    ] {
        assert!(root.join(f).is_file(), "{f} is not in the package");
    }
    let bin = root.join("usr/bin/gtmd");
    the_binary_is_stripped_and_its_symbols_are_in_dbgsym(&deb, &bin);
    let version = run(Command::new(&bin).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("gtmd {}", env!("CARGO_PKG_VERSION"))
    );
    // The installed sample is a valid configuration, with its zones beside it.
    let check = run(Command::new(&bin)
        .arg("check-config")
        .arg(root.join("etc/gtmd/gtmd.toml")));
    assert!(check.contains("ok"), "{check}");

    let control = tmp.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert!(conffiles.contains("/etc/gtmd/gtmd.toml"), "{conffiles}");
    // The service is not started (nor enabled) by the package: the config is a sample.
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(postinst.contains("installed but not started"), "{postinst}");
    for never in [
        "systemctl start",
        "enable --now gtmd\n    ",
        "deb-systemd-invoke",
    ] {
        let code: String = postinst
            .lines()
            .filter(|l| !l.starts_with("    ") && !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            !code.contains(never.trim()),
            "postinst runs {never:?}:\n{postinst}"
        );
    }

    // The installed units verify, pointed at the unpacked binary.
    for unit in ["gtmd.service", "gtmd-agent.service"] {
        let text = std::fs::read_to_string(root.join("lib/systemd/system").join(unit)).unwrap();
        common::assert_unit_verifies(unit, &text, &bin);
    }
}

/// The section names of the ELF file at `path` (binutils' readelf).
fn sections(path: &Path) -> Vec<String> {
    let out = run(Command::new("readelf").args(["-S", "-W"]).arg(path));
    out.lines()
        .filter_map(|l| {
            let l = l.trim_start().strip_prefix('[')?;
            let (_, rest) = l.split_once(']')?;
            rest.split_whitespace().next().map(str::to_string)
        })
        .collect()
}

/// `cargo deb` builds every feature the units need, strips the binary, and puts its debug
/// symbols in gtmd-dbgsym (under /usr/lib/debug/.build-id/, as Debian does).
fn the_binary_is_stripped_and_its_symbols_are_in_dbgsym(deb_file: &Path, bin: &Path) {
    let out = deb_file.parent().unwrap();
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(repo().join("Cargo.toml")).unwrap()).unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let features = deb.get("features").and_then(|f| f.as_array());
    assert!(
        features.is_some_and(|f| f.iter().any(|f| f.as_str() == Some("cluster"))),
        "cargo deb builds without --features cluster, which gtmd-agent.service needs: {deb}"
    );
    // .debug_gdb_scripts is loaded data (gdb's pretty-printers), not debug information.
    let kept = sections(bin);
    assert!(
        !kept
            .iter()
            .any(|s| [".symtab", ".debug_info", ".debug_line", ".debug_str"].contains(&s.as_str())),
        "the packaged binary is not stripped: {kept:?}"
    );
    let notes = run(Command::new("readelf").arg("-n").arg(bin));
    let id = notes
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .unwrap_or_else(|| panic!("the binary has no build id:\n{notes}"))
        .to_string();
    let ddeb = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "ddeb"))
        .unwrap_or_else(|| panic!("cargo deb made no -dbgsym package in {}", out.display()));
    let fields = run(Command::new("dpkg-deb").arg("-f").arg(&ddeb).args([
        "Package",
        "Section",
        "Recommends",
    ]));
    assert!(
        fields.contains("Package: gtmd-dbgsym") && fields.contains("Section: debug"),
        "{fields}"
    );
    let root = out.join("dbgsym");
    run(Command::new("dpkg-deb").arg("-x").arg(&ddeb).arg(&root));
    let debug = root.join(format!(
        "usr/lib/debug/.build-id/{}/{}.debug",
        &id[..2],
        &id[2..]
    ));
    assert!(
        sections(&debug).iter().any(|s| s == ".debug_info"),
        "{} has no .debug_info",
        debug.display()
    );
    let size = |p: &Path| std::fs::metadata(p).unwrap().len() / 1_000_000;
    println!(
        "binary {} MB, debug symbols {} MB; packages {} MB and {} MB",
        size(bin),
        size(&debug),
        size(deb_file),
        size(&ddeb)
    );
}
