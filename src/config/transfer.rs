//! Serving secondaries: TSIG keys (`server.tsig_keys`, files as `tsig-keygen` or Knot's
//! `keymgr -t` write them), the IXFR journal's size, and the per-zone tables
//! (`[zones."example.com."]`: who may transfer, with which keys, and whom to NOTIFY).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{LowerName, Name, TSigner};

use super::server::parse_nets;
use super::{file, key, ConfigError, Ctx};

/// The clock difference allowed between gtmd and a key's other holder (RFC 8945 section
/// 10 recommends 300 seconds).
pub const TSIG_FUDGE: u16 = 300;

/// Versions kept per zone for IXFR, by default.
pub const DEFAULT_JOURNAL: usize = 64;

/// What a zone's secondaries may do and are told.
#[derive(Debug, Clone, Default)]
pub struct ZoneTransfer {
    /// Client addresses that may transfer (none: any address, if `keys` is set).
    pub allow: Vec<ipnet::IpNet>,
    /// Keys a transfer must be signed with, one of them (none: no key needed).
    pub keys: Vec<LowerName>,
    /// Secondaries sent a NOTIFY when the serial changes.
    pub notify: Vec<SocketAddr>,
    /// The key NOTIFY messages are signed with.
    pub notify_key: Option<LowerName>,
}

impl ZoneTransfer {
    /// Whether `client`, with the key its request was signed with (if any), may transfer.
    /// Nothing configured: nobody may.
    pub fn allows(&self, client: std::net::IpAddr, key: Option<&LowerName>) -> bool {
        if self.allow.is_empty() && self.keys.is_empty() {
            return false;
        }
        let addr_ok = self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&client));
        let key_ok = self.keys.is_empty() || key.is_some_and(|k| self.keys.contains(k));
        addr_ok && key_ok
    }
}

/// Transfers, keys and NOTIFY for every zone.
#[derive(Clone)]
pub struct TransferSettings {
    pub keys: Vec<TSigner>,
    /// Zones with a table of their own, by origin.
    pub zones: HashMap<LowerName, ZoneTransfer>,
    /// Versions kept per zone for IXFR.
    pub journal: usize,
    /// The name of the catalog zone (RFC 9432) gtmd serves of its zones, if any.
    pub catalog: Option<Name>,
}

impl std::fmt::Debug for TransferSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|k| k.signer_name().to_string())
            .collect();
        f.debug_struct("TransferSettings")
            .field("keys", &keys)
            .field("zones", &self.zones)
            .field("journal", &self.journal)
            .field("catalog", &self.catalog)
            .finish()
    }
}

impl Default for TransferSettings {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            zones: HashMap::new(),
            journal: DEFAULT_JOURNAL,
            catalog: None,
        }
    }
}

impl TransferSettings {
    /// The key named `name` (any case).
    pub fn key(&self, name: &Name) -> Option<&TSigner> {
        let l = LowerName::new(name);
        self.keys
            .iter()
            .find(|k| LowerName::new(k.signer_name()) == l)
    }

    /// Whether `client`, with the key its request was signed with (if any), may transfer
    /// the zone `origin`; a zone without a table of its own allows `server.allow_transfer`
    /// (`default_allow`) without a key.
    pub fn allows(
        &self,
        origin: &LowerName,
        default_allow: &[ipnet::IpNet],
        client: std::net::IpAddr,
        key: Option<&LowerName>,
    ) -> bool {
        match self.zones.get(origin) {
            Some(z) => z.allows(client, key),
            None => default_allow.iter().any(|n| n.contains(&client)),
        }
    }
}

