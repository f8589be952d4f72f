//! The `gtmd` command: runs the server, or checks a configuration.

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
}

fn load(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::embedded()?,
    })
}

fn main() -> ExitCode {
    use std::io::IsTerminal;
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
        None => serve(cli.config.as_ref()),
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
    let zones = app::load_zones(&cfg)?;
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

fn serve(path: Option<&PathBuf>) -> anyhow::Result<()> {
    let cfg = load(path)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listeners = Listeners::bind(&cfg).await?;
        let stop = CancellationToken::new();
        let running = app::start(cfg, listeners, stop.clone()).await?;
        wait_for_signal().await?;
        tracing::info!("stopping");
        stop.cancel();
        running.join().await;
        Ok(())
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
