//! The master-file lexer: text into entries (one record or directive each), with the line each
//! starts on, parentheses joined, comments dropped, and quoted strings kept as written.

use std::path::Path;

use super::{err, ZoneError};

/// One token of a master file, as written (a quoted string keeps its quotes and escapes).
#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) text: String,
}

/// One logical entry: the tokens of a record or directive, which line it starts on, and
/// whether it started with white space (the owner is inherited).
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) line: usize,
    pub(super) blank_owner: bool,
    pub(super) tokens: Vec<Token>,
}

/// Splits master-file text into entries, joining parenthesized lines (RFC 1035 section 5.1).
pub(super) fn lex(text: &str, file: &Path) -> Result<Vec<Entry>, ZoneError> {
    let mut lx = Lexer {
        chars: text.chars().peekable(),
        line: 1,
    };
    let mut entries = Vec::new();
    let mut cur: Option<Entry> = None;
    let mut depth = 0usize;
    let mut open_line = 0;
    let mut at_line_start = true;
    while let Some(c) = lx.chars.next() {
        if at_line_start && depth == 0 {
            cur = Some(Entry {
                line: lx.line,
                blank_owner: c == ' ' || c == '\t',
                tokens: Vec::new(),
            });
        }
        at_line_start = false;
        match c {
            '\n' => {
                lx.line += 1;
                if depth == 0 {
                    entries.extend(cur.take().filter(|e| !e.tokens.is_empty()));
                    at_line_start = true;
                }
            }
            ' ' | '\t' | '\r' => {}
            ';' => lx.skip_comment(),
            '(' => {
                if depth == 0 {
                    open_line = lx.line;
                }
                depth += 1;
            }
            ')' if depth == 0 => return Err(err(file, lx.line, "')' without a matching '('")),
            ')' => depth -= 1,
            '"' => {
                let start = lx.line;
                let text = lx
                    .quoted()
                    .ok_or_else(|| err(file, start, "unterminated quoted string"))?;
                push_token(&mut cur, text);
            }
            _ => {
                let text = lx.word(c);
                push_token(&mut cur, text);
            }
        }
    }
    if depth > 0 {
        return Err(err(file, open_line, "'(' is never closed"));
    }
    entries.extend(cur.filter(|e| !e.tokens.is_empty()));
    Ok(entries)
}

/// The character stream of a master file and the line it is on.
struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
}

impl Lexer<'_> {
    fn skip_comment(&mut self) {
        while self.chars.peek().is_some_and(|&c| c != '\n') {
            self.chars.next();
        }
    }

    /// The rest of a quoted string (the opening quote was read), quotes and escapes kept.
    fn quoted(&mut self) -> Option<String> {
        let mut s = String::from('"');
        loop {
            let c = self.chars.next()?;
            self.line += usize::from(c == '\n');
            s.push(c);
            match c {
                '\\' => {
                    let n = self.chars.next()?;
                    self.line += usize::from(n == '\n');
                    s.push(n);
                }
                '"' => return Some(s),
                _ => {}
            }
        }
    }

    /// A word starting with `first`, up to white space or a special character.
    fn word(&mut self, first: char) -> String {
        let mut s = String::new();
        let mut c = first;
        loop {
            s.push(c);
            if c == '\\' {
                if let Some(n) = self.chars.next() {
                    s.push(n);
                }
            }
            match self.chars.peek() {
                Some(&n) if !matches!(n, ' ' | '\t' | '\r' | '\n' | ';' | '(' | ')' | '"') => {
                    c = n;
                    self.chars.next();
                }
                _ => return s,
            }
        }
    }
}

fn push_token(cur: &mut Option<Entry>, text: String) {
    if let Some(e) = cur {
        e.tokens.push(Token { text });
    }
}