/// `server.tsig_keys`, `server.ixfr_journal` and the `[zones]` tables.
pub(super) fn build_transfer(
    cx: &Ctx,
    raw: &file::File,
    base: &Path,
    default_allow: Vec<ipnet::IpNet>,
) -> Result<TransferSettings, ConfigError> {
    let mut keys: Vec<TSigner> = Vec::new();
    for (i, f) in raw.server.tsig_keys.iter().flatten().enumerate() {
        let path = base.join(f);
        let loaded = read_keys(&path).map_err(|e| cx.err(&format!("server.tsig_keys[{i}]"), e))?;
        for k in loaded {
            if keys.iter().any(|o| o.signer_name() == k.signer_name()) {
                return Err(cx.err(
                    &format!("server.tsig_keys[{i}]"),
                    format!("the key {} is defined twice", k.signer_name()),
                ));
            }
            keys.push(k);
        }
    }
    let journal = raw.server.ixfr_journal.unwrap_or(DEFAULT_JOURNAL);
    let catalog = match &raw.server.catalog_zone {
        None => None,
        Some(c) => Some(
            Name::from_ascii(c)
                .ok()
                .filter(|n| n.is_fqdn() && !n.is_root())
                .ok_or_else(|| {
                    cx.err(
                        "server.catalog_zone",
                        format!("{c:?} is not a zone name ending in a dot, such as \"catalog.invalid.\""),
                    )
                })?,
        ),
    };
    let mut out = TransferSettings {
        keys,
        zones: HashMap::new(),
        journal,
        catalog,
    };
    for (name, z) in &raw.zones {
        let path = format!("zones.{}", key(name));
        let origin = Name::from_ascii(name)
            .ok()
            .filter(|n| n.is_fqdn())
            .ok_or_else(|| {
                cx.err(
                    &path,
                    format!("{name:?} is not a zone name ending in a dot"),
                )
            })?;
        let zt = build_zone(cx, &path, z, &out, &default_allow)?;
        out.zones.insert(LowerName::new(&origin), zt);
    }
    Ok(out)
}

fn build_zone(
    cx: &Ctx,
    path: &str,
    z: &file::ZoneTable,
    settings: &TransferSettings,
    default_allow: &[ipnet::IpNet],
) -> Result<ZoneTransfer, ConfigError> {
    let allow = match &z.allow_transfer {
        None => default_allow.to_vec(),
        Some(list) => parse_nets(cx, &format!("{path}.allow_transfer"), list)?,
    };
    let key_named = |p: String, k: &str| {
        let n = Name::from_ascii(k).map(|mut n| {
            n.set_fqdn(true);
            n
        });
        match n.ok().filter(|n| settings.key(n).is_some()) {
            Some(n) => Ok(LowerName::new(&n)),
            None => Err(cx.err(&p, format!("{k:?} is not a key of server.tsig_keys"))),
        }
    };
    let keys = z
        .transfer_keys
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, k)| key_named(format!("{path}.transfer_keys[{i}]"), k))
        .collect::<Result<Vec<_>, _>>()?;
    let notify = notify_targets(cx, path, z.notify.as_deref().unwrap_or_default())?;
    let notify_key = match &z.notify_key {
        Some(k) => Some(key_named(format!("{path}.notify_key"), k)?),
        None => keys.first().cloned(),
    };
    Ok(ZoneTransfer {
        allow,
        keys,
        notify,
        notify_key,
    })
}

/// `notify`: each an address:port.
fn notify_targets(cx: &Ctx, path: &str, list: &[String]) -> Result<Vec<SocketAddr>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, a)| {
            a.parse::<SocketAddr>().map_err(|_| {
                cx.err(
                    &format!("{path}.notify[{i}]"),
                    format!("{a:?} is not an address:port such as \"192.0.2.1:53\""),
                )
            })
        })
        .collect()
}

/// The catalog zone (RFC 9432, version 2) named `origin` listing `zones`: each member zone
/// under `ID.zones.`, where ID is a stable hash of its name, so that it keeps its ID as
/// zones come and go. It is served and transferred like any other zone; its serial moves
/// when the set of zones changes.
pub fn catalog_zone(
    origin: &Name,
    zones: &[crate::zone::Zone],
) -> anyhow::Result<crate::zone::Zone> {
    let mut text = String::from(
        "$TTL 0\n@ SOA invalid. invalid. 1 3600 600 2147483646 0\n@ NS invalid.\nversion TXT \"2\"\n",
    );
    for z in zones {
        text += &format!(
            "{:016x}.zones PTR {}\n",
            fnv1a(z.origin.to_string().as_bytes()),
            z.origin
        );
    }
    let file = std::path::PathBuf::from(format!("(catalog zone {origin})"));
    Ok(crate::zone::parse_zone(&text, &file, origin.clone())?)
}

/// FNV-1a, 64 bits: a hash that stays the same from one build to the next.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// Reads the TSIG keys of one file: BIND's `key "NAME" { algorithm A; secret "S"; };`
/// (what `tsig-keygen` writes) or Knot's YAML `key: - id: NAME algorithm: A secret: S`
/// (what `keymgr -t` writes). Errors name the file and line.
pub fn read_keys(path: &Path) -> Result<Vec<TSigner>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    parse_keys(&text).map_err(|(line, msg)| format!("{}:{line}: {msg}", path.display()))
}

