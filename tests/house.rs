//! The house rules that hold by test, not by memory: the floors of `src/lib.rs` (every
//! `crate::` path in `src/` names a module on a lower floor than its own, or its own module;
//! an import that goes up or sideways fails, named by file and line), no source file over
//! [`MAX_FILE_LINES`] lines, and no function over [`MAX_FN_LINES`] lines of code (blank and
//! comment lines not counted, as clippy's `too_many_lines` counts, set to the same limit in
//! `Cargo.toml` and `.clippy.toml`); and the engine's read models (`src/engine/read/`)
//! never take the engine by `&mut self`.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The floor of each top-level module, from the table in `src/lib.rs`'s documentation
/// (rows `//! | N | [`module`] | ... |`).
fn floors(lib: &str) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! | ") else {
            continue;
        };
        let mut cells = row.split(" | ");
        let (Some(floor), Some(module)) = (cells.next(), cells.next()) else {
            continue;
        };
        let (Ok(floor), Some(module)) = (
            floor.trim().parse::<u32>(),
            module
                .trim()
                .strip_prefix("[`")
                .and_then(|m| m.strip_suffix("`]")),
        ) else {
            continue;
        };
        out.insert(module.to_string(), floor);
    }
    out
}

/// The longest a source file may be.
const MAX_FILE_LINES: usize = 600;
/// The most lines of code a function may have.
const MAX_FN_LINES: usize = 80;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The line without its comment (a `//` outside a string literal).
fn code_of(line: &str) -> &str {
    let mut in_str = false;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '"' if prev != '\\' => in_str = !in_str,
            '/' if !in_str && prev == '/' => return &line[..i - 1],
            _ => {}
        }
        prev = if prev == '\\' && c == '\\' { ' ' } else { c };
    }
    line
}

/// The top-level modules named by `crate::` paths in `code`, grouped imports included
/// (`use crate::{a::X, b}`).
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(name);
        }
    }
    out
}

#[test]
fn no_module_imports_from_its_own_floor_or_above() {
    let src = common::repo().join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let floors = floors(&lib);
    assert!(
        floors.len() >= 5,
        "no floor table in src/lib.rs: {floors:?}"
    );
    // Every module the crate declares has its floor.
    for line in lib.lines() {
        let decl = line.trim().strip_prefix("pub mod ");
        if let Some(m) = decl.and_then(|d| d.strip_suffix(';')) {
            assert!(
                floors.contains_key(m),
                "src/lib.rs: module `{m}` has no floor in the table"
            );
        }
    }
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs");
        let Some(&own) = floors.get(module) else {
            continue; // lib.rs and main.rs
        };
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            for target in crate_paths(code_of(line)) {
                let Some(&floor) = floors.get(target.as_str()) else {
                    continue; // a crate-level item, not a module
                };
                if target != module && floor >= own {
                    wrong.push(format!(
                        "src/{}:{}: `{module}` (floor {own}) uses `crate::{target}` (floor {floor})",
                        rel.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that do not go down a floor:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_floor_check_sees_an_import_in_a_group_and_ignores_one_in_a_comment() {
    assert_eq!(
        crate_paths("use crate::{dns::X, engine};"),
        ["dns", "engine"]
    );
    assert_eq!(
        crate_paths("let a = crate::ops::f(); // crate::app"),
        ["ops", "app"]
    );
    assert_eq!(
        crate_paths(code_of("let a = crate::ops::f(); // crate::app")),
        ["ops"]
    );
    assert_eq!(
        crate_paths(code_of("let u = \"http://x\"; crate::dns::f()")),
        ["dns"]
    );
    assert!(crate_paths("gtmd_crate::dns").is_empty());
}

#[test]
fn no_source_file_is_longer_than_600_lines() {
    let src = common::repo().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            let rel = f
                .strip_prefix(common::repo())
                .unwrap()
                .display()
                .to_string();
            (n > MAX_FILE_LINES).then(|| format!("{rel}: {n} lines"))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_FILE_LINES} lines (split them by what they do):\n{}",
        long.join("\n")
    );
}

/// The places in `text` that take `self` mutably (outside comments and literals).
fn mutable_self(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let code = strip_literals(code_of(l));
            code.contains("&mut self") || code.contains("mut self:")
        })
        .map(|(n, _)| n + 1)
        .collect()
}

#[test]
fn the_read_models_never_change_the_engine() {
    let read = common::repo().join("src/engine/read");
    let mut files = Vec::new();
    rust_files(&read, &mut files);
    assert!(files.len() >= 5, "the read models moved: {files:?}");
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let rel = f
            .strip_prefix(common::repo())
            .unwrap()
            .display()
            .to_string();
        found.extend(
            mutable_self(&text)
                .into_iter()
                .map(|n| format!("{rel}:{n}")),
        );
    }
    assert!(
        found.is_empty(),
        "a read model takes the engine mutably (what changes state belongs to the writer, in src/engine/):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_read_model_check_sees_a_mutable_self_and_not_one_in_a_comment_or_string() {
    let text = "impl E {
    fn a(&self) {}
    // not &mut self
    fn b(&mut self) {}
    fn c(&self) { let s = \"&mut self\"; }
}
";
    assert_eq!(mutable_self(text), vec![4]);
}

/// Whether `line` opens a function with a body (`fn`, with any qualifiers before it).
fn opens_fn(line: &str) -> bool {
    let mut words = line.split_whitespace().peekable();
    while let Some(w) = words.next() {
        let qualifier = w == "pub"
            || w.starts_with("pub(")
            || matches!(w, "async" | "const" | "unsafe" | "extern" | "default");
        if w == "fn" {
            return words.peek().is_some() && !line.trim_end().ends_with(';');
        }
        if !qualifier {
            return false;
        }
    }
    false
}

/// Each function of `text` with more than `max` lines of code: its first line and count.
fn long_functions(text: &str, max: usize) -> Vec<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (start, l) in lines.iter().enumerate() {
        if !opens_fn(l) {
            continue;
        }
        let (mut depth, mut opened, mut code) = (0i64, false, 0);
        for l in &lines[start..] {
            let c = strip_literals(code_of(l));
            if !c.trim().is_empty() {
                code += 1;
            }
            depth += c.matches('{').count() as i64 - c.matches('}').count() as i64;
            opened |= c.contains('{');
            if opened && depth <= 0 {
                break;
            }
        }
        if code > max {
            out.push((start + 1, code));
        }
    }
    out
}

