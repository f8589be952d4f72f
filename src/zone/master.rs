//! The reader of master files: directives (`$ORIGIN`, `$TTL`, `$INCLUDE`), owner and TTL
//! inheritance, each record parsed on its own so that its error names its file and line, and
//! the zone checked as a whole once read.

use super::*;

/// Reads every `*.zone` file in `dir`. The file name minus `.zone` is the zone's origin.
pub fn load_dir(dir: &Path) -> Result<Vec<Zone>, ZoneError> {
    load_dir_within(dir, ZoneLimits::DEFAULT)
}

/// [`load_dir`], each zone held to `limits`.
pub fn load_dir_within(dir: &Path, limits: ZoneLimits) -> Result<Vec<Zone>, ZoneError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| err(dir, 0, format!("cannot read the zones directory: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "zone"))
        .collect();
    files.sort();
    let mut zones = Vec::with_capacity(files.len());
    for file in files {
        let stem = file.file_stem().unwrap_or_default().to_string_lossy();
        let origin = Name::from_ascii(format!("{}.", stem.trim_end_matches('.')))
            .map_err(|e| err(&file, 0, format!("file name is not a domain name: {e}")))?;
        let text = read::read_within(&file, &mut limits.bytes.clone(), limits.bytes)
            .map_err(|e| err(&file, 0, format!("cannot read: {e}")))?;
        let zone = parse_zone_within(&text, &file, origin, limits)?;
        if let Some(other) = zones.iter().find(|z: &&Zone| z.origin == zone.origin) {
            return Err(err(
                &file,
                0,
                format!(
                    "zone {} is also defined in {}",
                    zone.origin,
                    other.file.display()
                ),
            ));
        }
        zones.push(zone);
    }
    Ok(zones)
}

/// Parsing state that directives change as the file is read, and the zone read so far.
struct Reader {
    origin: Name,
    /// `origin` in lowercase wire form.
    origin_wire: Vec<u8>,
    default_ttl: Option<u32>,
    last_ttl: Option<u32>,
    /// The last owner, in lowercase wire form (empty: none yet).
    last_owner: Vec<u8>,
    /// The files read, each with how many records and directives it gave.
    files: Vec<(PathBuf, usize)>,
    /// The zone's apex (the origin before any `$ORIGIN`), as a name and in lowercase wire form.
    apex: Name,
    apex_wire: Vec<u8>,
    nodes: Nodes,
    soa: Option<Record>,
    /// Whether a name below the apex has NS records.
    cuts: bool,
    limits: ZoneLimits,
    /// Bytes of text the zone may still read (through `$INCLUDE`).
    budget: u64,
    /// Records read so far, every file together.
    records: usize,
}

/// Parses one zone file whose apex is `origin` (before any `$ORIGIN`), and checks it.
pub fn parse_zone(text: &str, file: &Path, origin: Name) -> Result<Zone, ZoneError> {
    parse_zone_within(text, file, origin, ZoneLimits::DEFAULT)
}

/// [`parse_zone`], the zone held to `limits` (`text` counts against its bytes).
pub fn parse_zone_within(
    text: &str,
    file: &Path,
    origin: Name,
    limits: ZoneLimits,
) -> Result<Zone, ZoneError> {
    let apex_wire = wire_of(&origin, &mut [0; 255]).to_vec();
    let mut r = Reader {
        origin_wire: apex_wire.clone(),
        origin: origin.clone(),
        default_ttl: None,
        last_ttl: None,
        last_owner: Vec::new(),
        files: Vec::new(),
        apex: origin,
        apex_wire,
        nodes: Nodes::default(),
        soa: None,
        cuts: false,
        limits,
        budget: limits.bytes.saturating_sub(text.len() as u64),
        records: 0,
    };
    read_text(&mut r, text, file, 0)?;
    finish_zone(r, file)
}

fn read_text(r: &mut Reader, text: &str, file: &Path, depth: usize) -> Result<(), ZoneError> {
    let fi = match r.files.iter().position(|f| f.0 == file) {
        Some(i) => i,
        None => {
            r.files.push((file.to_path_buf(), 0));
            r.files.len() - 1
        }
    };
    let fi = u16::try_from(fi).map_err(|_| err(file, 0, "too many included files"))?;
    // Room for a node per line (at most); `finish_zone` gives back what is left.
    r.nodes
        .reserve(text.bytes().filter(|&c| c == b'\n').count() + 1);
    lex(text, file, |entry| read_entry(r, entry, (file, fi), depth))
}

/// `$ORIGIN`, `$TTL` or `$INCLUDE` (RFC 1035 section 5.1).
fn directive(r: &mut Reader, e: &Entry, file: &Path, depth: usize) -> Result<(), ZoneError> {
    let line = e.line;
    let first = e.tokens[0];
    let arg = e.tokens.get(1).copied();
    match (first.to_ascii_uppercase().as_str(), arg) {
        ("$ORIGIN", Some(a)) => {
            r.origin = Name::parse(a, Some(&r.origin))
                .map_err(|x| err(file, line, format!("bad $ORIGIN {a:?}: {x}")))?;
            r.origin_wire = wire_of(&r.origin, &mut [0; 255]).to_vec();
            Ok(())
        }
        ("$TTL", Some(a)) => {
            r.default_ttl = Some(parse_ttl(a).ok_or_else(|| {
                err(
                    file,
                    line,
                    format!("bad $TTL {a:?}: expected a time such as 3600 or 1h"),
                )
            })?);
            Ok(())
        }
        ("$INCLUDE", Some(a)) => include(r, a, e.tokens.get(2), file, line, depth),
        (d, None) if ["$ORIGIN", "$TTL", "$INCLUDE"].contains(&d) => {
            Err(err(file, line, format!("{first} needs an argument")))
        }
        _ => Err(err(
            file,
            line,
            format!("unknown directive {first}: allowed are $ORIGIN, $TTL and $INCLUDE"),
        )),
    }
}

fn read_entry(
    r: &mut Reader,
    e: &Entry,
    (file, fi): (&Path, u16),
    depth: usize,
) -> Result<(), ZoneError> {
    let line = e.line;
    let first = e.tokens[0];
    if !e.blank_owner && first.starts_with('$') {
        if ["$ORIGIN", "$TTL", "$INCLUDE"]
            .iter()
            .any(|d| d.eq_ignore_ascii_case(first))
        {
            // A directive is zone data too: an error further on (in a file it includes,
            // say) is shown as it is (see `include`).
            r.files[fi as usize].1 += 1;
        }
        return directive(r, e, file, depth);
    }
    let mut toks = e.tokens.iter();
    if !e.blank_owner {
        read_owner(r, toks.next().copied().unwrap_or_default(), file, line)?;
    } else if r.last_owner.is_empty() {
        return Err(err(
            file,
            line,
            "record with no owner name and no previous owner",
        ));
    }
    let (ttl, rtype) = ttl_and_type(&mut toks, file, line)?;
    let ttl = ttl
        .or(r.default_ttl)
        .or(r.last_ttl)
        .ok_or_else(|| err(file, line, "record has no TTL and no $TTL is set"))?;
    r.last_ttl = Some(ttl);
    let rdata = &e.tokens[e.tokens.len() - toks.len()..];
    let fast = fast::rtype(rtype).and_then(|t| Some((t, fast::rdata(t, rdata, &r.origin_wire)?)));
    let (rtype, rdata, soa) = match fast {
        Some((t, wire)) => (t, wire, None),
        None => {
            // hickory reads the record's data (and checks it survives the wire format).
            let up = rtype.to_ascii_uppercase();
            let owner_name = Name::from(name_of(&r.last_owner));
            let record = parse_record(&owner_name, ttl, &up, rdata, &r.origin)
                .map_err(|m| err(file, line, m))?;
            wire_roundtrip(&record).map_err(|m| err(file, line, m))?;
            let t = record.record_type();
            let wire = rdata_wire(t, &record.data).map_err(|m| err(file, line, m))?;
            let soa = (t == RecordType::SOA).then(|| Box::new(record));
            (t, wire, soa)
        }
    };
    // The record is read: its file is zone data (see `include`).
    r.files[fi as usize].1 += 1;
    r.records += 1;
    if r.records > r.limits.records {
        return Err(err(
            file,
            line,
            format!(
                "the zone has more than {} records, the limit of one zone",
                r.limits.records
            ),
        ));
    }
    let owner = std::mem::take(&mut r.last_owner);
    let added = add_record(r, &owner, rtype, ttl, &rdata, soa, line as u32);
    r.last_owner = owner;
    added.map_err(|m| err(file, line, m))
}

/// Reads the owner name `t` of a record into `r.last_owner` (lowercase wire form).
fn read_owner(r: &mut Reader, t: &str, file: &Path, line: usize) -> Result<(), ZoneError> {
    r.last_owner.clear();
    if t == "@" {
        r.last_owner.extend_from_slice(&r.origin_wire);
    } else if fast::name(t, &r.origin_wire, &mut r.last_owner).is_none() {
        let n = Name::parse(t, Some(&r.origin))
            .map_err(|x| err(file, line, format!("bad owner name {t:?}: {x}")))?;
        r.last_owner.clear();
        r.last_owner.extend_from_slice(wire_of(&n, &mut [0; 255]));
    }
    Ok(())
}

/// Reads a record's TTL and class (each optional, in either order; only class IN is served)
/// and its type from `toks`.
fn ttl_and_type<'t>(
    toks: &mut std::slice::Iter<'_, &'t str>,
    file: &Path,
    line: usize,
) -> Result<(Option<u32>, &'t str), ZoneError> {
    let (mut ttl, mut class) = (None, None);
    loop {
        let Some(t) = toks.next() else {
            return Err(err(file, line, "record has no type"));
        };
        let text = *t;
        if ttl.is_none() && text.starts_with(|c: char| c.is_ascii_digit()) {
            ttl =
                Some(parse_ttl(text).ok_or_else(|| err(file, line, format!("bad TTL {text:?}")))?);
        } else if class.is_none()
            && ["IN", "CH", "HS", "CS", "NONE", "ANY"]
                .iter()
                .any(|c| c.eq_ignore_ascii_case(text))
        {
            if !text.eq_ignore_ascii_case("IN") {
                let up = text.to_ascii_uppercase();
                return Err(err(
                    file,
                    line,
                    format!("class {up} is not served: only IN"),
                ));
            }
            class = Some(DNSClass::IN);
        } else {
            return Ok((ttl, text));
        }
    }
}

