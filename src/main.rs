//! The `gtmd` command: runs the server, or checks a configuration.

#![warn(clippy::too_many_lines)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gtmd::app::{self, Listeners};
use gtmd::config::Config;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    version,
    about = "Authoritative DNS whose answers follow health-checked address pools"
)]
struct Cli {
    /// Configuration file. Without it, the embedded sample (dist/gtmd.toml) is used, with
    /// zones/ taken from the working directory.
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check a configuration and its zone files, then exit 0 (valid) or 1 (invalid).
    CheckConfig {
        /// The file to check (default: --config, else the embedded sample).
        file: Option<PathBuf>,
    },
    /// Probe and publish this instance's views to the cluster ([cluster] in --config), and
    /// serve the admin API, but answer no DNS: a vantage point that counts in the quorum.
    Agent,
    /// DNSSEC keys: make one, or print the DS records for the parent zone.
    Dnssec {
        #[command(subcommand)]
        op: DnssecOp,
    },
    /// Print shell completions for SHELL (bash, zsh, fish, elvish or powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the manual page, gtmd(8), in roff; with DIR, write it there with one page per
    /// command (gtmd-ctl(8), gtmd-ctl-disable(8), ...).
    Manpage { dir: Option<PathBuf> },
    /// Talk to a running gtmd through its admin API (address and token from --config).
    Ctl {
        /// The admin API address (default: admin.listen of --config, else 127.0.0.1:8053).
        #[arg(long)]
        admin: Option<std::net::SocketAddr>,
        /// File holding the bearer token (default: admin.token_file of --config).
        #[arg(long)]
        token_file: Option<PathBuf>,
        #[command(subcommand)]
        op: CtlOp,
    },
}

#[derive(clap::Args)]
struct SetArgs {
    /// POOL/MEMBER, pool:POOL or region:REGION.
    target: String,
    #[arg(long)]
    reason: String,
    /// End by itself after this long (a drain), e.g. 30m.
    #[arg(long = "for")]
    duration: Option<String>,
}

