//! A zone's DNSSEC keys, read from the files operators already have: BIND key pairs
//! (`K<zone>+<alg>+<tag>.key` and `.private`, as `dnssec-keygen` and `gtmd dnssec keygen`
//! write them) and PKCS#8 PEM files (the key store of Knot's `keymgr`). Algorithms 13
//! (ECDSA P-256 with SHA-256) and 15 (Ed25519).
//!
//! It owns the key material and the records derived from it (DNSKEY, CDS and CDNSKEY at the
//! apex, DS for the parent), and writes new key pairs. Signing is `crate::dns::dnssec`'s.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hickory_proto::dnssec::crypto::{EcdsaSigningKey, Ed25519SigningKey};
use hickory_proto::dnssec::rdata::{DNSSECRData, CDNSKEY, CDS, DNSKEY, DS};
use hickory_proto::dnssec::{Algorithm, DigestType, PublicKeyBuf, SigningKey, Verifier};
use hickory_proto::rr::{Name, RData, Record};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

use super::{err, ZoneError};

/// DNSKEY flags: zone key (256), plus the secure entry point bit for a KSK or CSK (257).
const ZONE_KEY: u16 = 256;
const SEP: u16 = 1;

/// One key file named in `[zones."…".dnssec] keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// A BIND pair (either file, or their common base name) or a `.pem` file.
    pub path: PathBuf,
    /// Whether the key signs; false: published only (before or after a rollover).
    pub sign: bool,
    /// For a PEM file (which does not say): whether it is a KSK/CSK (flags 257) or a ZSK.
    pub ksk: bool,
}

/// One key, ready to sign.
pub struct Key {
    pub signer: Box<dyn SigningKey>,
    pub dnskey: DNSKEY,
    pub tag: u16,
    /// The key has the secure entry point flag (a KSK, or a CSK when no ZSK signs).
    pub ksk: bool,
    /// The key signs; otherwise it is only published in the DNSKEY set.
    pub active: bool,
    pub file: PathBuf,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("tag", &self.tag)
            .field("ksk", &self.ksk)
            .field("active", &self.active)
            .field("file", &self.file)
            .finish()
    }
}

/// Signatures already made, by the canonical form of the RRset they cover.
#[derive(Debug, Default)]
pub struct SigCache {
    pub map: HashMap<Vec<u8>, Cached>,
    /// Builds of answers so far, numbering them.
    pub builds: u64,
}

/// The RRSIGs of one RRset, when they expire, and the build that last used them.
#[derive(Debug, Clone)]
pub struct Cached {
    pub sigs: Vec<Record>,
    pub expiration: u32,
    pub stamp: u64,
}

/// Every key of one zone, and the signatures made with them.
#[derive(Debug)]
pub struct ZoneKeys {
    pub origin: Name,
    pub keys: Vec<Key>,
    /// Distinguishes this set of keys from others (caches are keyed by it).
    pub id: u64,
    /// Signatures made when answers are prepared, kept between publications.
    pub cache: Mutex<SigCache>,
}

impl ZoneKeys {
    /// The keys that sign the zone's data: the active ZSKs, or the active KSKs (CSKs) if no
    /// ZSK signs.
    pub fn zone_signers(&self) -> Vec<&Key> {
        let zsk: Vec<&Key> = self.keys.iter().filter(|k| k.active && !k.ksk).collect();
        if zsk.is_empty() {
            self.key_signers_only()
        } else {
            zsk
        }
    }

    /// The keys that sign the DNSKEY, CDS and CDNSKEY sets: the active KSKs, or the active
    /// ZSKs if no KSK signs.
    pub fn key_signers(&self) -> Vec<&Key> {
        let ksk = self.key_signers_only();
        if ksk.is_empty() {
            self.keys.iter().filter(|k| k.active).collect()
        } else {
            ksk
        }
    }

    fn key_signers_only(&self) -> Vec<&Key> {
        self.keys.iter().filter(|k| k.active && k.ksk).collect()
    }

