use super::*;

/// A pair made by BIND 9.18's `dnssec-keygen -a ECDSAP256SHA256 -f KSK t.`.
const BIND_KEY: &str = "; This is a key-signing key, keyid 16193, for t.\n\
; Created: 20261202215657 (Wed Dec  2 21:56:57 2026)\n\
t. IN DNSKEY 257 3 13 7SuMrXnqyYLklwntEFqGPz8MSUphZSRklpy7/pxibHObATYeK6H+i9fl 2mHduPj+dQCZm5H9ye9fE1OvGaDUAw==\n";
const BIND_PRIVATE: &str = "Private-key-format: v1.3\nAlgorithm: 13 (ECDSAP256SHA256)\n\
PrivateKey: iwKliTcxTD/c91cFqeM3M02zom0O9yno5fo+mm6uEC8=\nCreated: 20261202215657\n";
/// `dnssec-keygen -a ED25519 t.`
const BIND_ED_KEY: &str = "t. IN DNSKEY 256 3 15 Kz7gD4/jd59yjYUuR1xNqS7vJNXWkQy9I7c4PP2Dv6E=\n";
const BIND_ED_PRIVATE: &str = "Private-key-format: v1.3\nAlgorithm: 15 (ED25519)\n\
PrivateKey: 3mfGWdkEXBu9r03SAFTNePaawftWeNcyk8gZxEM7Rhg=\n";

fn origin() -> Name {
    Name::from_ascii("t.").unwrap()
}

fn spec(path: PathBuf) -> KeySpec {
    KeySpec {
        path,
        sign: true,
        ksk: false,
    }
}

fn write_pair(dir: &Path, base: &str, key: &str, private: &str) -> PathBuf {
    std::fs::write(dir.join(format!("{base}.key")), key).unwrap();
    std::fs::write(dir.join(format!("{base}.private")), private).unwrap();
    dir.join(base)
}

#[test]
fn bind_key_pairs_load_with_their_tags_and_roles() {
    let dir = tempfile::tempdir().unwrap();
    let ksk = write_pair(dir.path(), "Kt.+013+16193", BIND_KEY, BIND_PRIVATE);
    let zsk = write_pair(dir.path(), "Kt.+015+62413", BIND_ED_KEY, BIND_ED_PRIVATE);
    let k = PathBuf::from(format!("{}.private", ksk.display())); // either file names the pair
    let keys = load(&origin(), &[spec(k), spec(zsk)]).unwrap();
    assert_eq!(keys.keys[0].tag, 16193);
    assert!(keys.keys[0].ksk);
    assert_eq!(keys.keys[1].tag, 62413);
    assert_eq!(keys.zone_signers()[0].tag, 62413);
    assert_eq!(keys.key_signers()[0].tag, 16193);
    let apex = keys.apex_records(3600);
    let types: Vec<String> = apex.iter().map(|r| r.record_type().to_string()).collect();
    assert_eq!(types, ["DNSKEY", "DNSKEY", "CDS", "CDNSKEY"]);
    assert!(keys.ds_lines(3600)[0].starts_with("t. 3600 IN DS 16193 13 2 "));
}

#[test]
fn a_private_key_that_does_not_match_its_public_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let private = BIND_PRIVATE.replace("iwKl", "AAAA");
    let k = write_pair(dir.path(), "Kt.+013+16193", BIND_KEY, &private);
    let e = load(&origin(), &[spec(k)]).unwrap_err().to_string();
    assert!(
        e.contains("Kt.+013+16193.private:3:") && e.contains("does not match"),
        "{e}"
    );
}

#[test]
fn a_key_for_another_zone_or_algorithm_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let k = write_pair(
        dir.path(),
        "Ka",
        &BIND_KEY.replace("t. IN", "u. IN"),
        BIND_PRIVATE,
    );
    let e = load(&origin(), &[spec(k)]).unwrap_err().to_string();
    assert!(
        e.contains("Ka.key:3: this key is for u., not for the zone t."),
        "{e}"
    );
    let k = write_pair(
        dir.path(),
        "Kb",
        &BIND_KEY.replace(" 13 ", " 8 "),
        BIND_PRIVATE,
    );
    let e = load(&origin(), &[spec(k)]).unwrap_err().to_string();
    assert!(e.contains("algorithm 8 is not supported"), "{e}");
}

#[test]
fn generated_keys_load_back_for_both_algorithms() {
    let dir = tempfile::tempdir().unwrap();
    for (alg, ksk) in [(13u8, true), (15, false)] {
        let base = generate(&origin(), alg, ksk, dir.path()).unwrap();
        let name = base.file_name().unwrap().to_string_lossy().to_string();
        let keys = load(&origin(), &[spec(base)]).unwrap();
        let k = &keys.keys[0];
        assert_eq!(name, format!("Kt.+{alg:03}+{:05}", k.tag));
        assert_eq!(k.ksk, ksk);
    }
}

#[test]
fn a_zone_needs_a_key_that_signs() {
    let dir = tempfile::tempdir().unwrap();
    let k = write_pair(dir.path(), "Kt.+013+16193", BIND_KEY, BIND_PRIVATE);
    let mut s = spec(k);
    s.sign = false;
    let e = load(&origin(), &[s]).unwrap_err().to_string();
    assert!(e.contains("no key of the zone signs"), "{e}");
}
