//! The configuration's reference, made from the doc comments of [`super::file`] (through
//! their JSON schema): gtmd.toml(5) and the key tables of docs/configuration.md. A field's
//! doc comment is a first line `Default: …` and then its meaning, in Markdown.

use serde_json::Value;

/// The sections of the file, in the order they are told: key in [`super::file::File`],
/// title, and the name a table of the section goes by (`checks.NAME`).
const SECTIONS: [(&str, &str, Option<&str>); 12] = [
    ("server", "Server", None),
    ("zones", "Zones", Some("\"ZONE\"")),
    ("checks", "Checks", Some("NAME")),
    ("pools", "Pools and members", Some("NAME")),
    ("names", "Names", Some("\"FQDN\"")),
    ("regions", "Regions", Some("NAME")),
    ("geo", "Geography", None),
    ("admin", "Admin", None),
    ("alerts", "Alerts", None),
    ("rrl", "Response rate limiting", None),
    ("probe", "Probe", None),
    ("cluster", "Cluster", None),
];

/// One key of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// Where it is written: `server.listen`, `pools.NAME.members[].address`.
    pub path: String,
    /// Its TOML type, in words: `string`, `list of strings`, `integer or string`.
    pub kind: String,
    pub default: String,
    /// What it means, in Markdown.
    pub meaning: String,
}

/// One section of the file: `[server]`, `[checks.NAME]`.
#[derive(Debug, Clone)]
pub struct Section {
    pub title: String,
    /// What the section is for, in Markdown.
    pub about: String,
    pub keys: Vec<Key>,
}

/// Every section and key of the file, from its definitions.
pub fn sections() -> Vec<Section> {
    let schema = schemars::schema_for!(super::file::File);
    let root = schema.as_value();
    let props = &root["properties"];
    let told: Vec<&str> = SECTIONS.iter().map(|s| s.0).collect();
    if let Some(p) = props.as_object() {
        let untold: Vec<&String> = p.keys().filter(|k| !told.contains(&k.as_str())).collect();
        assert!(
            untold.is_empty(),
            "sections with no place in the reference: {untold:?}"
        );
    }
    SECTIONS
        .iter()
        .map(|(key, title, each)| {
            let field = &props[*key];
            let (_, about) = split_doc(field);
            let mut table = non_null(root, field);
            let mut prefix = (*key).to_string();
            if let Some(each) = each {
                table = resolve(root, &table["additionalProperties"]);
                prefix = format!("{prefix}.{each}");
            }
            let mut keys = Vec::new();
            walk(root, table, &prefix, &mut keys);
            Section {
                title: (*title).to_string(),
                about,
                keys,
            }
        })
        .collect()
}

/// The keys of `table` (an object schema) under `prefix`, and those of the tables inside.
fn walk(root: &Value, table: &Value, prefix: &str, out: &mut Vec<Key>) {
    let Some(props) = table["properties"].as_object() else {
        return;
    };
    for (name, field) in props {
        let (default, meaning) = split_doc(field);
        let path = format!("{prefix}.{name}");
        let field_type = non_null(root, field);
        out.push(Key {
            path: path.clone(),
            kind: kind(root, field_type),
            default,
            meaning,
        });
        for (inner, list) in tables_in(root, field_type, false) {
            let p = if list {
                format!("{path}[]")
            } else {
                path.clone()
            };
            walk(root, inner, &p, out);
        }
    }
}

/// The object schemas a field's type holds (itself, its list's items, its variants), and
/// whether each is reached through a list.
fn tables_in<'a>(root: &'a Value, t: &'a Value, list: bool) -> Vec<(&'a Value, bool)> {
    let t = resolve(root, t);
    if t.get("properties").is_some() {
        return vec![(t, list)];
    }
    if let Some(items) = t.get("items") {
        return tables_in(root, items, true);
    }
    variants(t)
        .into_iter()
        .flat_map(|v| tables_in(root, v, list))
        .collect()
}

fn variants(t: &Value) -> Vec<&Value> {
    ["anyOf", "oneOf"]
        .iter()
        .filter_map(|k| t[*k].as_array())
        .flatten()
        .collect()
}

/// `v`, or the schema its `$ref` names.
fn resolve<'a>(root: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str().and_then(|r| r.strip_prefix("#/$defs/")) {
        Some(name) => &root["$defs"][name],
        None => v,
    }
}

/// The type of an optional field without its `null`.
fn non_null<'a>(root: &'a Value, v: &'a Value) -> &'a Value {
    let v = resolve(root, v);
    let some: Vec<&Value> = variants(v)
        .into_iter()
        .filter(|x| x["type"] != "null")
        .collect();
    match some.as_slice() {
        [one] if v.get("anyOf").is_some() => resolve(root, one),
        _ => v,
    }
}

/// A type in words.
fn kind(root: &Value, t: &Value) -> String {
    let t = resolve(root, t);
    if let Some(words) = t["enum"].as_array() {
        let words: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
        return words.join(", ");
    }
    let consts: Vec<String> = variants(t)
        .iter()
        .filter_map(|v| v.get("const").map(|c| format!("`{c}`")))
        .collect();
    if !consts.is_empty() {
        return consts.join(", ");
    }
    let ty = match &t["type"] {
        Value::Array(a) => a.iter().find(|x| *x != "null").cloned().unwrap_or_default(),
        other => other.clone(),
    };
    match ty.as_str() {
        Some("array") => format!("list of {}", plural(&kind(root, &t["items"]))),
        Some("object") if t.get("properties").is_some() => "table".into(),
        Some("object") => format!(
            "table of {}",
            plural(&kind(root, &t["additionalProperties"]))
        ),
        Some("integer") | Some("number") => "integer".into(),
        Some(other) => other.into(),
        None => {
            let mut words: Vec<String> = variants(t)
                .into_iter()
                .filter(|v| v["type"] != "null")
                .map(|v| kind(root, v))
                .collect();
            words.dedup();
            words.join(" or ")
        }
    }
}

