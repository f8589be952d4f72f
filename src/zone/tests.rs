use super::master::{parse_record, wire_roundtrip};
use super::*;

fn parse(text: &str) -> Result<Zone, ZoneError> {
    parse_zone(text, Path::new("t.zone"), Name::from_ascii("t.").unwrap())
}

const HEAD: &str = "$TTL 60\n@ IN SOA ns hm 1 2 3 4 5\n  IN NS ns\nns A 192.0.2.1\n";

#[test]
fn parses_multiline_soa_and_inherited_owner() {
    let z = parse(
        "$TTL 1h\n@ IN SOA ns hm (\n 1 ; serial\n 2 3 4\n 30 )\n IN NS ns\nns 10 A 192.0.2.1\n AAAA ::1\n",
    )
    .unwrap();
    assert_eq!(z.negative_ttl, 30);
    let ns = &z.nodes[&LowerName::new(&Name::from_ascii("ns.t.").unwrap())];
    assert_eq!(ns.rrsets.len(), 2);
    assert_eq!(ns.get(RecordType::A).unwrap().ttl, 10);
    // RFC 2308 section 4: an omitted TTL is $TTL's, not the previous record's.
    assert_eq!(ns.get(RecordType::AAAA).unwrap().ttl, 3600);
}

#[test]
fn empty_non_terminals_exist() {
    let z = parse(&format!("{HEAD}a.b.c A 192.0.2.2\n")).unwrap();
    let b = LowerName::new(&Name::from_ascii("b.c.t.").unwrap());
    assert!(z.nodes[&b].rrsets.is_empty());
}

#[test]
fn errors_name_file_and_line() {
    let e = parse(&format!("{HEAD}www A 300.1.1.1\n")).unwrap_err();
    assert_eq!(e.line, 5);
    assert!(e.to_string().starts_with("t.zone:5: bad A data"), "{e}");
    let e = parse(&format!("{HEAD}www IN BOGUS x\n")).unwrap_err();
    assert!(
        e.to_string()
            .contains("t.zone:5: unknown record type BOGUS"),
        "{e}"
    );
    let e = parse(&format!("{HEAD}x CNAME ns\nx A 192.0.2.1\n")).unwrap_err();
    assert!(e.to_string().contains("t.zone:6:") && e.msg.contains("CNAME and other"));
    let e = parse(&format!("{HEAD}www.other. A 192.0.2.1\n")).unwrap_err();
    assert!(e.msg.contains("outside the zone"), "{e}");
    let e = parse("$TTL 60\n@ NS ns\n").unwrap_err();
    assert!(e.msg.contains("no SOA"), "{e}");
    let e = parse(&format!("{HEAD}x TXT (\"a\"\n")).unwrap_err();
    assert!(e.msg.contains("never closed") && e.line == 5, "{e}");
}

/// The first TXT record's text at `name`.
fn first_txt(z: &Zone, name: &str) -> String {
    let node = &z.nodes[&LowerName::new(&Name::from_ascii(name).unwrap())];
    let set = node.get(RecordType::TXT).unwrap();
    set.data().next().unwrap().to_string()
}

#[test]
fn quoted_text_keeps_spaces_and_semicolons() {
    let z = parse(&format!("{HEAD}t TXT \"a b; c\" \"d\"\n")).unwrap();
    let txt = first_txt(&z, "t.t.");
    assert!(txt.contains("a b; c"), "{txt}");
}