#[derive(Subcommand)]
enum DnssecOp {
    /// Make a key pair for ZONE as BIND's K<zone>+<alg>+<tag>.key and .private (a CSK,
    /// flags 257, unless --zsk) and print its base name, to list in
    /// [zones."ZONE".dnssec] keys.
    Keygen {
        zone: String,
        /// 13 (ECDSAP256SHA256) or 15 (ED25519).
        #[arg(long, short, default_value = "13")]
        algorithm: String,
        /// A zone-signing key (flags 256) for a KSK/ZSK split or a ZSK rollover.
        #[arg(long)]
        zsk: bool,
        /// Where to write the files.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Print the DS records (SHA-256) of ZONE's keys in --config, for the parent zone.
    Ds { zone: String },
}

#[derive(Subcommand)]
enum CtlOp {
    /// Every member, name, region and override, as JSON.
    Status,
    /// Take TARGET out of every answer, whatever its health. It is still probed.
    Disable(SetArgs),
    /// Keep TARGET in answers whatever its health.
    ForceUp(SetArgs),
    /// Remove the override of TARGET: its health decides again.
    Enable { target: String },
    /// The overrides in force.
    Overrides,
    /// Why NAME answers what it does: each member's eligibility, the order tried, and every
    /// possible answer with its probability, for the client given (address or subnet).
    Explain {
        name: String,
        #[arg(long)]
        client: Option<String>,
    },
    /// Read the configuration and zones again (as SIGHUP does); prints what changed, or the
    /// error and exits 1 with nothing changed.
    Reload,
    /// What happened to TARGET (a name, or a member as POOL/MEMBER, its name or address) over
    /// the last hour (or --since): a line per step with its state and probe latency, or its
    /// queries per second and answer shares, then the changes.
    History {
        target: String,
        /// How far back: `15m`, `1h`, `24h`.
        #[arg(long, default_value = "1h")]
        since: String,
        /// Print the JSON as /history gives it.
        #[arg(long)]
        json: bool,
    },
}

/// gtmd(8): the commands and options from the command line's own definition, and where
/// the rest is documented.
fn manpage(dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    let man = |cmd: clap::Command| {
        clap_mangen::Man::new(cmd)
            .section("8")
            .manual("System Manager's Manual")
            .source(concat!("gtmd ", env!("CARGO_PKG_VERSION")))
    };
    // No `help` subcommand in the pages: clap's is not a page of its own (gtmd --help).
    let cmd = <Cli as clap::CommandFactory>::command()
        .disable_help_subcommand(true)
        .long_about(
            "gtmd is an authoritative DNS server whose answers follow health-checked address \
             pools: each name bound to pools answers the healthy members by its policy (all, \
             weighted, failover, topology), with short TTLs, so clients move within seconds of a \
             region failing. Without a command it serves DNS and the admin API (status page, \
             JSON status, overrides, metrics) as the configuration says.",
        );
    if let Some(dir) = dir {
        fn pages(
            cmd: clap::Command,
            dir: &std::path::Path,
            man: &dyn Fn(clap::Command) -> clap_mangen::Man,
        ) -> std::io::Result<()> {
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                pages(sub.clone(), dir, man)?;
            }
            man(cmd).generate_to(dir).map(|_| ())
        }
        let mut all = cmd.clone();
        all.build();
        pages(all, dir, &man)?;
        // gtmd.toml(5), from the configuration's own definitions.
        let toml = gtmd::config::reference::man_page(concat!("gtmd ", env!("CARGO_PKG_VERSION")));
        std::fs::write(dir.join("gtmd.toml.5"), toml)?;
    }
    let man = man(cmd);
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    man.render_subcommands_section(&mut out)?;
    out.extend_from_slice(
        b".SH FILES\n.TP\n/etc/gtmd/gtmd.toml\nThe configuration (the package installs the sample; \
          every key is in gtmd.toml(5)).\n\
          .TP\n/etc/gtmd/zones/\nZone files (RFC 1035), one zone per *.zone file.\n\
          .TP\n/etc/gtmd/token\nThe admin API's bearer token, passed to the service by systemd.\n\
          .TP\n/var/lib/gtmd/\nThe state file (overrides and zone serials, admin.state_file).\n\
          .SH SIGNALS\nSIGHUP reads the configuration and zones again; a bad file is refused and \
          the running state is kept. SIGTERM stops cleanly.\n\
          .SH EXAMPLES\n.nf\ngtmd check-config /etc/gtmd/gtmd.toml\n\
          gtmd -c /etc/gtmd/gtmd.toml ctl status\n\
          gtmd -c /etc/gtmd/gtmd.toml ctl disable web/eu-west --reason maintenance --for 30m\n\
          gtmd -c /etc/gtmd/gtmd.toml ctl explain app.example.com. --client 198.51.100.7\n\
          dig @127.0.0.1 -p 5353 app.example.test A\n.fi\n\
          .SH SEE ALSO\nsystemctl(1), dig(1), /usr/share/doc/gtmd/README.md\n",
    );
    man.render_version_section(&mut out)?;
    match dir {
        Some(dir) => std::fs::write(dir.join("gtmd.8"), &out)?,
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&out)?;
        }
    }
    Ok(())
}

fn load(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::embedded()?,
    })
}

/// mimalloc: a reload of a large zone takes a third less time than with glibc's allocator,
/// and leaves less of the old zone behind (docs/performance.md, "A large zone").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` option (its number in mimalloc.h, v2 and v3 alike).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps the resident size what the heap holds (docs/performance.md, "Probing at scale"):
/// - no transparent huge pages: mimalloc asks for them on its arenas (MADV_HUGEPAGE), and a
///   2 MB page is resident whole however little of it is used (probing 10,000 members, 100
///   of 126 MB resident were such pages);
/// - memory freed goes back to the kernel at once, not when the thread next allocates
///   (10 MB less resident at 10,000 members, the same CPU per probe). Nothing is freed per
///   query.
fn memory_settings() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and changes only this process's flag;
    // mi_option_set takes a valid option number and a value.
    unsafe {
        let _ = libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        // MIMALLOC_PURGE_DELAY, when set, is the operator's choice.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        }
    }
}

