//! Operator overrides: a member, pool or region taken out of answers by hand (`disable`, a
//! drain when it has an end) or kept in whatever its health (`force-up`), and the state file
//! that keeps them across restarts and reloads.
//!
//! The file is JSON, replaced atomically: written to a temporary file beside it, flushed to
//! disk, renamed over the old one, and the directory flushed. A crash at any moment leaves
//! either the old file or the new one, never a mix.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::Config;

/// What an override does to the members it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Out of every answer, whatever its health (it is still probed).
    Disable,
    /// In answers whatever its health (a disable still wins).
    ForceUp,
}

/// One override as the operator gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// `POOL/MEMBER`, `pool:POOL` or `region:REGION`.
    pub target: String,
    pub action: Action,
    pub reason: String,
    /// Seconds since the Unix epoch.
    pub since: u64,
    /// When it ends by itself, in seconds since the Unix epoch; `None`: until cleared.
    pub until: Option<u64>,
}

impl Override {
    pub fn expired(&self, now: u64) -> bool {
        self.until.is_some_and(|u| u <= now)
    }
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// The members `target` names in `cfg`, or why it names none.
pub fn members_of(cfg: &Config, target: &str) -> Result<Vec<usize>, String> {
    let pool_index = |p: &str| {
        cfg.pools.iter().position(|x| x.name == p).ok_or_else(|| {
            format!(
                "no pool {p:?}; pools are: {}",
                cfg.pools
                    .iter()
                    .map(|x| x.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    };
    if let Some(p) = target.strip_prefix("pool:") {
        return Ok(cfg.pools[pool_index(p)?].members.clone());
    }
    if let Some(r) = target.strip_prefix("region:") {
        let ids: Vec<usize> = (0..cfg.members.len())
            .filter(|&i| cfg.members[i].region.as_deref() == Some(r))
            .collect();
        return if ids.is_empty() {
            Err(format!("no member has region {r:?}"))
        } else {
            Ok(ids)
        };
    }
    let Some((p, m)) = target.split_once('/') else {
        return Err(format!(
            "{target:?}: expected POOL/MEMBER, pool:POOL or region:REGION"
        ));
    };
    let pool = &cfg.pools[pool_index(p)?];
    pool.members
        .iter()
        .copied()
        .find(|&i| cfg.members[i].name == m)
        .map(|i| vec![i])
        .ok_or_else(|| {
            format!(
                "pool {p:?} has no member {m:?}; its members are: {}",
                pool.members
                    .iter()
                    .map(|&i| cfg.members[i].name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    overrides: Vec<Override>,
}

/// Reads the state file; a missing file is no overrides.
pub fn load(path: &Path) -> Result<Vec<Override>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<StateFile>(&bytes)
            .map(|f| f.overrides)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Replaces the state file atomically with `overrides`.
pub fn save(path: &Path, overrides: &[Override]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let body = serde_json::to_vec_pretty(&StateFile {
        version: 1,
        overrides: overrides.to_vec(),
    })?;
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(target: &str) -> Override {
        Override {
            target: target.into(),
            action: Action::Disable,
            reason: "maintenance".into(),
            since: 1,
            until: Some(100),
        }
    }

    #[test]
    fn the_state_file_round_trips_and_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(load(&path).unwrap(), vec![]);
        save(&path, &[o("app/eu-1")]).unwrap();
        save(&path, &[o("app/eu-1"), o("pool:app")]).unwrap();
        assert_eq!(load(&path).unwrap(), vec![o("app/eu-1"), o("pool:app")]);
        // Nothing but the file itself is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A failed write (the directory is gone) leaves nothing half-written behind.
        let gone = dir.path().join("missing/state.json");
        assert!(save(&gone, &[o("x/y")]).is_err());
        assert!(o("x/y").expired(100) && !o("x/y").expired(99));
    }

    #[test]
    fn targets_name_members_pools_and_regions() {
        let cfg = Config::embedded().unwrap();
        assert_eq!(members_of(&cfg, "app/eu-1").unwrap(), vec![0]);
        assert_eq!(members_of(&cfg, "pool:app").unwrap(), vec![0, 1, 2]);
        assert_eq!(members_of(&cfg, "region:us").unwrap().len(), 2);
        assert!(members_of(&cfg, "app/nope")
            .unwrap_err()
            .contains("eu-1, us-1"));
        assert!(members_of(&cfg, "nope")
            .unwrap_err()
            .contains("POOL/MEMBER"));
        assert!(members_of(&cfg, "pool:x")
            .unwrap_err()
            .contains("pools are"));
    }
}