#[test]
fn origin_include_and_escaped_quotes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inc.zone.part"), "x A 192.0.2.7\n").unwrap();
    let text = format!(
        "{HEAD}$ORIGIN sub.t.\nwww A 192.0.2.5\n$INCLUDE inc.zone.part other.t.\ny A 192.0.2.8\n\
         q TXT \"say \\\"hi\\\" (not a paren)\"\n"
    );
    let file = dir.path().join("t.zone");
    let z = parse_zone(&text, &file, Name::from_ascii("t.").unwrap()).unwrap();
    for n in ["www.sub.t.", "x.other.t.", "y.sub.t."] {
        let l = LowerName::new(&Name::from_ascii(n).unwrap());
        assert!(z.nodes[&l].get(RecordType::A).is_some(), "{n}");
    }
    let txt = first_txt(&z, "q.sub.t.");
    assert!(txt.contains("(not a paren)"), "{txt}");
    let e = parse_zone(
        &format!("{HEAD}$INCLUDE missing.part\n"),
        &file,
        Name::from_ascii("t.").unwrap(),
    )
    .unwrap_err();
    assert!(e.line == 5 && e.msg.contains("missing.part"), "{e}");
}

#[test]
fn an_included_file_that_is_not_zone_data_is_named_not_shown() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "root:$y$j9T$s3cr3tHash:19000:0:99999:7:::";
    std::fs::write(dir.path().join("shadow"), format!("{secret}\n")).unwrap();
    let file = dir.path().join("t.zone");
    let origin = Name::from_ascii("t.").unwrap();
    let e = parse_zone(&format!("{HEAD}$INCLUDE shadow\n"), &file, origin.clone()).unwrap_err();
    let text = e.to_string();
    assert!(e.line == 5 && e.file == file, "{text}");
    assert!(text.contains("shadow: not zone data (line 1"), "{text}");
    assert!(!text.contains("root") && !text.contains("s3cr3t"), "{text}");
    // An error in an included zone file that has records is shown as usual.
    std::fs::write(dir.path().join("inc.part"), "x A 192.0.2.7\ny A nope\n").unwrap();
    let e = parse_zone(&format!("{HEAD}$INCLUDE inc.part\n"), &file, origin.clone()).unwrap_err();
    assert_eq!((e.file, e.line), (dir.path().join("inc.part"), 2));
    // So is a record that reads but does not belong, even as the file's first.
    std::fs::write(dir.path().join("out.part"), "x.other. A 192.0.2.7\n").unwrap();
    let e = parse_zone(&format!("{HEAD}$INCLUDE out.part\n"), &file, origin).unwrap_err();
    assert!(e.msg.contains("x.other. is outside the zone t."), "{e}");
}

#[test]
fn delegation_is_found_below_the_cut() {
    let z = parse(&format!("{HEAD}sub NS ns.sub\nns.sub A 192.0.2.9\n")).unwrap();
    let q = LowerName::new(&Name::from_ascii("a.b.sub.t.").unwrap());
    let (cut, _) = z.delegation_above(&q).unwrap();
    assert_eq!(cut.to_string(), "sub.t.");
    let apex = LowerName::new(&Name::from_ascii("t.").unwrap());
    assert!(z.delegation_above(&apex).is_none());
}

#[test]
fn a_name_belongs_to_the_deepest_zone_that_holds_it() {
    let zone = |origin: &str| {
        parse_zone(HEAD, Path::new("z.zone"), Name::from_ascii(origin).unwrap()).unwrap()
    };
    let lower = |n: &str| LowerName::new(&Name::from_ascii(n).unwrap());
    // A few zones (compared one by one) and many (looked up by suffix) give the same answer.
    for extra in [0, 2 * FEW_ZONES] {
        let mut list = vec![zone("t."), zone("sub.t."), zone("other.")];
        list.extend((0..extra).map(|i| zone(&format!("z{i}.test."))));
        let zones = Zones::new(list);
        assert_eq!(zones.index_of(&lower("www.sub.t.")), Some(1), "{extra}");
        assert_eq!(zones.index_of(&lower("WWW.Sub.T.")), Some(1), "{extra}");
        assert_eq!(zones.index_of(&lower("sub.t.")), Some(1), "{extra}");
        assert_eq!(zones.index_of(&lower("a.b.t.")), Some(0), "{extra}");
        assert_eq!(zones.index_of(&lower("t.")), Some(0), "{extra}");
        assert_eq!(zones.index_of(&lower("x.other.")), Some(2), "{extra}");
        assert_eq!(zones.index_of(&lower("nothere.")), None, "{extra}");
        assert_eq!(zones.index_of(&lower("tt.")), None, "{extra}");
    }
}

