//! `[geo]`: the MaxMind DB files that place clients, read whole at each build of the
//! configuration (so a reload takes a new file in whole, and a file that fails to read
//! leaves the running configuration as it was).

use std::path::Path;
use std::sync::Arc;

use super::{file, ConfigError, Ctx};
use crate::steer::geo::{Database, Geo};

pub(super) fn build_geo(
    cx: &Ctx,
    g: Option<&file::Geo>,
    base: &Path,
) -> Result<Option<Arc<Geo>>, ConfigError> {
    let Some(g) = g else { return Ok(None) };
    if g.databases.is_empty() {
        return Err(cx.err("geo.databases", "name at least one MaxMind DB file"));
    }
    let mut databases = Vec::new();
    for (i, d) in g.databases.iter().enumerate() {
        let path = base.join(d);
        let here = format!("geo.databases[{i}]");
        let bytes = std::fs::read(&path)
            .map_err(|e| cx.err(&here, format!("cannot read {}: {e}", path.display())))?;
        databases.push(Database::from_bytes(&path, bytes).map_err(|e| cx.err(&here, e))?);
    }
    Ok(Some(Arc::new(Geo::new(databases))))
}
