//! Operator overrides: a member, pool or region taken out of answers by hand (`disable`, a
//! drain when it has an end) or kept in whatever its health (`force-up`), and the state file
//! that keeps them across restarts and reloads.
//!
//! The file is JSON, replaced atomically: written to a temporary file beside it, flushed to
//! disk, renamed over the old one, and the directory flushed. A crash at any moment leaves
//! either the old file or the new one, never a mix. A copy (`NAME.prev`) is written the same
//! way after each replace, and serves at start when the file itself cannot be read: DNS is
//! never down because of this file, and an operator's removal is never silently dropped.
//! A symbolic link is written through, to its target.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
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

/// What an override covers: written `POOL/MEMBER`, `pool:POOL` or `region:REGION`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Target {
    Member { pool: String, member: String },
    Pool(String),
    Region(String),
}

impl Target {
    /// How specific it is: a member's own override beats its pool's, which beats its
    /// region's.
    pub fn rank(&self) -> u8 {
        match self {
            Target::Region(_) => 0,
            Target::Pool(_) => 1,
            Target::Member { .. } => 2,
        }
    }
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?}: expected POOL/MEMBER, pool:POOL or region:REGION");
        let named = |n: &str| (!n.is_empty()).then(|| n.to_string()).ok_or_else(bad);
        if let Some(p) = s.strip_prefix("pool:") {
            return Ok(Target::Pool(named(p)?));
        }
        if let Some(r) = s.strip_prefix("region:") {
            return Ok(Target::Region(named(r)?));
        }
        let (pool, member) = s.split_once('/').ok_or_else(bad)?;
        Ok(Target::Member {
            pool: named(pool)?,
            member: named(member)?,
        })
    }
}

impl TryFrom<String> for Target {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Target> for String {
    fn from(t: Target) -> String {
        t.to_string()
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Member { pool, member } => write!(f, "{pool}/{member}"),
            Target::Pool(p) => write!(f, "pool:{p}"),
            Target::Region(r) => write!(f, "region:{r}"),
        }
    }
}

/// One override as the operator gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub target: Target,
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
pub fn members_of(cfg: &Config, target: &Target) -> Result<Vec<usize>, String> {
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
    match target {
        Target::Pool(p) => Ok(cfg.pools[pool_index(p)?].members.clone()),
        Target::Region(r) => {
            let ids: Vec<usize> = (0..cfg.members.len())
                .filter(|&i| cfg.members[i].region.as_deref() == Some(r.as_str()))
                .collect();
            if ids.is_empty() {
                Err(format!("no member has region {r:?}"))
            } else {
                Ok(ids)
            }
        }
        Target::Member { pool: p, member: m } => {
            let pool = &cfg.pools[pool_index(p)?];
            pool.members
                .iter()
                .copied()
                .find(|&i| cfg.members[i].name == *m)
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
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    overrides: Vec<Override>,
    /// Each zone's last serial, by origin: a restart starts above it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    serials: BTreeMap<String, u32>,
    /// A hash of the content each of `serials` stood for: a restart with the same content
    /// keeps the serial.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    contents: BTreeMap<String, u64>,
}

/// The copy kept beside the state file: the last state written to it whole, so that a state
/// file found empty, corrupt or unreadable at start loses no operator's removal.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".prev");
    path.with_file_name(name)
}

/// The file a state file path stands for: a symbolic link is followed (writes go through it
/// to its target, which stays a link's target), up to 40 links.
pub fn real_path(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::read_link(&p) {
            Ok(target) => {
                p = p
                    .parent()
                    .map_or_else(|| target.clone(), |d| d.join(&target));
            }
            Err(_) => return p,
        }
    }
    p
}

/// Reads the state file; a missing file is no overrides.
pub fn load(path: &Path) -> Result<Vec<Override>, String> {
    read(&real_path(path)).map(|f| f.overrides)
}

/// The overrides to start with, and what is wrong with the state file if anything is.
#[derive(Debug, Default)]
pub struct Restored {
    pub overrides: Vec<Override>,
    /// Each zone's last serial, by origin.
    pub serials: BTreeMap<String, u32>,
    /// The hash of the content each serial stood for, by origin.
    pub contents: BTreeMap<String, u64>,
    /// Set when the state file could not be read: where the overrides came from instead.
    pub problem: Option<String>,
}

/// Reads the state file at start. DNS never waits on it: an unreadable file (empty,
/// corrupt, a directory) gives the overrides of its backup, or none, with the problem said.
/// Temporary files that a kill during a write left behind are removed.
pub fn restore(path: &Path) -> Restored {
    remove_stale_temporaries(&real_path(path));
    let err = match read(&real_path(path)) {
        Ok(f) => {
            return Restored {
                overrides: f.overrides,
                serials: f.serials,
                contents: f.contents,
                problem: None,
            }
        }
        Err(e) => e,
    };
    let backup = backup_path(&real_path(path));
    match read(&backup) {
        Ok(f) => Restored {
            problem: Some(format!(
                "state file unreadable ({err}); started from its backup {} with {} override(s); \
                 fix or remove the state file (the next override change rewrites it)",
                backup.display(),
                f.overrides.len()
            )),
            overrides: f.overrides,
            serials: f.serials,
            contents: f.contents,
        },
        Err(b) => Restored {
            overrides: Vec::new(),
            serials: BTreeMap::new(),
            contents: BTreeMap::new(),
            problem: Some(format!(
                "state file unreadable ({err}) and its backup {} too ({b}); started with no \
                 overrides: set them again",
                backup.display()
            )),
        },
    }
}

