//! Where clients are, from MaxMind DB files (`.mmdb`: GeoIP2/GeoLite2 Country, City and
//! ASN, and the files of other vendors in the same format), compiled into a topology name's
//! client table.
//!
//! A database is read whole when the configuration is built, and every network it lists is
//! walked once for that build: each distinct record is decoded once into a [`Place`]. Each
//! name with rules by place matches each place against its rules once, and the networks
//! become ranges of the same [`super::topology::Table`] that subnet rules use; names whose
//! rules give every place the same group hold one table. The query path stays one binary
//! search, and an answer's ECS scope is the prefix length of the database network that
//! decided it, so that resolvers cache per network. Several databases (a country one and an
//! ASN one) are intersected: a range is where one network of each overlaps, and its scope
//! is the longer of their prefixes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

mod record;

use super::topology::mask;
use record::place_of;

/// One database file as read.
pub struct Database {
    pub path: PathBuf,
    /// `database_type` of its metadata (`GeoLite2-Country`, `GeoLite2-ASN`, ...).
    pub kind: String,
    /// When it was built (`build_epoch`, Unix seconds).
    pub built: u64,
    reader: maxminddb::Reader<Vec<u8>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("built", &self.built)
            .finish()
    }
}

impl PartialEq for Database {
    fn eq(&self, o: &Self) -> bool {
        self.path == o.path && self.kind == o.kind && self.built == o.built
    }
}

/// What a database says of a client. Fields a database does not carry stay empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Place {
    /// `continent.code`: `EU`, `NA`, ...
    pub continent: Option<String>,
    /// `country.iso_code`: `DE`, `US`, ...
    pub country: Option<String>,
    /// `subdivisions[].iso_code` with the country's, as ISO 3166-2 writes them: `DE-BY`.
    pub subdivisions: Vec<String>,
    /// `autonomous_system_number`.
    pub asn: Option<u32>,
    /// `location.latitude` and `.longitude`, in ten-thousandths of a degree (about 11 m).
    pub location: Option<(i32, i32)>,
}

impl Place {
    /// Each field from `self`, or from `o` where `self` has none.
    fn or(&self, o: &Place) -> Place {
        Place {
            continent: self.continent.clone().or_else(|| o.continent.clone()),
            country: self.country.clone().or_else(|| o.country.clone()),
            subdivisions: if self.subdivisions.is_empty() {
                o.subdivisions.clone()
            } else {
                self.subdivisions.clone()
            },
            asn: self.asn.or(o.asn),
            location: self.location.or(o.location),
        }
    }

    /// Where it is, in degrees (latitude, longitude).
    pub fn at(&self) -> Option<(f64, f64)> {
        self.location
            .map(|(la, lo)| (la as f64 / 1e4, lo as f64 / 1e4))
    }

    /// As `/explain` says it: `country DE, continent EU, AS 64500`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = &self.country {
            parts.push(format!("country {c}"));
        }
        if !self.subdivisions.is_empty() {
            parts.push(format!("subdivision {}", self.subdivisions.join(", ")));
        }
        if let Some(c) = &self.continent {
            parts.push(format!("continent {c}"));
        }
        if let Some(a) = self.asn {
            parts.push(format!("AS {a}"));
        }
        if let Some((la, lo)) = self.at() {
            parts.push(format!("at {la:.4}, {lo:.4}"));
        }
        if parts.is_empty() {
            "not in the databases".into()
        } else {
            parts.join(", ")
        }
    }
}

