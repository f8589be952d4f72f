//! Errors that point into one configuration text: [`Ctx`] finds the line of a TOML path
//! and keeps the errors of parts checked on their own, so that every error is reported.

use std::time::Duration;

use super::ConfigError;

/// Builds errors that point into one configuration text.
pub(super) struct Ctx<'a> {
    pub(super) source: &'a str,
    /// The text parsed again, with the spans of its keys and values, the first time an error
    /// needs a line: a valid configuration is parsed once (a million members' document
    /// takes gigabytes).
    pub(super) doc: std::cell::OnceCell<Option<toml_edit::ImDocument<&'a str>>>,
    pub(super) text: &'a str,
    /// The errors found so far by parts checked independently (see [`Ctx::keep`]).
    pub(super) errors: std::cell::RefCell<Vec<ConfigError>>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(source: &'a str, text: &'a str) -> Self {
        Ctx {
            source,
            doc: std::cell::OnceCell::new(),
            text,
            errors: Default::default(),
        }
    }

    pub(super) fn err(&self, path: &str, msg: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.source.to_string(),
            line: self.line_of(path),
            path: path.to_string(),
            msg: msg.into(),
            also: Vec::new(),
        }
    }

    /// The value of a part checked on its own, or `None` with its error kept, so that the
    /// parts after it are checked too and every error is reported.
    pub(super) fn keep<T>(&self, r: Result<T, ConfigError>) -> Option<T> {
        r.map_err(|e| self.errors.borrow_mut().push(e)).ok()
    }

    /// Every error kept, in file order (those without a line last), as one.
    pub(super) fn finish(&self) -> Result<(), ConfigError> {
        let mut all = std::mem::take(&mut *self.errors.borrow_mut());
        if all.is_empty() {
            return Ok(());
        }
        all.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        let mut first = all.remove(0);
        first.also = all;
        Err(first)
    }

    /// The line of the deepest part of `path` (`a.b[2].c`) found in the document.
    pub(super) fn line_of(&self, path: &str) -> Option<usize> {
        let doc = self
            .doc
            .get_or_init(|| toml_edit::ImDocument::parse(self.text).ok())
            .as_ref()?;
        let mut item = doc.as_item();
        let mut span = None;
        for seg in split_path(path) {
            let next = match seg {
                Seg::Key(k) => item.get(k.as_str()),
                Seg::Index(i) => item.get(i),
            };
            let Some(next) = next else { break };
            item = next;
            span = item.span().or(span);
        }
        span.map(|s| line_at(self.text, s.start))
    }
}

enum Seg {
    Key(String),
    Index(usize),
}

/// Splits `names."app.example.".pools[0]` into its keys and indexes.
fn split_path(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut chars = path.chars().peekable();
    let mut cur = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                for n in chars.by_ref() {
                    if n == '"' {
                        break;
                    }
                    cur.push(n);
                }
            }
            '.' | '[' => {
                if !cur.is_empty() {
                    out.push(Seg::Key(std::mem::take(&mut cur)));
                }
                if c == '[' {
                    let idx: String = chars.by_ref().take_while(|&n| n != ']').collect();
                    out.push(Seg::Index(idx.parse().unwrap_or(0)));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(Seg::Key(cur));
    }
    out
}

pub(super) fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// A deserializer's path written as the other errors write theirs: `names."a.example.".type`.
pub(super) fn toml_path(p: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in p.iter() {
        match seg {
            Segment::Seq { index } => out += &format!("[{index}]"),
            Segment::Map { key: k } | Segment::Enum { variant: k } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out += &key(k);
            }
            Segment::Unknown => out += if out.is_empty() { "?" } else { ".?" },
        }
    }
    if out.is_empty() {
        ".".into()
    } else {
        out
    }
}

/// Quotes a TOML key when it is not a bare key.
pub(super) fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        k.to_string()
    } else {
        format!("{k:?}")
    }
}

/// A duration such as `500ms`, `1s` or `2m`.
pub(super) fn duration(
    cx: &Ctx,
    path: &str,
    v: Option<&String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => humantime::parse_duration(s).map_err(|e| {
            cx.err(
                path,
                format!("{s:?} is not a duration ({e}); write e.g. \"500ms\", \"1s\", \"2m\""),
            )
        }),
    }
}