/// Adds one record to the zone read so far: outside the apex, an SOA not at the apex or a
/// second one, and what [`add_to_node`] refuses are errors.
fn add_record(
    r: &mut Reader,
    owner: &[u8],
    rtype: RecordType,
    ttl: u32,
    rdata: &[u8],
    soa: Option<Box<Record>>,
    line: u32,
) -> Result<(), String> {
    if !within(owner, &r.apex_wire) {
        return Err(format!("{} is outside the zone {}", name_of(owner), r.apex));
    }
    let at_apex = owner == r.apex_wire.as_slice();
    if rtype == RecordType::SOA {
        if !at_apex {
            return Err(format!("SOA must be at the apex {}", r.apex));
        }
        if r.soa.is_some() {
            return Err("a second SOA record: a zone has exactly one".into());
        }
        r.soa = soa.map(|s| *s);
    }
    r.cuts |= rtype == RecordType::NS && !at_apex;
    r.nodes.with_node(owner, |node| {
        if node.line == 0 {
            node.line = line;
        }
        add_to_node(node, owner, rtype, ttl, rdata)
    })
}

/// A record is served only if its wire form reads back as itself: text that parses into
/// data the wire format cannot carry (a CAA tag with `=`, say) is an error here, not a
/// response that resolvers cannot read.
pub(super) fn wire_roundtrip(record: &Record) -> Result<(), String> {
    use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
    let bytes = record.to_bytes().map_err(|e| {
        format!(
            "{} record cannot be written in wire format: {e}",
            record.record_type()
        )
    })?;
    match Record::from_bytes(&bytes) {
        Ok(back) if back == *record => Ok(()),
        Ok(_) | Err(_) => Err(format!(
            "{} record does not survive the wire format (check its fields)",
            record.record_type()
        )),
    }
}