#[test]
fn sets_kept_in_wire_form_read_back_as_written() {
    let z = parse(&format!(
        "{HEAD}Www A 192.0.2.9\nWww A 192.0.2.10\nwww A 192.0.2.9\nm MX 10 Mail.Example.\n\
         m MX 20 ns\nt TXT \"a\\\\b\" \"\\000x\"\nsrv SRV 1 2 443 Target.t.\n\
         c CNAME Www\nd DS 12345 13 2 \
         0000000000000000000000000000000000000000000000000000000000000000\n"
    ))
    .unwrap();
    let name = |n: &str| Name::from_ascii(n).unwrap();
    let node = |n: &str| &z.nodes[&LowerName::new(&name(n))];
    // One set per type, a repeated record dropped, in the order written.
    assert_eq!(z.record_count(), z.all_records().count());
    assert_eq!(z.record_count(), 10);
    assert_eq!(z.record_count_upto(10), 10);
    assert!((4..=10).contains(&z.record_count_upto(3)));
    let www = node("www.t.").get(RecordType::A).unwrap();
    assert_eq!(www.len(), 2);
    let got: Vec<String> = www.data().map(|d| d.to_string()).collect();
    assert_eq!(got, ["192.0.2.9", "192.0.2.10"]);
    // Records come back with their owner; names are read as hickory's parser reads them.
    let all: Vec<Record> = z.all_records().collect();
    assert!(
        all.iter()
            .any(|r| r.name.to_ascii() == "www.t." && r.ttl == 60),
        "{all:?}"
    );
    let mx: Vec<String> = node("m.t.")
        .records(&LowerName::new(&name("m.t.")), RecordType::MX)
        .iter()
        .map(|r| r.data.to_string())
        .collect();
    assert_eq!(mx, ["10 mail.example.", "20 ns.t."]);
    // Every record comes back equal to what its text parses into.
    for line in [
        "t TXT \"a\\\\b\" \"\\000x\"",
        "srv SRV 1 2 443 Target.t.",
        "c CNAME Www",
        "d DS 12345 13 2 0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let text = format!("{line}\n");
        let mut tokens = Vec::new();
        lex::lex(&text, Path::new("x"), |e| {
            tokens.extend_from_slice(&e.tokens);
            Ok(())
        })
        .unwrap();
        let owner = Name::parse(tokens[0], Some(&name("t."))).unwrap();
        let want = parse_record(&owner, 60, tokens[1], &tokens[2..], &name("t.")).unwrap();
        let got =
            z.nodes[&LowerName::new(&owner)].records(&LowerName::new(&owner), want.record_type());
        assert_eq!(got, [want], "{line}");
    }
}

/// The origin of the fast reader's tests, and its lowercase wire form.
fn fast_origin() -> (Name, Vec<u8>) {
    let origin = Name::from_ascii("Ex-1.T.").unwrap();
    let wire = wire_of(&origin, &mut [0; 255]).to_vec();
    (origin, wire)
}

/// What hickory's reader makes of a record of type `t` with data `tokens`: its wire form.
fn hickory_rdata(t: RecordType, tokens: &[&str], origin: &Name) -> Option<Vec<u8>> {
    let owner = Name::from_ascii("o.ex-1.t.").unwrap();
    let r = parse_record(&owner, 60, &t.to_string(), tokens, origin).ok()?;
    wire_roundtrip(&r).ok()?;
    rdata_wire(t, &r.data).ok()
}