fn plural(word: &str) -> String {
    if word.contains(' ') {
        format!("({word})")
    } else {
        format!("{word}s")
    }
}

/// A field's doc comment split into its default (the first line, `Default: …`) and its
/// meaning (the rest, as one paragraph).
fn split_doc(field: &Value) -> (String, String) {
    let doc = field["description"].as_str().unwrap_or("");
    let (default, rest) = match doc.strip_prefix("Default: ") {
        Some(d) => d.split_once('\n').unwrap_or((d, "")),
        None => ("", doc),
    };
    let default = default.strip_suffix('.').unwrap_or(default);
    let meaning = rest.split_whitespace().collect::<Vec<_>>().join(" ");
    (default.to_string(), meaning)
}

/// The key tables of docs/configuration.md: a heading and a table per section.
pub fn markdown() -> String {
    let mut out = String::new();
    for s in sections() {
        out.push_str(&format!("## {}\n\n{}\n\n", s.title, s.about));
        out.push_str("| key | type | default | meaning |\n| --- | --- | --- | --- |\n");
        for k in &s.keys {
            let cell = |t: &str| t.replace('|', "\\|");
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                k.path,
                cell(&k.kind),
                cell(&k.default),
                cell(&k.meaning)
            ));
        }
        out.push('\n');
    }
    out
}

/// Markdown inline text as roff: code in bold, links as their text.
fn inlines(md: &str) -> Vec<roff::Inline> {
    let mut out = Vec::new();
    let mut rest = md;
    while !rest.is_empty() {
        let next = rest.find(['`', '[']).unwrap_or(rest.len());
        if next > 0 {
            out.push(roff::roman(&rest[..next]));
        }
        rest = &rest[next..];
        if let Some(code) = rest.strip_prefix('`') {
            let end = code.find('`').unwrap_or(code.len());
            out.push(roff::bold(&code[..end]));
            rest = code.get(end + 1..).unwrap_or("");
        } else if let Some(link) = rest.strip_prefix('[') {
            match (link.find("]("), link.find(')')) {
                (Some(a), Some(b)) if a < b => {
                    out.extend(inlines(&link[..a]));
                    rest = &link[b + 1..];
                }
                _ => {
                    out.push(roff::roman("["));
                    rest = link;
                }
            }
        }
    }
    out
}

/// gtmd.toml(5).
pub fn man_page(version: &str) -> String {
    use roff::{bold, roman, Roff};
    let mut page = Roff::new();
    page.control("TH", ["gtmd.toml", "5", "", version, "File Formats Manual"])
        .control("SH", ["NAME"])
        .text([roman("gtmd.toml - the configuration file of gtmd")])
        .control("SH", ["SYNOPSIS"])
        .text([bold("gtmd --config /etc/gtmd/gtmd.toml")])
        .control("SH", ["DESCRIPTION"])
        .text(inlines(
            DESCRIPTION
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .as_str(),
        ));
    for s in sections() {
        page.control("SH", [s.title.to_uppercase().as_str()])
            .text(inlines(&s.about));
        for k in &s.keys {
            let mut head = vec![bold(&k.path), roman(format!(" ({}", k.kind))];
            if !k.default.is_empty() {
                head.push(roman("; default: "));
                head.extend(inlines(&k.default));
            }
            head.push(roman(")"));
            page.control("TP", []).text(head).text(inlines(&k.meaning));
        }
    }
    page.control("SH", ["SEE ALSO"]).text([roman(
        "gtmd(8), gtmd-check-config(8), and /usr/share/doc/gtmd/docs/ for what the keys do.",
    )]);
    page.render()
}

const DESCRIPTION: &str = "One TOML file (`gtmd --config FILE`); without `--config`, the
    embedded sample configuration is used. Unknown keys are errors. `gtmd check-config FILE`
    checks the file and its zone files and exits 0 (valid) or 1; every error names the file,
    the line, the TOML path and what is allowed, and every error of the file is reported.
    Durations are strings with a unit: `\"300ms\"`, `\"1s\"`, `\"2m\"`. A name written
    without its final dot is taken as absolute.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_the_file_has_a_default_and_a_meaning() {
        let all: Vec<Key> = sections().into_iter().flat_map(|s| s.keys).collect();
        assert!(all.len() > 100, "{} keys", all.len());
        for k in &all {
            assert!(!k.default.is_empty(), "{} has no `Default:` line", k.path);
            assert!(!k.meaning.is_empty(), "{} has no meaning", k.path);
            assert!(!k.kind.is_empty(), "{} has no type", k.path);
        }
        let find = |p: &str| all.iter().find(|k| k.path == p).unwrap().clone();
        assert_eq!(find("server.listen").kind, "list of strings");
        assert_eq!(
            find("checks.NAME.type").kind,
            "`\"http\"`, `\"https\"`, `\"tcp\"`, `\"icmp\"`"
        );
        assert_eq!(find("pools.NAME.members[].address").kind, "string");
        assert_eq!(find("cluster.quorum").kind, "integer or string");
        assert_eq!(find("zones.\"ZONE\".dnssec.keys[].ksk").kind, "boolean");
    }

    #[test]
    fn markdown_code_and_links_become_roff_bold_and_text() {
        let page = {
            let mut r = roff::Roff::new();
            r.text(inlines("a `b` [c `d`](x.md#y) [e"));
            r.render()
        };
        assert!(page.contains("a \\fBb\\fR c \\fBd\\fR [e"), "{page}");
    }
}