fn include(
    r: &mut Reader,
    path: &str,
    origin: Option<&&str>,
    file: &Path,
    line: usize,
    depth: usize,
) -> Result<(), ZoneError> {
    if depth >= MAX_INCLUDE_DEPTH {
        return Err(err(
            file,
            line,
            format!("$INCLUDE nested deeper than {MAX_INCLUDE_DEPTH}"),
        ));
    }
    let target = file
        .parent()
        .unwrap_or(Path::new("."))
        .join(path.trim_matches('"'));
    let text = read::read_within(&target, &mut r.budget, r.limits.bytes)
        .map_err(|x| err(file, line, format!("$INCLUDE {}: {x}", target.display())))?;
    let saved = (
        r.origin.clone(),
        r.origin_wire.clone(),
        r.last_owner.clone(),
    );
    let records_of = |r: &Reader| r.files.iter().find(|f| f.0 == target).map_or(0, |f| f.1);
    if let Some(o) = origin {
        r.origin = Name::parse(o, Some(&r.origin))
            .map_err(|x| err(file, line, format!("bad $INCLUDE origin {o:?}: {x}")))?;
        r.origin_wire = wire_of(&r.origin, &mut [0; 255]).to_vec();
    }
    let before = records_of(r);
    read_text(r, &text, &target, depth + 1).map_err(|e| {
        // A file that yields no record before its error is not shown to be zone data: say
        // where, never what (an `$INCLUDE /etc/shadow` must not echo the file into a reply
        // or an alert).
        let own = e.file == target && records_of(r) == before;
        if own {
            err(
                file,
                line,
                format!(
                    "$INCLUDE {}: not zone data (line {} is not a record; its content is not shown)",
                    target.display(),
                    e.line
                ),
            )
        } else {
            e
        }
    })?;
    // RFC 1035 section 5.1: the origin and current owner revert after an included file.
    (r.origin, r.origin_wire, r.last_owner) = saved;
    Ok(())
}