fn main() -> ExitCode {
    use std::io::IsTerminal;
    memory_settings();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Cmd::CheckConfig { file }) => check(file.as_ref().or(cli.config.as_ref())),
        Some(Cmd::Ctl {
            admin,
            token_file,
            op,
        }) => ctl(cli.config.as_ref(), admin, token_file, op),
        Some(Cmd::Dnssec { op }) => dnssec(cli.config.as_ref(), op),
        Some(Cmd::Agent) => serve(cli.config.as_ref(), true),
        Some(Cmd::Completions { shell }) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "gtmd", &mut std::io::stdout());
            Ok(())
        }
        Some(Cmd::Manpage { dir }) => manpage(dir.as_deref()),
        None => serve(cli.config.as_ref(), false),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gtmd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: Option<&PathBuf>) -> anyhow::Result<()> {
    let cfg = load(path)?;
    let zones = cfg.load_zones()?;
    for w in &cfg.warnings {
        println!("warning: {w}");
    }
    println!(
        "{}: ok ({} zones, {} pools, {} members, {} bound names)",
        cfg.source,
        zones.iter().count(),
        cfg.pools.len(),
        cfg.members.len(),
        cfg.names.len()
    );
    Ok(())
}

fn dnssec(config: Option<&PathBuf>, op: DnssecOp) -> anyhow::Result<()> {
    use anyhow::Context;
    let zone_name = |z: &str| {
        gtmd::config::absolute_name(z).with_context(|| format!("{z:?} is not a zone name"))
    };
    match op {
        DnssecOp::Keygen {
            zone,
            algorithm,
            zsk,
            dir,
        } => {
            let alg = match algorithm.to_ascii_lowercase().as_str() {
                "13" | "ecdsap256sha256" => 13,
                "15" | "ed25519" => 15,
                other => {
                    anyhow::bail!("algorithm {other:?}: use 13 (ECDSAP256SHA256) or 15 (ED25519)")
                }
            };
            let base = gtmd::zone::keys::generate(&zone_name(&zone)?, alg, !zsk, &dir)
                .map_err(anyhow::Error::msg)?;
            println!("{}", base.display());
        }
        DnssecOp::Ds { zone } => {
            let origin = hickory_proto::rr::LowerName::new(&zone_name(&zone)?);
            let zones = load(config)?.load_zones()?;
            let z = zones
                .iter()
                .find(|z| z.origin == origin)
                .with_context(|| format!("{origin} is not a zone of the configuration"))?;
            let keys = z.keys.as_ref().with_context(|| {
                format!("{origin} is not signed: it has no [zones.\"{origin}\".dnssec]")
            })?;
            for line in keys.ds_lines(z.soa.ttl) {
                println!("{line}");
            }
        }
    }
    Ok(())
}

