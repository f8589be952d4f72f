//! `[zones."example.com.".dnssec]`: which key files sign a zone. The files themselves are
//! read with the zones ([`crate::zone::keys`]), so that a reload reads them again.
//!
//! ```toml
//! [zones."example.com.".dnssec]
//! keys = [
//!   "keys/Kexample.com.+013+12345",                          # a BIND pair, signing
//!   { file = "keys/Kexample.com.+013+54321", sign = false },  # published only
//!   { file = "knot/0123abcd.pem", ksk = true },               # Knot's PEM, as a KSK/CSK
//! ]
//! ```

use std::collections::HashMap;
use std::path::Path;

use hickory_proto::rr::{LowerName, Name};

use super::{file, key, ConfigError, Ctx};
use crate::zone::keys::KeySpec;

pub(super) fn build_dnssec(
    cx: &Ctx,
    raw: &file::File,
    base: &Path,
) -> Result<HashMap<LowerName, Vec<KeySpec>>, ConfigError> {
    let mut out = HashMap::new();
    for (name, z) in &raw.zones {
        let Some(d) = &z.dnssec else { continue };
        let path = format!("zones.{}.dnssec", key(name));
        let Some(origin) = Name::from_ascii(name).ok().filter(|n| n.is_fqdn()) else {
            continue; // reported by the transfer settings
        };
        if d.keys.is_empty() {
            return Err(cx.err(&path, "keys is empty: name at least one key file"));
        }
        let mut specs = Vec::with_capacity(d.keys.len());
        for (i, k) in d.keys.iter().enumerate() {
            let (f, sign, ksk) = match k {
                file::DnssecKey::File(f) => (f, true, true),
                file::DnssecKey::Table(t) => {
                    (&t.file, t.sign.unwrap_or(true), t.ksk.unwrap_or(true))
                }
            };
            if f.is_empty() {
                return Err(cx.err(&format!("{path}.keys[{i}]"), "the key file is empty"));
            }
            specs.push(KeySpec {
                path: base.join(f),
                sign,
                ksk,
            });
        }
        out.insert(LowerName::new(&origin), specs);
    }
    Ok(out)
}
