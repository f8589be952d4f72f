//! The master-file lexer: text into entries (one record or directive each), with the line each
//! starts on, parentheses joined, comments dropped, and quoted strings kept as written.

use std::path::Path;

use super::{err, ZoneError};

/// One logical entry: the tokens of a record or directive, which line it starts on, and
/// whether it started with white space (the owner is inherited). Each token is a slice of the
/// file's text as written (a quoted string keeps its quotes and escapes).
#[derive(Debug)]
pub(super) struct Entry<'a> {
    pub(super) line: usize,
    pub(super) blank_owner: bool,
    pub(super) tokens: Vec<&'a str>,
}

/// Splits master-file text into entries, joining parenthesized lines (RFC 1035 section 5.1),
/// and hands each to `each` as it is found; the first error, the lexer's or `each`'s, ends it.
pub(super) fn lex<'a>(
    text: &'a str,
    file: &Path,
    mut each: impl FnMut(&Entry<'a>) -> Result<(), ZoneError>,
) -> Result<(), ZoneError> {
    // Every character that ends or starts a token is ASCII, so byte positions found here
    // are character boundaries.
    let b = text.as_bytes();
    let mut line = 1usize;
    // One entry, its tokens' room reused from one entry to the next.
    let mut cur = Entry {
        line,
        blank_owner: false,
        tokens: Vec::with_capacity(16),
    };
    let mut depth = 0usize;
    let mut open_line = 0;
    let mut at_line_start = true;
    let mut i = 0usize;
    while i < b.len() {
        let c = b[i];
        if at_line_start && depth == 0 {
            cur.line = line;
            cur.blank_owner = c == b' ' || c == b'\t';
            cur.tokens.clear();
        }
        at_line_start = false;
        match c {
            b'\n' => {
                i += 1;
                line += 1;
                if depth == 0 {
                    if !cur.tokens.is_empty() {
                        each(&cur)?;
                        cur.tokens.clear();
                    }
                    at_line_start = true;
                }
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b';' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' => {
                if depth == 0 {
                    open_line = line;
                }
                depth += 1;
                i += 1;
            }
            b')' if depth == 0 => return Err(err(file, line, "')' without a matching '('")),
            b')' => {
                depth -= 1;
                i += 1;
            }
            b'"' => {
                // The rest of a quoted string, quotes and escapes kept.
                let start = i;
                i = quoted_end(b, i, &mut line)
                    .ok_or_else(|| err(file, line, "unterminated quoted string"))?;
                cur.tokens.push(&text[start..i]);
            }
            _ => {
                let start = i;
                i = word_end(b, i);
                cur.tokens.push(&text[start..i.min(b.len())]);
            }
        }
    }
    if depth > 0 {
        return Err(err(file, open_line, "'(' is never closed"));
    }
    if !cur.tokens.is_empty() {
        each(&cur)?;
    }
    Ok(())
}

/// Where the quoted string that starts at `b[i]` ends (just past its closing quote), counting
/// the new lines it holds in `line`; None (`line` untouched) when it is never closed.
#[inline]
fn quoted_end(b: &[u8], mut i: usize, line: &mut usize) -> Option<usize> {
    let mut at = *line;
    i += 1;
    loop {
        let &q = b.get(i)?;
        i += 1;
        at += usize::from(q == b'\n');
        match q {
            b'\\' => {
                let &n = b.get(i)?;
                at += usize::from(n == b'\n');
                i += char_len(n);
            }
            b'"' => break,
            _ => {}
        }
    }
    *line = at;
    Some(i)
}

/// Where the word that starts at `b[i]` ends: at white space or a special character; a
/// backslash takes the character after it, whatever it is.
#[inline]
fn word_end(b: &[u8], mut i: usize) -> usize {
    loop {
        let w = b[i];
        i += 1;
        if w == b'\\' && i < b.len() {
            i += char_len(b[i]);
        }
        match b.get(i) {
            Some(n) if !matches!(n, b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' | b'"') => {}
            _ => return i,
        }
    }
}

/// The length in bytes of the UTF-8 character that starts with `first`.
fn char_len(first: u8) -> usize {
    match first {
        0xf0.. => 4,
        0xe0.. => 3,
        0xc0.. => 2,
        _ => 1,
    }
}