/// Up to `n` characters drawn from an alphabet of label characters, escapes and separators.
fn random_word(rng: &mut rand::rngs::StdRng, n: usize) -> String {
    use rand::Rng;
    let alphabet = b"aZ09-_*.x\\\"@ ";
    (0..rng.random_range(0..n))
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// The common records' own reader gives hickory's bytes for the same names (owners, and
/// names in NS, CNAME, PTR, MX and SRV data), or leaves them to hickory: names of every kind
/// of label and case, odd and bad spellings.
#[test]
fn the_fast_reader_writes_the_names_hickory_writes_or_declines() {
    use rand::SeedableRng;
    let (origin, origin_wire) = fast_origin();
    let hickory = |t: RecordType, tokens: &[&str]| hickory_rdata(t, tokens, &origin);
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut names: Vec<String> = [
        "www",
        "WWW.Example.COM.",
        "a.b.c",
        "_sip._udp",
        "_SIP._udp",
        "*",
        "*.w",
        "a*",
        "-a",
        "a-",
        "a--b",
        "xn--bcher-kva",
        "XN--BCHER-KVA.",
        "a..b",
        ".",
        "@",
        "a.",
        "1.2.3",
        "under_score",
        "é",
        &"a".repeat(63),
        &"a".repeat(64),
        &format!("{}.", ["abcdefgh"; 30].join(".")),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    names.extend((0..3000).map(|_| random_word(&mut rng, 12)));
    let mut fast_names = 0;
    for n in &names {
        let mut out = Vec::new();
        let fast = fast::name(n, &origin_wire, &mut out).map(|_| out);
        let slow = Name::parse(n, Some(&origin))
            .ok()
            .map(|x| wire_of(&x, &mut [0; 255]).to_vec());
        if let Some(f) = fast {
            assert_eq!(Some(f), slow, "owner {n:?}");
            fast_names += 1;
        }
        for t in [RecordType::NS, RecordType::CNAME, RecordType::PTR] {
            if let Some(f) = fast::rdata(t, &[n], &origin_wire) {
                assert_eq!(Some(f), hickory(t, &[n]), "{t} {n:?}");
            }
        }
        let mx = ["10", n.as_str()];
        if let Some(f) = fast::rdata(RecordType::MX, &mx, &origin_wire) {
            assert_eq!(Some(f), hickory(RecordType::MX, &mx), "MX {n:?}");
        }
        let srv = ["0", "65535", "443", n.as_str()];
        if let Some(f) = fast::rdata(RecordType::SRV, &srv, &origin_wire) {
            assert_eq!(Some(f), hickory(RecordType::SRV, &srv), "SRV {n:?}");
        }
    }
    assert!(fast_names > 200, "{fast_names} names read fast");
}

/// The common records' own reader gives hickory's bytes for the same record data (A, AAAA,
/// MX, TXT, SRV), or leaves it to hickory: each type's data, odd and bad spellings.
#[test]
fn the_fast_reader_writes_the_data_hickory_writes_or_declines() {
    use rand::{Rng, SeedableRng};
    let (origin, origin_wire) = fast_origin();
    let hickory = |t: RecordType, tokens: &[&str]| hickory_rdata(t, tokens, &origin);
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let cases: &[(RecordType, &[&str])] = &[
        (RecordType::A, &["192.0.2.1"]),
        (RecordType::A, &["0.0.0.0"]),
        (RecordType::A, &["192.0.2.01"]),
        (RecordType::A, &["192.0.2"]),
        (RecordType::A, &["192.0.2.1", "x"]),
        (RecordType::AAAA, &["2001:db8::1"]),
        (RecordType::AAAA, &["::ffff:192.0.2.1"]),
        (RecordType::AAAA, &["::"]),
        (RecordType::AAAA, &["2001:DB8::A"]),
        (RecordType::MX, &["65536", "mx"]),
        (RecordType::MX, &["-1", "mx"]),
        (RecordType::MX, &["0", "."]),
        (RecordType::TXT, &["\"v=spf1 -all\""]),
        (RecordType::TXT, &["\"a\"", "\"b c\"", "bare", "\"\""]),
        (RecordType::TXT, &["\"a\\\"b\""]),
        (RecordType::TXT, &["\"a\\065\""]),
        (RecordType::TXT, &["\"a;b(c)\""]),
        (RecordType::SRV, &["1", "2", "3"]),
    ];
    let long = format!("\"{}\"", "x".repeat(255));
    let too_long = format!("\"{}\"", "x".repeat(256));
    let mut all: Vec<(RecordType, Vec<String>)> = cases
        .iter()
        .map(|(t, v)| (*t, v.iter().map(|s| s.to_string()).collect()))
        .collect();
    all.push((RecordType::TXT, vec![long]));
    all.push((RecordType::TXT, vec![too_long]));
    for _ in 0..2000 {
        let n = rng.random_range(1..4);
        let strings = (0..n)
            .map(|_| format!("\"{}\"", random_word(&mut rng, 20)))
            .collect();
        all.push((RecordType::TXT, strings));
        all.push((
            RecordType::A,
            vec![format!(
                "{}.{}.{}.{}",
                rng.random::<u8>(),
                rng.random::<u8>(),
                rng.random::<u8>(),
                rng.random::<u8>()
            )],
        ));
        all.push((
            RecordType::AAAA,
            vec![std::net::Ipv6Addr::from(rng.random::<u128>()).to_string()],
        ));
    }
    let mut fast_data = 0;
    for (t, v) in &all {
        let tokens: Vec<&str> = v.iter().map(String::as_str).collect();
        if let Some(f) = fast::rdata(*t, &tokens, &origin_wire) {
            assert_eq!(Some(f), hickory(*t, &tokens), "{t} {tokens:?}");
            fast_data += 1;
        }
    }
    assert!(fast_data > 4000, "{fast_data} records read fast");
}

/// A zone read through both readers (the fast one declining nothing it can read) holds the
/// same records.
#[test]
fn zones_read_fast_hold_what_hickory_reads() {
    let text = format!(
        "{HEAD}www A 192.0.2.2\n AAAA 2001:db8::2\n MX 10 mail\n TXT \"a\" b\nmail A 192.0.2.3\n\
         _s._tcp SRV 0 1 25 mail.t.\nc CNAME www\np PTR www.t.\nsub NS ns.sub\nns.sub A 192.0.2.9\n\
         caa CAA 0 issue \"ca.example\"\nW2 TXT \"x\\\"y\"\n"
    );
    let z = parse(&text).unwrap();
    let mut got: Vec<String> = z.all_records().map(|r| r.to_string()).collect();
    got.sort();
    let mut want: Vec<String> = Vec::new();
    let origin = Name::from_ascii("t.").unwrap();
    let (_, sets) = Parser::new(text.as_str(), None, Some(origin))
        .parse()
        .unwrap();
    for set in sets.values() {
        for r in set.records_without_rrsigs() {
            if r.record_type() != RecordType::SOA {
                want.push(r.to_string());
            }
        }
    }
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn a_zone_beyond_its_record_or_byte_limit_is_refused_at_the_line_that_passes_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.zone");
    let origin = Name::from_ascii("t.").unwrap();
    let limits = ZoneLimits {
        bytes: 4096,
        records: 4,
    };
    // HEAD holds three records: the fourth fits, the fifth does not.
    let four = format!("{HEAD}a A 192.0.2.2\n");
    assert!(parse_zone_within(&four, &file, origin.clone(), limits).is_ok());
    let e = parse_zone_within(
        &format!("{four}b A 192.0.2.3\n"),
        &file,
        origin.clone(),
        limits,
    )
    .unwrap_err();
    assert_eq!((e.file.as_path(), e.line), (file.as_path(), 6), "{e}");
    assert!(e.msg.contains("more than 4 records"), "{e}");
    // Included files count against the same budget of bytes.
    std::fs::write(dir.path().join("big.part"), "x A 192.0.2.7\n".repeat(300)).unwrap();
    let e = parse_zone_within(
        &format!("{HEAD}$INCLUDE big.part\n"),
        &file,
        origin,
        ZoneLimits {
            bytes: 4096,
            records: 1000,
        },
    )
    .unwrap_err();
    assert_eq!(e.line, 5, "{e}");
    assert!(e.msg.contains("larger than 4096 bytes"), "{e}");
}
