//! The zones the configuration serves: the zones directory read, the catalog zone added,
//! and the names bound to pools checked against them.

use hickory_proto::rr::{LowerName, RecordType};

use super::{key, transfer, Config, ConfigError, Ctx};
use crate::zone::Zone;

impl Config {
    /// Loads the zones of `server.zones_dir` and checks the names bound to pools against them;
    /// each bound name gets a node in its zone.
    pub fn load_zones(&self) -> anyhow::Result<crate::zone::Zones> {
        use anyhow::Context;
        let mut zones = crate::zone::load_dir(&self.zones_dir)
            .with_context(|| format!("loading zones (server.zones_dir of {})", self.source))?;
        if let Some(catalog) = &self.wire.transfer.catalog {
            let origin = LowerName::new(catalog);
            if let Some(z) = zones.iter().find(|z| z.origin == origin) {
                anyhow::bail!(
                    "{}: server.catalog_zone: {catalog} is also the zone of {}",
                    self.source,
                    z.file.display()
                );
            }
            zones.push(transfer::catalog_zone(catalog, &zones)?);
        }
        self.bind_names(&zones)?;
        for z in &mut zones {
            if let Some(specs) = self.dnssec.get(&z.origin) {
                let keys = crate::zone::keys::load(&z.origin_name, specs).with_context(|| {
                    format!(
                        "loading the keys of zones.\"{}\".dnssec ({})",
                        z.origin, self.source
                    )
                })?;
                z.sign_with(keys);
            }
        }
        for b in &self.names {
            let lname = hickory_proto::rr::LowerName::new(&b.name);
            // The most specific zone holds it, as lookups find it.
            let z = zones
                .iter_mut()
                .filter(|z| z.origin.zone_of(&lname))
                .max_by_key(|z| z.origin.num_labels());
            if let Some(z) = z {
                z.ensure_node(&lname);
            }
        }
        Ok(crate::zone::Zones::new(zones))
    }

    /// Checks each bound name against the loaded zones: it must be inside a zone, not at or
    /// below a delegation, and its zone must not give it A, AAAA or CNAME records of its own.
    pub fn bind_names(&self, zones: &[Zone]) -> Result<(), ConfigError> {
        let cx = Ctx::new(&self.source, &self.text);
        for origin in self.wire.transfer.zones.keys() {
            if !zones.iter().any(|z| &z.origin == origin) {
                let path = format!("zones.{}", key(&origin.to_string()));
                return Err(cx.err(
                    &path,
                    format!("{origin} is not a zone of {}", self.zones_dir.display()),
                ));
            }
        }
        for b in &self.names {
            let path = format!("names.{}", key(&b.name.to_ascii()));
            let lname = LowerName::new(&b.name);
            let zone = zones
                .iter()
                .filter(|z| z.origin.zone_of(&lname))
                .max_by_key(|z| z.origin.num_labels())
                .ok_or_else(|| {
                    cx.err(
                        &path,
                        format!("{} is in no zone of the zones directory", b.name),
                    )
                })?;
            if let Some((cut, _)) = zone.delegation_above(&lname) {
                return Err(cx.err(
                    &path,
                    format!(
                        "{} is at or below the delegation {cut} in {}",
                        b.name,
                        zone.file.display()
                    ),
                ));
            }
            if let Some(node) = zone.nodes.get(&lname).filter(|_| b.cname) {
                if let Some(set) = node.rrsets.first() {
                    let line = node.line;
                    return Err(cx.err(&path, format!(
                        "{}'s members are domain names, so it answers a CNAME, which cannot share a name with other data, but {}:{line} gives it {} records; remove them from the zone file or bind another name",
                        b.name, zone.file.display(), set.rtype
                    )));
                }
            }
            if let Some(node) = zone.nodes.get(&lname) {
                for t in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
                    if node.get(t).is_some() {
                        let line = node.line;
                        return Err(cx.err(&path, format!(
                            "{} is bound to pools but {}:{line} gives it {t} records; remove them from the zone file",
                            b.name, zone.file.display()
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}