/// A key being read: its name, algorithm and secret, each with the line it was on.
#[derive(Default)]
struct Partial {
    name: Option<(usize, String)>,
    algorithm: Option<(usize, String)>,
    secret: Option<(usize, String)>,
}

fn parse_keys(text: &str) -> Result<Vec<TSigner>, (usize, String)> {
    let mut tokens = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        for t in line.split(|c: char| c.is_whitespace() || "{};\"".contains(c)) {
            if !t.is_empty() && t != "-" {
                tokens.push((n + 1, t.trim_end_matches(':').to_string()));
            }
        }
    }
    let mut keys = Vec::new();
    let mut cur = Partial::default();
    let mut it = tokens.into_iter().peekable();
    while let Some((line, t)) = it.next() {
        let missing = || (line, format!("{t} is missing its value"));
        match t.as_str() {
            "key" => {
                // BIND's `key "NAME"`, or Knot's `key:` list header (followed by `id`).
                if it.peek().is_some_and(|(_, n)| n != "id") {
                    finish(&mut cur, &mut keys)?;
                    cur.name = Some(it.next().ok_or_else(missing)?);
                }
            }
            "id" => {
                finish(&mut cur, &mut keys)?;
                cur.name = Some(it.next().ok_or_else(missing)?);
            }
            "algorithm" => cur.algorithm = Some(it.next().ok_or_else(missing)?),
            "secret" => cur.secret = Some(it.next().ok_or_else(missing)?),
            _ => {
                return Err((
                    line,
                    format!("unexpected {t:?}: expected key, algorithm or secret"),
                ))
            }
        }
    }
    finish(&mut cur, &mut keys)?;
    if keys.is_empty() {
        return Err((1, "no key found".into()));
    }
    Ok(keys)
}

fn finish(cur: &mut Partial, keys: &mut Vec<TSigner>) -> Result<(), (usize, String)> {
    let p = std::mem::take(cur);
    let Some((line, name)) = p.name else {
        return match p.algorithm.or(p.secret) {
            Some((l, _)) => Err((l, "a key needs a name".into())),
            None => Ok(()),
        };
    };
    let (al, algorithm) = p
        .algorithm
        .ok_or((line, format!("key {name} has no algorithm")))?;
    let alg = match algorithm.to_ascii_lowercase().as_str() {
        "hmac-sha256" => TsigAlgorithm::HmacSha256,
        "hmac-sha384" => TsigAlgorithm::HmacSha384,
        "hmac-sha512" => TsigAlgorithm::HmacSha512,
        other => {
            return Err((
                al,
                format!(
                    "algorithm {other} is not supported: hmac-sha256, hmac-sha384 or hmac-sha512"
                ),
            ))
        }
    };
    let (sl, secret) = p
        .secret
        .ok_or((line, format!("key {name} has no secret")))?;
    let secret = data_encoding::BASE64
        .decode(secret.as_bytes())
        .map_err(|e| (sl, format!("the secret of key {name} is not base64: {e}")))?;
    let kname =
        Name::from_ascii(&name).map_err(|e| (line, format!("{name:?} is not a key name: {e}")))?;
    let signer = TSigner::new(secret, alg, kname, TSIG_FUDGE)
        .map_err(|e| (al, format!("key {name}: {e}")))?;
    keys.push(signer);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_in_bind_and_knot_formats() {
        let bind =
            "key \"xfr\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0c2VjcmV0c2VjcmV0\";\n};\n";
        let k = parse_keys(bind).unwrap();
        assert_eq!(k[0].signer_name().to_string(), "xfr.");
        assert_eq!(k[0].key(), b"secretsecretsecret");
        let knot = "# hmac-sha512:xfr2:c2VjcmV0\nkey:\n  - id: xfr2\n    algorithm: hmac-sha512\n    secret: c2VjcmV0\n";
        let k = parse_keys(knot).unwrap();
        assert_eq!(k[0].signer_name().to_string(), "xfr2.");
        assert_eq!(*k[0].algorithm(), TsigAlgorithm::HmacSha512);
    }

    #[test]
    fn a_bad_key_file_says_which_line() {
        let Err(e) = parse_keys("key \"x\" {\n algorithm hmac-md5;\n secret \"AA==\";\n};") else {
            panic!("an unsupported algorithm was taken");
        };
        assert_eq!(e.0, 2);
        assert!(e.1.contains("hmac-md5"), "{}", e.1);
        let Err(e) = parse_keys("key \"x\" {\n algorithm hmac-sha256;\n secret \"!!\";\n};") else {
            panic!("a secret that is not base64 was taken");
        };
        assert_eq!(e.0, 3);
    }
}