impl Database {
    /// The database in `bytes` (the whole file `path`, read by the caller); why not, as a
    /// sentence.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Database, String> {
        let reader = maxminddb::Reader::from_source(bytes)
            .map_err(|e| format!("{}: not a MaxMind DB file: {e}", path.display()))?;
        let m = reader.metadata();
        Ok(Database {
            path: path.to_path_buf(),
            kind: m.database_type.clone(),
            built: m.build_epoch,
            reader,
        })
    }

    /// What the database says of `addr`, and the prefix length of its network there.
    pub fn lookup(&self, addr: IpAddr) -> Result<(Place, u8), String> {
        let r = self.reader.lookup(addr).map_err(|e| e.to_string())?;
        let prefix = r.network().map_err(|e| e.to_string())?.prefix();
        Ok((place_of(&r).map_err(|e| e.to_string())?, prefix))
    }

    /// Every network of one family in address order, as `(start, prefix length, place)`
    /// with `start` left-aligned in 128 bits, the places interned in `places`; the space
    /// between networks is filled with blocks of no place, so that the list covers the family.
    fn cover(&self, v4: bool, places: &mut Interner) -> Result<Vec<Block>, String> {
        let width = if v4 { 32 } else { 128 };
        let mut out = Vec::new();
        let mut next = 0u128; // the first address not covered yet (left-aligned)
        let mut done = false; // the last network reached the end of the space
        let listed = if v4 || self.reader.metadata().ip_version == 6 {
            let (cidr, opts) = if v4 {
                ("0.0.0.0/0", maxminddb::WithinOptions::default())
            } else {
                let o = maxminddb::WithinOptions::default().include_aliased_networks();
                ("::/0", o)
            };
            let cidr: ipnetwork::IpNetwork = cidr.parse().expect("a network");
            Some(self.reader.within(cidr, opts).map_err(|e| e.to_string())?)
        } else {
            None
        };
        let mut decoded: HashMap<usize, u32> = HashMap::new();
        for r in listed.into_iter().flatten() {
            let r = r.map_err(|e| format!("{}: {e}", self.path.display()))?;
            let net = r.network().map_err(|e| e.to_string())?;
            // An IPv6 walk gives the IPv4 subtree (`::/96`) as IPv4 networks; an IPv4 walk
            // of a database whose record sits above `::/96` gives that IPv6 network, which
            // holds every IPv4 address.
            let (start, len) = match net.network() {
                IpAddr::V4(a) if !v4 => (u32::from(a) as u128, net.prefix() + 96),
                IpAddr::V6(_) if v4 => (0, 0),
                a => (super::topology::left(a), net.prefix()),
            };
            if start < next || done || len > width {
                continue; // an alias of a network already listed
            }
            let id = match r.offset().and_then(|o| decoded.get(&o).copied()) {
                Some(id) => id,
                None => {
                    let place =
                        place_of(&r).map_err(|e| format!("{}: {net}: {e}", self.path.display()))?;
                    let id = places.id(place);
                    if let Some(o) = r.offset() {
                        decoded.insert(o, id);
                    }
                    id
                }
            };
            fill(&mut out, next, Some(start));
            out.push(Block { start, len, id });
            let last = start | !mask(len);
            done = last == u128::MAX;
            next = last.wrapping_add(1);
        }
        if !done {
            fill(&mut out, next, None);
        }
        Ok(out)
    }
}

/// A CIDR block of one family's cover: `start` left-aligned, its prefix length, and what
/// holds there (a place's id; for a table, a group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub start: u128,
    pub len: u8,
    pub id: u32,
}

/// The narrower of two blocks of which one holds the other: its start and prefix length.
pub(crate) fn narrower(x: Block, y: Block) -> (u128, u8) {
    if x.len >= y.len {
        (x.start, x.len)
    } else {
        (y.start, y.len)
    }
}

/// Appends blocks of no place (id 0) covering `[from, to)`, left-aligned (`to` `None`:
/// to the end of the space). Both families span the whole left-aligned space: an IPv4 /L
/// block and an IPv6 /L block are both 2^(128 - L) wide there.
fn fill(out: &mut Vec<Block>, from: u128, to: Option<u128>) {
    let mut at = from;
    loop {
        if to.is_some_and(|t| at >= t) {
            return;
        }
        // The widest block aligned at `at` that ends by `to`.
        let mut len = 0u8;
        loop {
            let bits = 128 - len as u32;
            let aligned = if bits == 128 {
                at == 0
            } else {
                at & ((1u128 << bits) - 1) == 0
            };
            let fits = match to {
                None => true,
                Some(t) => bits < 128 && (1u128 << bits) <= t - at,
            };
            if aligned && fits {
                break;
            }
            len += 1;
        }
        out.push(Block {
            start: at,
            len,
            id: 0,
        });
        let last = at | !mask(len);
        if last == u128::MAX {
            return;
        }
        at = last + 1;
    }
}

/// Distinct places, by id; id 0 is "no place".
pub(crate) struct Interner {
    pub places: Vec<Place>,
    ids: HashMap<Place, u32>,
}

impl Interner {
    fn new() -> Self {
        let mut i = Interner {
            places: Vec::new(),
            ids: HashMap::new(),
        };
        i.id(Place::default());
        i
    }