    /// The apex records the keys give: the DNSKEY set (every key), and CDS and CDNSKEY
    /// (RFC 7344) for the active KSKs, with `ttl`.
    pub fn apex_records(&self, ttl: u32) -> Vec<Record> {
        let mut out = Vec::new();
        let rec = |d: DNSSECRData| Record::from_rdata(self.origin.clone(), ttl, RData::DNSSEC(d));
        for k in &self.keys {
            out.push(rec(DNSSECRData::DNSKEY(k.dnskey.clone())));
        }
        for k in self.keys.iter().filter(|k| k.ksk && k.active) {
            if let Ok(d) = k.dnskey.to_digest(&self.origin, DigestType::SHA256) {
                let alg = k.dnskey.algorithm();
                let cds = CDS::new(k.tag, Some(alg), DigestType::SHA256, d.as_ref().to_vec());
                out.push(rec(DNSSECRData::CDS(cds)));
            }
            let pk = k.dnskey.public_key().clone().into_inner();
            let cdnskey = CDNSKEY::with_flags(k.dnskey.flags(), Some(k.dnskey.algorithm()), pk);
            out.push(rec(DNSSECRData::CDNSKEY(cdnskey)));
        }
        out
    }

    /// The DS records (SHA-256) the parent zone should hold: one per KSK (or per key, when
    /// there is no KSK), as presentation-format lines.
    pub fn ds_lines(&self, ttl: u32) -> Vec<String> {
        let any_ksk = self.keys.iter().any(|k| k.ksk);
        let mut out = Vec::new();
        for k in self.keys.iter().filter(|k| k.ksk || !any_ksk) {
            let Ok(d) = k.dnskey.to_digest(&self.origin, DigestType::SHA256) else {
                continue;
            };
            let ds = DS::new(
                k.tag,
                k.dnskey.algorithm(),
                DigestType::SHA256,
                d.as_ref().to_vec(),
            );
            out.push(format!("{} {ttl} IN DS {ds}", self.origin));
        }
        out
    }
}

/// Reads the keys of the zone `origin`.
pub fn load(origin: &Name, specs: &[KeySpec]) -> Result<ZoneKeys, ZoneError> {
    let mut keys = Vec::with_capacity(specs.len());
    for s in specs {
        let mut k = if s.path.extension().is_some_and(|e| e == "pem") {
            load_pem(&s.path, s.ksk)?
        } else {
            load_bind(origin, &s.path)?
        };
        k.active = s.sign;
        if keys
            .iter()
            .any(|o: &Key| o.tag == k.tag && o.dnskey == k.dnskey)
        {
            return Err(err(&k.file, 0, "this key is listed twice"));
        }
        keys.push(k);
    }
    if !keys.iter().any(|k| k.active) {
        let file = specs.first().map(|s| s.path.clone()).unwrap_or_default();
        return Err(err(
            &file,
            0,
            "no key of the zone signs (every key has sign = false)",
        ));
    }
    Ok(ZoneKeys {
        origin: origin.clone(),
        keys,
        id: rand::random(),
        cache: Mutex::default(),
    })
}

/// The `.key` and `.private` files of a BIND pair named by either file or their base.
fn bind_pair(path: &Path) -> (PathBuf, PathBuf) {
    let s = path.to_string_lossy();
    let base = s
        .strip_suffix(".key")
        .or_else(|| s.strip_suffix(".private"))
        .unwrap_or(&s);
    (
        PathBuf::from(format!("{base}.key")),
        PathBuf::from(format!("{base}.private")),
    )
}

fn read(path: &Path) -> Result<String, ZoneError> {
    std::fs::read_to_string(path).map_err(|e| err(path, 0, format!("cannot read key file: {e}")))
}

/// A BIND key pair: the DNSKEY line of the `.key` file, the `PrivateKey` of `.private`.
fn load_bind(origin: &Name, path: &Path) -> Result<Key, ZoneError> {
    let (pub_file, priv_file) = bind_pair(path);
    let text = read(&pub_file)?;
    let mut found = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.split(';').next().unwrap_or("");
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = tokens.iter().position(|t| t.eq_ignore_ascii_case("DNSKEY")) else {
            continue;
        };
        let owner = Name::from_ascii(tokens[0])
            .map_err(|e| err(&pub_file, i + 1, format!("bad owner name: {e}")))?;
        if !owner.eq_case(origin) && owner.to_lowercase() != origin.to_lowercase() {
            let msg = format!("this key is for {owner}, not for the zone {origin}");
            return Err(err(&pub_file, i + 1, msg));
        }
        found = Some((
            i + 1,
            parse_dnskey(&tokens[at + 1..]).map_err(|m| err(&pub_file, i + 1, m))?,
        ));
        break;
    }
    let (_, dnskey) = found.ok_or_else(|| err(&pub_file, 0, "no DNSKEY record in the file"))?;
    let text = read(&priv_file)?;
    let (mut alg, mut private) = (None, None);
    for (i, line) in text.lines().enumerate() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "Algorithm" => {
                let n = v.split_whitespace().next().unwrap_or("");
                alg = Some(
                    n.parse::<u8>()
                        .map_err(|_| err(&priv_file, i + 1, "bad Algorithm"))?,
                );
            }
            "PrivateKey" => {
                let b = data_encoding::BASE64
                    .decode(v.as_bytes())
                    .map_err(|e| err(&priv_file, i + 1, format!("bad PrivateKey: {e}")))?;
                private = Some((i + 1, b));
            }
            _ => {}
        }
    }
    let (line, private) = private.ok_or_else(|| {
        err(
            &priv_file,
            0,
            "no PrivateKey line (is this a BIND .private file?)",
        )
    })?;
    let alg_no: u8 = dnskey.algorithm().into();
    if alg != Some(alg_no) {
        let msg = format!("Algorithm {alg:?} does not match the .key file's {alg_no}");
        return Err(err(&priv_file, 0, msg));
    }
    let public = dnskey.public_key().clone().into_inner();
    let signer =
        from_raw(dnskey.algorithm(), &private, &public).map_err(|m| err(&priv_file, line, m))?;
    finish(signer, dnskey.flags(), priv_file)
}

