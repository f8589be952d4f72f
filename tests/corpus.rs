//! Replays every committed fuzz corpus file (fuzz/corpus/TARGET/*) through the property its
//! fuzz target asserts (`gtmd::props`), on stable Rust: CI runs the corpora without a fuzzer.

use std::path::Path;

fn replay(target: &str, property: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .is_some_and(|f| f.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| property(&data));
        assert!(r.is_ok(), "{} breaks the {target} property", path.display());
        n += 1;
    }
    assert!(n > 0, "{} is empty", dir.display());
    println!("{target}: {n} inputs");
}

#[test]
fn query_corpus_holds() {
    replay("query", gtmd::props::query);
}

#[test]
fn config_corpus_holds() {
    replay("config", gtmd::props::config);
}

#[test]
fn zone_corpus_holds() {
    replay("zone", gtmd::props::zone);
}

#[test]
fn health_corpus_holds() {
    replay("health", gtmd::props::health);
}