    fn id(&mut self, p: Place) -> u32 {
        if let Some(&id) = self.ids.get(&p) {
            return id;
        }
        let id = self.places.len() as u32;
        self.places.push(p.clone());
        self.ids.insert(p, id);
        id
    }
}

/// Walks two covers of one family at once: for each overlap of a block of `a` with one of
/// `b` (one always holds the other), `f(block of a, block of b)`.
pub(crate) fn overlaps(a: &[Block], b: &[Block], mut f: impl FnMut(Block, Block)) {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        f(x, y);
        let (lx, ly) = (x.start | !mask(x.len), y.start | !mask(y.len));
        if lx <= ly {
            i += 1;
        }
        if ly <= lx {
            j += 1;
        }
    }
}

/// The databases of `[geo]`, read.
#[derive(Debug, Default, PartialEq)]
pub struct Geo {
    pub databases: Vec<Database>,
    /// What the builds of one configuration share (see [`Geo::covers`], [`Geo::table`]).
    shared: Shared,
}

/// Both families' covers by every database, with the distinct places they hold.
#[derive(Debug)]
pub struct Covers {
    /// By id; id 0 is "no place".
    pub places: Vec<Place>,
    pub v4: Vec<Block>,
    pub v6: Vec<Block>,
}

/// The key of a client table built from the covers: the subnet rules, and the group of
/// each place (by id).
pub(crate) type TableKey = (Vec<Vec<ipnet::IpNet>>, Vec<u32>);

type Tables = HashMap<TableKey, std::sync::Arc<super::topology::Table>>;

/// The walk of the databases and the tables made from it while one configuration is built:
/// the walk is done once for every name, and names whose rules give every place the same
/// group hold one table.
#[derive(Default)]
struct Shared {
    covers: std::sync::Mutex<Option<std::sync::Arc<Covers>>>,
    tables: std::sync::Mutex<Tables>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

impl PartialEq for Shared {
    fn eq(&self, _: &Self) -> bool {
        true // a cache: it says nothing of what the databases are
    }
}

/// Which places a rule takes: each list given must hold the place's value (any of them);
/// lists not given take any value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matcher {
    pub continents: Vec<String>,
    pub countries: Vec<String>,
    pub subdivisions: Vec<String>,
    pub asns: Vec<u32>,
}

impl Matcher {
    pub fn matches(&self, p: &Place) -> bool {
        let one = |list: &[String], v: &Option<String>| {
            list.is_empty() || v.as_ref().is_some_and(|v| list.contains(v))
        };
        one(&self.continents, &p.continent)
            && one(&self.countries, &p.country)
            && (self.subdivisions.is_empty()
                || p.subdivisions.iter().any(|s| self.subdivisions.contains(s)))
            && (self.asns.is_empty() || p.asn.is_some_and(|a| self.asns.contains(&a)))
    }
}

impl Geo {
    pub fn new(databases: Vec<Database>) -> Geo {
        Geo {
            databases,
            shared: Shared::default(),
        }
    }

    /// What every database says of `addr` together, and the longest network prefix among
    /// them (the scope over which that holds).
    pub fn lookup(&self, addr: IpAddr) -> Result<(Place, u8), String> {
        let mut place = Place::default();
        let mut scope = 0;
        for d in &self.databases {
            if addr.is_ipv6() && d.reader.metadata().ip_version == 4 {
                continue; // an IPv4 database places no IPv6 client
            }
            let (p, s) = d.lookup(addr)?;
            place = place.or(&p);
            scope = scope.max(s);
        }
        Ok((place, scope))
    }

    /// One family's cover by every database at once, with each block's place (interned).
    fn cover(&self, v4: bool, places: &mut Interner) -> Result<Vec<Block>, String> {
        let mut all: Option<Vec<Block>> = None;
        for d in &self.databases {
            let next = d.cover(v4, places)?;
            all = Some(match all {
                None => next,
                Some(prev) => {
                    let mut out = Vec::with_capacity(prev.len().max(next.len()));
                    overlaps(&prev, &next, |x, y| {
                        let (start, len) = narrower(x, y);
                        let p = places.places[x.id as usize].or(&places.places[y.id as usize]);
                        let id = places.id(p);
                        out.push(Block { start, len, id });
                    });
                    out
                }
            });
        }
        Ok(all.unwrap_or_else(|| {
            vec![Block {
                start: 0,
                len: 0,
                id: 0,
            }]
        }))
    }