/// The RDATA of a DNSKEY in presentation form: flags, protocol, algorithm, base64 key.
fn parse_dnskey(tokens: &[&str]) -> Result<DNSKEY, String> {
    let [flags, proto, alg, key @ ..] = tokens else {
        return Err("the DNSKEY record needs flags, protocol, algorithm and key".into());
    };
    let flags: u16 = flags
        .parse()
        .map_err(|_| format!("bad DNSKEY flags {flags:?}"))?;
    if *proto != "3" {
        return Err(format!("DNSKEY protocol must be 3, not {proto}"));
    }
    let alg: u8 = alg
        .parse()
        .map_err(|_| format!("bad DNSKEY algorithm {alg:?}"))?;
    let alg = supported(alg)?;
    let key = data_encoding::BASE64
        .decode(key.concat().as_bytes())
        .map_err(|e| format!("bad DNSKEY public key: {e}"))?;
    Ok(DNSKEY::with_flags(flags, PublicKeyBuf::new(key, alg)))
}

fn supported(alg: u8) -> Result<Algorithm, String> {
    match Algorithm::from_u8(alg) {
        a @ (Algorithm::ECDSAP256SHA256 | Algorithm::ED25519) => Ok(a),
        _ => Err(format!(
            "algorithm {alg} is not supported: use 13 (ECDSAP256SHA256) or 15 (ED25519)"
        )),
    }
}

/// A signing key from its raw private part and the DNSKEY's public key.
fn from_raw(alg: Algorithm, private: &[u8], public: &[u8]) -> Result<Box<dyn SigningKey>, String> {
    let mismatch = |_| "the private key does not match the public key of the .key file".to_string();
    match alg {
        Algorithm::ECDSAP256SHA256 => {
            let mut point = vec![4u8];
            point.extend_from_slice(public);
            let rng = SystemRandom::new();
            let pair = EcdsaKeyPair::from_private_key_and_public_key(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                private,
                &point,
                &rng,
            )
            .map_err(mismatch)?;
            Ok(Box::new(EcdsaSigningKey::from_ecdsa(pair, alg)))
        }
        Algorithm::ED25519 => {
            let pair =
                Ed25519KeyPair::from_seed_and_public_key(private, public).map_err(mismatch)?;
            Ok(Box::new(Ed25519SigningKey::from_ed25519(pair)))
        }
        other => Err(format!("algorithm {other} is not supported")),
    }
}

/// A PKCS#8 PEM file (Knot's key store): ECDSA P-256 or Ed25519.
fn load_pem(path: &Path, ksk: bool) -> Result<Key, ZoneError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivatePkcs8KeyDer;
    let der = PrivatePkcs8KeyDer::from_pem_file(path)
        .map_err(|e| err(path, 0, format!("not a PKCS#8 PEM private key: {e}")))?;
    let signer: Box<dyn SigningKey> =
        match EcdsaSigningKey::from_pkcs8(&der, Algorithm::ECDSAP256SHA256) {
            Ok(k) => Box::new(k),
            Err(_) => Box::new(Ed25519SigningKey::from_pkcs8(&der).map_err(|_| {
                err(
                    path,
                    0,
                    "not an ECDSA P-256 or Ed25519 key (algorithms 13 and 15)",
                )
            })?),
        };
    finish(
        signer,
        ZONE_KEY | if ksk { SEP } else { 0 },
        path.to_path_buf(),
    )
}