/// Reads one state file (a missing one is empty).
fn read(path: &Path) -> Result<StateFile, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<StateFile>(&bytes)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StateFile {
            version: 1,
            overrides: Vec::new(),
            serials: BTreeMap::new(),
            contents: BTreeMap::new(),
        }),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Removes `.NAME.PID.tmp` files beside `path` (see [`save`]).
fn remove_stale_temporaries(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(&prefix) && n.ends_with(".tmp") {
            match std::fs::remove_file(e.path()) {
                Ok(()) => {
                    tracing::info!(file = %e.path().display(), "removed a state file write that was cut short")
                }
                Err(err) => {
                    tracing::warn!(file = %e.path().display(), error = %err, "cannot remove a stale temporary state file")
                }
            }
        }
    }
}

/// Replaces the state file atomically with `overrides` (through a symbolic link, to its
/// target), then its backup ([`backup_path`]) with the same: the backup always holds a whole
/// copy of the last state written, whatever later happens to the file itself.
pub fn save(
    path: &Path,
    overrides: &[Override],
    serials: &BTreeMap<String, u32>,
    contents: &BTreeMap<String, u64>,
) -> std::io::Result<()> {
    let path = real_path(path);
    let body = serde_json::to_vec_pretty(&StateFile {
        version: 1,
        overrides: overrides.to_vec(),
        serials: serials.clone(),
        contents: contents.clone(),
    })?;
    replace(&path, &body)?;
    if let Err(e) = replace(&backup_path(&path), &body) {
        tracing::warn!(file = %backup_path(&path).display(), error = %e, "cannot write the state file's backup");
    }
    Ok(())
}

/// Writes `body` to a temporary file beside `path`, flushes it, renames it over `path` and
/// flushes the directory.
fn replace(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(body)?;
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
            target: target.parse().unwrap(),
            action: Action::Disable,
            reason: "maintenance".into(),
            since: 1,
            until: Some(100),
        }
    }

    /// Saves `list` alone: no zone serials.
    fn save_overrides(path: &Path, list: &[Override]) -> std::io::Result<()> {
        save(path, list, &Default::default(), &Default::default())
    }

    #[test]
    fn the_state_file_round_trips_and_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(load(&path).unwrap(), vec![]);
        save_overrides(&path, &[o("app/eu-1")]).unwrap();
        save_overrides(&path, &[o("app/eu-1"), o("pool:app")]).unwrap();
        assert_eq!(load(&path).unwrap(), vec![o("app/eu-1"), o("pool:app")]);
        // Nothing but the file itself and its backup is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        // A failed write (the directory is gone) leaves nothing half-written behind.
        let gone = dir.path().join("missing/state.json");
        assert!(save(&gone, &[o("x/y")], &Default::default(), &Default::default()).is_err());
        assert!(o("x/y").expired(100) && !o("x/y").expired(99));
    }

    #[test]
    fn an_unreadable_state_file_starts_from_its_backup_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        save_overrides(&path, &[o("app/eu-1")]).unwrap();
        let fine = restore(&path);
        assert_eq!((fine.overrides.len(), fine.problem), (1, None));
        for bad in ["", "{ not json", "{\"version\": 1}"] {
            std::fs::write(&path, bad).unwrap();
            let r = restore(&path);
            assert_eq!(r.overrides, vec![o("app/eu-1")], "{bad:?}");
            let problem = r.problem.expect("the problem is said");
            assert!(problem.contains("state.json.prev"), "{problem}");
        }
        // A directory where the file should be.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert_eq!(restore(&path).overrides, vec![o("app/eu-1")]);
        // No usable backup either: no overrides, and the problem said.
        std::fs::write(backup_path(&path), "junk").unwrap();
        let r = restore(&path);
        assert!(r.overrides.is_empty());
        assert!(r.problem.unwrap().contains("set them again"));
    }

    #[test]
    fn a_write_cut_short_is_cleaned_up_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        save_overrides(&path, &[o("app/eu-1")]).unwrap();
        let stale = dir.path().join(".state.json.4242.tmp");
        std::fs::write(&stale, "{ half").unwrap();
        let other = dir.path().join(".other.json.4242.tmp");
        std::fs::write(&other, "not ours").unwrap();
        assert!(restore(&path).problem.is_none());
        assert!(!stale.exists(), "the stale temporary file is left");
        assert!(other.exists(), "another file's temporary was removed");
    }

    #[test]
    fn a_symlinked_state_file_is_written_through_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("state.json");
        std::os::unix::fs::symlink("real/state.json", &link).unwrap();
        save_overrides(&link, &[o("app/eu-1")]).unwrap();
        save_overrides(&link, &[o("pool:app")]).unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(load(&real.join("state.json")).unwrap(), vec![o("pool:app")]);
        assert_eq!(load(&link).unwrap(), vec![o("pool:app")]);
        assert!(real.join("state.json.prev").exists());
    }

    #[test]
    fn targets_name_members_pools_and_regions() {
        let cfg = Config::embedded().unwrap();
        let of = |t: &str| members_of(&cfg, &t.parse()?);
        assert_eq!(of("app/eu-1").unwrap(), vec![0]);
        assert_eq!(of("pool:app").unwrap(), vec![0, 1, 2]);
        assert_eq!(of("region:us").unwrap().len(), 2);
        assert!(of("app/nope").unwrap_err().contains("eu-1, us-1"));
        assert!(of("nope").unwrap_err().contains("POOL/MEMBER"));
        assert!(of("pool:").unwrap_err().contains("POOL/MEMBER"));
        assert!(of("pool:x").unwrap_err().contains("pools are"));
        // Written back as it was given.
        for t in ["app/eu-1", "pool:app", "region:us"] {
            assert_eq!(t.parse::<Target>().unwrap().to_string(), t);
        }
    }
}