/// The line with its string and character literals emptied, so that their braces do not
/// count.
fn strip_literals(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push('"');
                while let Some(n) = chars.next() {
                    match n {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                out.push('"');
            }
            '\'' => {
                // A character literal ('x', '\n', '{'), or a lifetime ('a): only the first
                // is emptied.
                let rest: String = chars.clone().take(3).collect();
                let lit = rest.starts_with('\\') || rest.chars().nth(1) == Some('\'');
                if lit {
                    for n in chars.by_ref() {
                        if n == '\'' {
                            break;
                        }
                    }
                    out.push_str("' '");
                } else {
                    out.push(c);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

#[test]
fn no_function_is_longer_than_80_lines_of_code() {
    let src = common::repo().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut long = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let rel = f
            .strip_prefix(common::repo())
            .unwrap()
            .display()
            .to_string();
        for (line, n) in long_functions(&text, MAX_FN_LINES) {
            long.push(format!("{rel}:{line}: {n} lines of code"));
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines of code (split them by what they do):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_length_check_counts_code_not_comments_and_ignores_braces_in_literals() {
    let body = |n: usize| "    let x = 1;\n    // a comment\n\n".repeat(n);
    let f = |n: usize| format!("/// doc\npub(crate) async fn f() {{\n{}}}\n", body(n));
    // The opening and closing lines count too.
    assert!(long_functions(&f(78), 80).is_empty());
    assert_eq!(long_functions(&f(79), 80), [(2, 81)]);
    let tricky = "fn g() {\n    let s = \"}}}\";\n    let c = '}';\n    let r: &'static str = s;\n}\nfn h() {}\n";
    assert!(
        long_functions(tricky, 5).is_empty(),
        "{:?}",
        long_functions(tricky, 5)
    );
    assert_eq!(long_functions(tricky, 4), [(1, 5)]);
    assert!(!opens_fn("    fn f();"));
    assert!(opens_fn("    pub(super) fn f("));
}

/// The README's test command (the one line in the `sh` block after "To run the tests") is
/// the line `.ci/run` runs, so that CI runs what a reader runs.
#[test]
fn the_readme_test_command_is_what_ci_runs() {
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let from = readme
        .find("To run the tests")
        .expect("a test section in the README");
    let block = readme[from..]
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block in the README's test section");
    let lines: Vec<&str> = block.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one command line: {lines:?}");
    let ci = std::fs::read_to_string(common::repo().join(".ci/run")).unwrap();
    let last = ci.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
    assert_eq!(last.trim(), lines[0].trim(), ".ci/run's last line");
}

/// The integration test targets: `tests/suite.rs`'s modules and Cargo.toml's `[[test]]`
/// paths (Cargo finds no test by itself: `autotests = false`).
fn test_targets(suite: &str, manifest: &str) -> (Vec<String>, Vec<String>) {
    let modules = suite
        .lines()
        .filter_map(|l| l.strip_prefix("mod ")?.strip_suffix(';'))
        .filter(|m| *m != "common")
        .map(|m| format!("tests/{m}.rs"))
        .collect();
    let paths = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("path = \"tests/")?.strip_suffix('"'))
        .map(|p| format!("tests/{p}"))
        .collect();
    (modules, paths)
}

/// Every file in `tests/` runs: as a module of the suite or as a target of its own, not
/// both, and nothing is listed that is not there.
#[test]
fn every_test_file_is_in_the_suite_or_a_target_of_its_own() {
    let root = common::repo();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let (modules, paths) = test_targets(&read("tests/suite.rs"), &read("Cargo.toml"));
    let mut files: Vec<String> = std::fs::read_dir(root.join("tests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rs"))
        .map(|n| format!("tests/{n}"))
        .collect();
    files.sort();
    let listed: Vec<&String> = modules.iter().chain(&paths).collect();
    let unlisted: Vec<&String> = files.iter().filter(|f| !listed.contains(f)).collect();
    assert!(
        unlisted.is_empty(),
        "not run: add to tests/suite.rs or Cargo.toml: {unlisted:?}"
    );
    let missing: Vec<&&String> = listed.iter().filter(|l| !files.contains(l)).collect();
    assert!(missing.is_empty(), "listed but not there: {missing:?}");
    let both: Vec<&String> = modules.iter().filter(|m| paths.contains(m)).collect();
    assert!(
        both.is_empty(),
        "in the suite and a target of its own: {both:?}"
    );
    assert!(paths.contains(&"tests/suite.rs".to_string()));
}

#[test]
fn the_target_check_reads_modules_and_paths() {
    let (m, p) = test_targets(
        "//! doc\nmod common;\n\nmod a;\nmod b;\n",
        "[[test]]\nname = \"x\"\npath = \"tests/x.rs\"\n[[bench]]\nname = \"q\"\n",
    );
    assert_eq!(m, ["tests/a.rs", "tests/b.rs"]);
    assert_eq!(p, ["tests/x.rs"]);
}