fn finish(signer: Box<dyn SigningKey>, flags: u16, file: PathBuf) -> Result<Key, ZoneError> {
    let public = signer
        .to_public_key()
        .map_err(|e| err(&file, 0, format!("cannot derive the public key: {e}")))?;
    let dnskey = DNSKEY::with_flags(flags, public);
    let tag = dnskey
        .calculate_key_tag()
        .map_err(|e| err(&file, 0, format!("cannot compute the key tag: {e}")))?;
    Ok(Key {
        signer,
        tag,
        ksk: flags & SEP != 0,
        active: true,
        dnskey,
        file,
    })
}

/// Makes a key pair for `origin` in `dir`, as BIND's `K<zone>+<alg>+<tag>.key` and
/// `.private`; `ksk`: flags 257 (a KSK, or a CSK when it is the zone's only key), else 256.
/// Returns the files' base path.
pub fn generate(origin: &Name, alg: u8, ksk: bool, dir: &Path) -> Result<PathBuf, String> {
    let alg = supported(alg)?;
    let rng = SystemRandom::new();
    let (pkcs8, private) = match alg {
        Algorithm::ECDSAP256SHA256 => {
            let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|e| format!("cannot generate a key: {e}"))?;
            // ECPrivateKey (RFC 5915): version 1, then the 32-byte private key.
            let p = raw_after(doc.as_ref(), &[0x02, 0x01, 0x01, 0x04, 0x20])?;
            (doc.as_ref().to_vec(), p)
        }
        _ => {
            let doc = Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|e| format!("cannot generate a key: {e}"))?;
            // RFC 8410: the private key is an OCTET STRING holding the 32-byte seed.
            let p = raw_after(doc.as_ref(), &[0x04, 0x22, 0x04, 0x20])?;
            (doc.as_ref().to_vec(), p)
        }
    };
    let der = rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8);
    let signer: Box<dyn SigningKey> = match alg {
        Algorithm::ECDSAP256SHA256 => Box::new(
            EcdsaSigningKey::from_pkcs8(&der, alg).map_err(|e| format!("generated key: {e}"))?,
        ),
        _ => Box::new(
            Ed25519SigningKey::from_pkcs8(&der).map_err(|e| format!("generated key: {e}"))?,
        ),
    };
    let flags = ZONE_KEY | if ksk { SEP } else { 0 };
    let key = finish(signer, flags, PathBuf::new()).map_err(|e| e.msg)?;
    let public = key.dnskey.public_key().clone().into_inner();
    // The raw private part must give back the same key, or the files would be useless.
    from_raw(alg, &private, &public)?;
    let alg_no: u8 = alg.into();
    let zone = origin.to_ascii();
    let base = dir.join(format!("K{zone}+{alg_no:03}+{:05}", key.tag));
    let now = time_stamp();
    let b64 = data_encoding::BASE64.encode(&public);
    let kind = if ksk { "key-signing" } else { "zone-signing" };
    let mut pub_text = String::new();
    let _ = writeln!(
        pub_text,
        "; This is a {kind} key, keyid {}, for {zone}",
        key.tag
    );
    let _ = writeln!(pub_text, "; Created: {now}");
    let _ = writeln!(pub_text, "{zone} IN DNSKEY {flags} 3 {alg_no} {b64}");
    let mut priv_text = String::new();
    let _ = writeln!(priv_text, "Private-key-format: v1.3");
    let _ = writeln!(priv_text, "Algorithm: {alg_no} ({alg})");
    let _ = writeln!(
        priv_text,
        "PrivateKey: {}",
        data_encoding::BASE64.encode(&private)
    );
    let _ = writeln!(priv_text, "Created: {now}\nPublish: {now}\nActivate: {now}");
    let (pub_file, priv_file) = bind_pair(&base);
    write_new(&pub_file, &pub_text, 0o644)?;
    write_new(&priv_file, &priv_text, 0o600)?;
    Ok(base)
}

/// The `len`-byte value that follows `marker` in a DER document.
fn raw_after(doc: &[u8], marker: &[u8]) -> Result<Vec<u8>, String> {
    let at = doc
        .windows(marker.len())
        .position(|w| w == marker)
        .ok_or("unexpected PKCS#8 layout")?;
    let start = at + marker.len();
    doc.get(start..start + 32)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| "unexpected PKCS#8 layout".into())
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The time now as BIND writes it in key files (YYYYMMDDHHMMSS, UTC).
fn time_stamp() -> String {
    let t = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    t.chars().filter(char::is_ascii_digit).collect()
}

#[cfg(test)]
mod tests;