/// A TTL in seconds, or with units (1h30m) as RFC 2308 section 4 and BIND allow. RFC 2181
/// section 8: a TTL of 2^31 or more (the most significant bit set) is read as 0, as Knot
/// does; one that does not fit 32 bits is an error.
pub fn parse_ttl(s: &str) -> Option<u32> {
    hickory_proto::serialize::txt::parse_ttl(s)
        .ok()
        .map(|t| if t > i32::MAX as u32 { 0 } else { t })
}

/// Parses one record's RDATA with hickory's parser, from a one-record master-file snippet.
pub(super) fn parse_record(
    owner: &Name,
    ttl: u32,
    rtype: &str,
    rdata: &[&str],
    origin: &Name,
) -> Result<Record, String> {
    let ty: RecordType = rtype
        .parse()
        .map_err(|_| format!("unknown record type {rtype}"))?;
    if matches!(
        ty,
        RecordType::OPT | RecordType::ANY | RecordType::AXFR | RecordType::IXFR
    ) || u16::from(ty) >= 0xff00
        || matches!(ty, RecordType::Unknown(_))
    {
        return Err(format!("record type {rtype} cannot appear in a zone file"));
    }
    if rdata.is_empty() {
        return Err(format!("{rtype} record has no data"));
    }
    let mut snippet = format!("$ORIGIN {origin}\n@ {ttl} IN {rtype}");
    for t in rdata {
        snippet.push(' ');
        snippet.push_str(t);
    }
    snippet.push('\n');
    let (_, sets) = Parser::new(snippet, None, None)
        .parse()
        .map_err(|e| format!("bad {rtype} data: {e}"))?;
    let mut record = sets
        .into_values()
        .flat_map(|s| s.records_without_rrsigs().cloned().collect::<Vec<_>>())
        .next()
        .ok_or_else(|| format!("bad {rtype} data"))?;
    record.name = owner.clone();
    if let RData::Update0(_) = record.data {
        return Err(format!("{rtype} record has no data"));
    }
    Ok(record)
}

/// Adds a record to its node (`owner`, for messages): a second CNAME, or a CNAME beside other
/// data, is an error; a repeated record is dropped; an RRset keeps its first TTL (RFC 2181
/// section 5.2). A node's sets, and each set's data, take exactly the room they need.
fn add_to_node(
    node: &mut Node,
    owner: &[u8],
    rtype: RecordType,
    ttl: u32,
    rdata: &[u8],
) -> Result<(), String> {
    match node.rrsets.iter_mut().find(|s| s.rtype == rtype) {
        Some(set) => {
            if rtype == RecordType::CNAME {
                return Err(format!("{} has a second CNAME", name_of(owner)));
            }
            if !set.wire().any(|d| d == rdata) {
                let mut wire = Vec::with_capacity(set.wire.len() + 2 + rdata.len());
                wire.extend_from_slice(&set.wire);
                push_rdata(&mut wire, rtype, rdata)?;
                set.wire = wire.into_boxed_slice();
            }
        }
        None => {
            let mut wire = Vec::with_capacity(2 + rdata.len());
            push_rdata(&mut wire, rtype, rdata)?;
            node.rrsets.reserve_exact(1);
            node.rrsets.push(RrSet::from_wire(rtype, ttl, wire));
        }
    }
    let cname = node.rrsets.iter().any(|s| s.rtype == RecordType::CNAME);
    if cname && node.rrsets.len() > 1 {
        return Err(format!(
            "{} has a CNAME and other data (RFC 1034 section 3.6.2)",
            name_of(owner)
        ));
    }
    Ok(())
}

/// The zone read by `r`, checked as a whole.
fn finish_zone(r: Reader, file: &Path) -> Result<Zone, ZoneError> {
    let origin = r.apex;
    let soa = r
        .soa
        .ok_or_else(|| err(file, 0, format!("no SOA record at the apex {origin}")))?;
    let apex = r.nodes.get_wire(&r.apex_wire);
    if apex.is_none_or(|n| n.get(RecordType::NS).is_none()) {
        return Err(err(file, 0, format!("no NS records at the apex {origin}")));
    }
    let minimum = match &soa.data {
        RData::SOA(s) => s.minimum,
        _ => unreachable!("only an SOA record is kept as the SOA"),
    };
    let negative_ttl = soa.ttl.min(minimum);
    let mut zone = Zone {
        cuts: r.cuts,
        origin: LowerName::new(&origin),
        origin_name: origin,
        soa,
        negative_ttl,
        nodes: r.nodes,
        file: file.to_path_buf(),
        keys: None,
    };
    zone.nodes.add_empty_non_terminals(r.apex_wire.len());
    zone.nodes.shrink_to_fit();
    Ok(zone)
}
