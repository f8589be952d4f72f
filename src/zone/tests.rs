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
        let entry = &lex::lex(&format!("{line}\n"), Path::new("x")).unwrap()[0];
        let owner = Name::parse(&entry.tokens[0].text, Some(&name("t."))).unwrap();
        let rtype = &entry.tokens[1].text;
        let rdata: Vec<&lex::Token> = entry.tokens[2..].iter().collect();
        let want = parse_record(&owner, 60, rtype, &rdata, &name("t.")).unwrap();
        let got =
            z.nodes[&LowerName::new(&owner)].records(&LowerName::new(&owner), want.record_type());
        assert_eq!(got, [want], "{line}");
    }
}
