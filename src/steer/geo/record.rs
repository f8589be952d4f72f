//! The records of a MaxMind DB file as gtmd reads them, whatever the vendor's layout.

use serde::Deserialize;

use super::Place;

/// A value gtmd does not read is taken as absent, never as an error: vendors lay their records
/// out differently (GeoIP2's `country.iso_code`, IPinfo's `country: "DE"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Lenient<T> {
    Read(T),
    Other(serde::de::IgnoredAny),
}

impl<T> Lenient<T> {
    fn get(&self) -> Option<&T> {
        match self {
            Lenient::Read(t) => Some(t),
            Lenient::Other(_) => None,
        }
    }
}

/// A code, as a map (`{ iso_code }` for countries and subdivisions, `{ code }` for
/// continents) or as a plain string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Coded {
    Map {
        iso_code: Option<String>,
        code: Option<String>,
    },
    Plain(String),
}

impl Coded {
    fn code(&self) -> Option<&str> {
        match self {
            Coded::Map { iso_code, code } => iso_code.as_deref().or(code.as_deref()),
            Coded::Plain(s) => Some(s),
        }
    }
}

/// An AS number, as a number or as `"AS64500"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Asn {
    Number(u32),
    Text(String),
}

impl Asn {
    fn number(&self) -> Option<u32> {
        match self {
            Asn::Number(n) => Some(*n),
            Asn::Text(t) => t.trim_start_matches("AS").parse().ok(),
        }
    }
}

/// The parts of a record gtmd reads: GeoIP2/GeoLite2 City, Country and ASN layouts (and
/// DB-IP's, the same), `traits.autonomous_system_number` (ISP databases), IPinfo's plain
/// `country`, `continent` and `asn`.
#[derive(Deserialize)]
struct Record {
    continent: Option<Lenient<Coded>>,
    country: Option<Lenient<Coded>>,
    subdivisions: Option<Lenient<Vec<Lenient<Coded>>>>,
    autonomous_system_number: Option<Lenient<Asn>>,
    asn: Option<Lenient<Asn>>,
    traits: Option<Lenient<Traits>>,
    location: Option<Lenient<Location>>,
}

#[derive(Deserialize)]
struct Traits {
    autonomous_system_number: Option<Lenient<Asn>>,
}

#[derive(Deserialize)]
struct Location {
    latitude: Option<Lenient<f64>>,
    longitude: Option<Lenient<f64>>,
}

impl Record {
    fn place(&self) -> Place {
        let code = |c: &Option<Lenient<Coded>>| {
            c.as_ref()
                .and_then(Lenient::get)
                .and_then(Coded::code)
                .map(str::to_string)
        };
        let country = code(&self.country);
        let asn =
            |a: &Option<Lenient<Asn>>| a.as_ref().and_then(Lenient::get).and_then(Asn::number);
        let traits = self.traits.as_ref().and_then(Lenient::get);
        Place {
            continent: code(&self.continent),
            subdivisions: self
                .subdivisions
                .as_ref()
                .and_then(Lenient::get)
                .into_iter()
                .flatten()
                .filter_map(|s| s.get().and_then(Coded::code))
                .map(|s| match &country {
                    Some(c) => format!("{c}-{s}"),
                    None => s.to_string(),
                })
                .collect(),
            country,
            asn: asn(&self.autonomous_system_number)
                .or_else(|| asn(&self.asn))
                .or_else(|| traits.and_then(|t| asn(&t.autonomous_system_number))),
            location: self.location.as_ref().and_then(Lenient::get).and_then(|l| {
                let (la, lo) = (*l.latitude.as_ref()?.get()?, *l.longitude.as_ref()?.get()?);
                let ok = (-90.0..=90.0).contains(&la) && (-180.0..=180.0).contains(&lo);
                ok.then(|| ((la * 1e4).round() as i32, (lo * 1e4).round() as i32))
            }),
        }
    }
}

/// A whole record as gtmd reads it: one that is not a map places nowhere.
pub(super) fn place_of(
    r: &maxminddb::LookupResult<'_, Vec<u8>>,
) -> Result<Place, maxminddb::MaxMindDbError> {
    let rec: Option<Lenient<Record>> = r.decode()?;
    Ok(rec
        .as_ref()
        .and_then(Lenient::get)
        .map(Record::place)
        .unwrap_or_default())
}
