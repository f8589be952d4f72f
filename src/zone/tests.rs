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
    assert_eq!(ns.get(RecordType::A).unwrap().records[0].ttl, 10);
    // RFC 2308 section 4: an omitted TTL is $TTL's, not the previous record's.
    assert_eq!(ns.get(RecordType::AAAA).unwrap().records[0].ttl, 3600);
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

#[test]
fn quoted_text_keeps_spaces_and_semicolons() {
    let z = parse(&format!("{HEAD}t TXT \"a b; c\" \"d\"\n")).unwrap();
    let t = &z.nodes[&LowerName::new(&Name::from_ascii("t.t.").unwrap())];
    let txt = t.get(RecordType::TXT).unwrap().records[0].data.to_string();
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
    let q = &z.nodes[&LowerName::new(&Name::from_ascii("q.sub.t.").unwrap())];
    let txt = q.get(RecordType::TXT).unwrap().records[0].data.to_string();
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
    let e = parse_zone(&format!("{HEAD}$INCLUDE inc.part\n"), &file, origin).unwrap_err();
    assert_eq!((e.file, e.line), (dir.path().join("inc.part"), 2));
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