fn ctl(
    config: Option<&PathBuf>,
    admin: Option<std::net::SocketAddr>,
    token_file: Option<PathBuf>,
    op: CtlOp,
) -> anyhow::Result<()> {
    let cfg = config.map(|p| Config::load(p)).transpose()?;
    let admin = admin
        .or(cfg.as_ref().map(|c| c.admin_listen))
        .unwrap_or(([127, 0, 0, 1], 8053).into());
    let token = match token_file.or(cfg.and_then(|c| c.token_file)) {
        Some(f) => Some(
            std::fs::read_to_string(&f)
                .map_err(|e| anyhow::anyhow!("token file {}: {e}", f.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let set = |a: SetArgs, action: &str| serde_json::json!({ "target": a.target, "action": action, "reason": a.reason, "for": a.duration });
    let (method, path, body) = match op {
        CtlOp::Status => ("GET", "/status", None),
        CtlOp::Overrides => ("GET", "/overrides", None),
        CtlOp::Reload => ("POST", "/reload", None),
        CtlOp::Explain { name, client } => {
            let mut q = format!("/explain?name={}", encode(&name));
            if let Some(c) = client {
                q += &format!("&client={}", encode(&c));
            }
            return print(gtmd::ops::ctl::request(
                admin,
                "GET",
                &q,
                token.as_deref(),
                None,
            ));
        }
        CtlOp::History {
            target,
            since,
            json,
        } => return history(admin, token.as_deref(), &target, &since, json),
        CtlOp::Disable(a) => ("POST", "/overrides", Some(set(a, "disable"))),
        CtlOp::ForceUp(a) => ("POST", "/overrides", Some(set(a, "force-up"))),
        CtlOp::Enable { target } => (
            "POST",
            "/overrides/clear",
            Some(serde_json::json!({ "target": target })),
        ),
    };
    print(gtmd::ops::ctl::request(
        admin,
        method,
        path,
        token.as_deref(),
        body.as_ref(),
    ))
}

/// Prints the API's answer, indented when it is JSON.
fn print(r: Result<String, String>) -> anyhow::Result<()> {
    let out = r.map_err(anyhow::Error::msg)?;
    match serde_json::from_str::<serde_json::Value>(&out) {
        Ok(v) => println!("{}", serde_json::to_string_pretty(&v)?),
        Err(_) => println!("{}", out.trim_end()),
    }
    Ok(())
}

/// `gtmd ctl history TARGET`: as a member, else as a name.
fn history(
    admin: std::net::SocketAddr,
    token: Option<&str>,
    target: &str,
    since: &str,
    json: bool,
) -> anyhow::Result<()> {
    let secs = humantime::parse_duration(since)
        .map_err(|e| anyhow::anyhow!("--since {since:?}: {e}"))?
        .as_secs();
    let ask = |key: &str| -> anyhow::Result<serde_json::Value> {
        let path = format!("/history?since={secs}&{key}={}", encode(target));
        let body = gtmd::ops::ctl::request(admin, "GET", &path, token, None)
            .map_err(anyhow::Error::msg)?;
        Ok(serde_json::from_str(&body)?)
    };
    let mut h = ask("member")?;
    if h["members"].as_array().is_none_or(|m| m.is_empty()) {
        h = ask("name")?;
        if h["names"].as_array().is_none_or(|n| n.is_empty()) {
            anyhow::bail!("{target} is neither a member (POOL/MEMBER, name or address) nor a name of the configuration");
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&h)?);
    } else {
        for l in gtmd::ops::ctl::history_lines(&h) {
            println!("{l}");
        }
    }
    Ok(())
}

/// Percent-encodes a query-string value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn serve(path: Option<&PathBuf>, agent: bool) -> anyhow::Result<()> {
    let cfg = load(path)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let stop = CancellationToken::new();
        let running = if agent {
            let admin = tokio::net::TcpListener::bind(cfg.admin_listen)
                .await
                .map_err(|e| {
                    anyhow::anyhow!("binding the admin API on {}: {e}", cfg.admin_listen)
                })?;
            app::start_agent(cfg, admin, stop.clone()).await?
        } else {
            let listeners = Listeners::bind(&cfg).await?;
            app::start(cfg, listeners, stop.clone()).await?
        };
        tokio::spawn(tell_systemd(running.ready.clone(), stop.clone()));
        wait_for_signal(&running.reloads).await?;
        tracing::info!("stopping");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        stop.cancel();
        running.join().await;
        Ok(())
    })
}

/// systemd's notify protocol (a no-op without NOTIFY_SOCKET): READY=1 once the first probe
/// round is done and DNS is served, then a watchdog ping at half of WatchdogSec from the
/// runtime that serves the admin API and the engine, so a wedged process is restarted.
async fn tell_systemd(mut ready: tokio::sync::watch::Receiver<bool>, stop: CancellationToken) {
    use sd_notify::NotifyState;
    tokio::select! {
        r = ready.wait_for(|r| *r) => if r.is_err() { return },
        _ = stop.cancelled() => return,
    }
    if let Err(e) = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status("serving DNS")]) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    let mut tick = tokio::time::interval(period / 2);
    loop {
        tokio::select! {
            _ = tick.tick() => { let _ = sd_notify::notify(&[NotifyState::Watchdog]); }
            _ = stop.cancelled() => return,
        }
    }
}

/// Waits for SIGTERM or SIGINT; SIGHUP reloads the configuration and zones meanwhile.
async fn wait_for_signal(reloads: &gtmd::ops::reload::Reloads) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration and zones");
                // systemd's notify protocol: RELOADING=1 while it runs, READY=1 after.
                let mut state = vec![sd_notify::NotifyState::Reloading];
                state.extend(sd_notify::NotifyState::monotonic_usec_now().ok());
                let _ = sd_notify::notify(&state);
                // The engine logs the outcome; a rejected reload keeps the running state.
                let _ = reloads.reload().await;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            }
        }
    }
}