    /// Both families' covers, walked at the first call and kept until [`Geo::forget`].
    pub fn covers(&self) -> Result<std::sync::Arc<Covers>, String> {
        let mut kept = self.shared.covers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = &*kept {
            return Ok(c.clone());
        }
        let mut places = Interner::new();
        let v4 = self.cover(true, &mut places)?;
        let v6 = self.cover(false, &mut places)?;
        let c = std::sync::Arc::new(Covers {
            places: places.places,
            v4,
            v6,
        });
        *kept = Some(c.clone());
        Ok(c)
    }

    /// The table of `key`: one built before with the same key, or `build`'s.
    pub(crate) fn table(
        &self,
        key: TableKey,
        build: impl FnOnce(&TableKey) -> super::topology::Table,
    ) -> std::sync::Arc<super::topology::Table> {
        let mut tables = self.shared.tables.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = tables.get(&key) {
            return t.clone();
        }
        let t = std::sync::Arc::new(build(&key));
        tables.insert(key, t.clone());
        t
    }

    /// Drops the walk and the index of tables once the configuration is built (the names
    /// keep their tables).
    pub fn forget(&self) {
        *self.shared.covers.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.shared
            .tables
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// The great-circle distance between two points (latitude, longitude in degrees), in km.
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) = (
        a.0.to_radians(),
        a.1.to_radians(),
        b.0.to_radians(),
        b.1.to_radians(),
    );
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_cover_a_family_with_aligned_blocks() {
        let v4 = |a: [u8; 4]| (u32::from_be_bytes(a) as u128) << 96;
        let blocks = |from, to| {
            let mut out = Vec::new();
            fill(&mut out, from, to);
            out.iter().map(|b| (b.start, b.len)).collect::<Vec<_>>()
        };
        assert_eq!(
            blocks(v4([10, 0, 0, 0]), Some(v4([10, 0, 3, 0]))),
            [(v4([10, 0, 0, 0]), 23), (v4([10, 0, 2, 0]), 24)]
        );
        assert_eq!(blocks(v4([128, 0, 0, 0]), None), [(v4([128, 0, 0, 0]), 1)]);
        assert_eq!(
            blocks(v4([64, 0, 0, 0]), None),
            [(v4([64, 0, 0, 0]), 2), (v4([128, 0, 0, 0]), 1)]
        );
        assert_eq!(blocks(0, None), [(0, 0)]);
        assert!(blocks(5, Some(5)).is_empty());
        // The rest of the space after an address: aligned blocks, widest first.
        let tail = blocks(v4([203, 0, 113, 128]), None);
        assert_eq!(tail[0], (v4([203, 0, 113, 128]), 25));
        assert_eq!(tail.last().unwrap(), &(v4([224, 0, 0, 0]), 3));
    }

    #[test]
    fn a_matcher_wants_every_list_it_has() {
        let p = Place {
            continent: Some("EU".into()),
            country: Some("DE".into()),
            subdivisions: vec!["DE-BY".into()],
            asn: Some(64500),
            location: None,
        };
        let m = |f: fn(&mut Matcher)| {
            let mut m = Matcher::default();
            f(&mut m);
            m.matches(&p)
        };
        assert!(m(|_| {}));
        assert!(m(|m| m.countries = vec!["FR".into(), "DE".into()]));
        assert!(!m(|m| m.countries = vec!["FR".into()]));
        assert!(m(|m| {
            m.continents = vec!["EU".into()];
            m.asns = vec![64500];
        }));
        assert!(!m(|m| {
            m.continents = vec!["EU".into()];
            m.asns = vec![64501];
        }));
        assert!(m(|m| m.subdivisions = vec!["DE-BY".into()]));
        assert!(!Matcher {
            asns: vec![1],
            ..Default::default()
        }
        .matches(&Place::default()));
    }

    #[test]
    fn distances_are_great_circles() {
        let (frankfurt, virginia, tokyo) = ((50.11, 8.68), (38.9, -77.04), (35.68, 139.69));
        let paris = (48.86, 2.35);
        let d = |a, b| distance_km(a, b).round() as i64;
        assert!(
            (470..=490).contains(&d(paris, frankfurt)),
            "{}",
            d(paris, frankfurt)
        );
        assert!(
            (6150..=6250).contains(&d(paris, virginia)),
            "{}",
            d(paris, virginia)
        );
        assert!(
            (9650..=9750).contains(&d(paris, tokyo)),
            "{}",
            d(paris, tokyo)
        );
        assert_eq!(d(tokyo, tokyo), 0);
    }
}
