//! Small MaxMind DB files for tests, written by MaxMind's own writer
//! (`libmaxmind-db-writer-perl`): networks of IPv4 and IPv6, of several sizes, nested, with
//! country, continent, subdivision, location and ASN records.

use std::path::Path;
use std::process::Command;

/// The writer (the one `dist/examples/geo` is made with): reads `[[CIDR, RECORD], ...]` as
/// JSON from a file, writes an IPv6 tree (IPv4 networks in it, aliased at `::ffff:0:0/96` as
/// MaxMind's databases are).
const WRITER: &str = include_str!("../../dist/examples/geo/write-db.pl");

/// Writes the database `out` of type `kind` holding `nets` (CIDR, record) with MaxMind's
/// writer; later networks win where they overlap earlier ones.
pub fn write_mmdb(out: &Path, kind: &str, nets: &[(String, serde_json::Value)]) {
    write_mmdb_as(out, kind, nets, 6, true)
}

/// As [`write_mmdb`], as an IPv4 or IPv6 tree (`ip_version`), with or without the IPv4
/// aliases of an IPv6 tree. A `kind` with `IPinfo` in it writes IPinfo's layout (plain
/// `country`, `continent` and `asn` strings).
pub fn write_mmdb_as(
    out: &Path,
    kind: &str,
    nets: &[(String, serde_json::Value)],
    ip_version: u8,
    aliases: bool,
) {
    let dir = out.parent().unwrap();
    let (script, json) = (dir.join("write-mmdb.pl"), out.with_extension("json"));
    std::fs::write(&script, WRITER).unwrap();
    let list: Vec<serde_json::Value> = nets
        .iter()
        .map(|(n, r)| serde_json::json!([n, r]))
        .collect();
    std::fs::write(&json, serde_json::to_string(&list).unwrap()).unwrap();
    let st = Command::new("perl")
        .arg(&script)
        .arg(&json)
        .arg(out)
        .arg(kind)
        .arg(ip_version.to_string())
        .arg(if aliases { "1" } else { "0" })
        .status()
        .expect("perl runs (libmaxmind-db-writer-perl)");
    assert!(
        st.success(),
        "MaxMind's writer failed on {}",
        json.display()
    );
}

/// A country record as GeoIP2 writes it (with a subdivision when given).
pub fn country(continent: &str, iso: &str, sub: Option<&str>) -> serde_json::Value {
    let mut r = serde_json::json!({
        "continent": { "code": continent },
        "country": { "iso_code": iso },
    });
    if let Some(s) = sub {
        r["subdivisions"] = serde_json::json!([{ "iso_code": s }]);
    }
    r
}

/// An ASN record as GeoLite2-ASN writes it.
pub fn asn(n: u32) -> serde_json::Value {
    serde_json::json!({ "autonomous_system_number": n, "autonomous_system_organization": "test" })
}

/// A city database: clients in Paris, Boston and Seoul, and a network without a location.
pub fn city_db(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("city.mmdb");
    let at = |cont: &str, iso: &str, la: f64, lo: f64| {
        let mut r = country(cont, iso, None);
        r["location"] = serde_json::json!({ "latitude": la, "longitude": lo });
        r
    };
    write_mmdb(
        &p,
        "Test-City",
        &[
            ("198.51.100.0/24".into(), at("EU", "FR", 48.86, 2.35)),
            ("203.0.113.0/24".into(), at("NA", "US", 42.36, -71.06)),
            ("2001:db8:5::/48".into(), at("AS", "KR", 37.57, 126.98)),
            ("10.0.0.0/8".into(), country("EU", "DE", None)),
        ],
    );
    p
}
