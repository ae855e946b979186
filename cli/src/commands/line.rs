//! Line input as etcdctl reads it (`txn` and `watch -i`).
//!
//! etcdctl splits a line with the regexp
//! `"(?:[^"\\]|\\.)*"|'[^']*'|[^'"\s]\S*[^'"\s]?` and unquotes Go-style
//! double-quoted words; [`argify`] reproduces that by hand. [`GoScanner`] is the
//! small part of Go's `fmt.Sscanf` that `txn` compares are parsed with.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use crate::error::CtlError;

/// RE2's `\s`: ASCII space, tab, newline, form feed, carriage return.
fn is_re2_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0c' | b'\r')
}

/// etcdctl's `argify`: words, `'single quoted'` and `"Go quoted"` strings.
///
/// A difference on purpose: etcdctl strips single quotes with a slicing bug
/// (`args[i][1 : len(args)-1]`, the number of words instead of the word's
/// length) that mangles or crashes; hubctl strips them properly.
pub fn argify(line: &[u8]) -> Result<Vec<OsString>, CtlError> {
    let mut words = Vec::new();
    let mut i = 0;
    while i < line.len() {
        let c = line[i];
        if c == b'"' {
            if let Some(end) = double_quoted_end(line, i) {
                let unquoted = unquote(&line[i..end]).ok_or_else(|| CtlError::invalid_input("invalid syntax"))?;
                words.push(OsString::from_vec(unquoted));
                i = end;
                continue;
            }
        } else if c == b'\'' {
            if let Some(close) = line[i + 1..].iter().position(|&b| b == b'\'') {
                words.push(OsString::from_vec(line[i + 1..i + 1 + close].to_vec()));
                i = i + close + 2;
                continue;
            }
        } else if !is_re2_space(c) {
            let end = line[i..].iter().position(|&b| is_re2_space(b)).map_or(line.len(), |p| i + p);
            words.push(OsString::from_vec(line[i..end].to_vec()));
            i = end;
            continue;
        }
        i += 1;
    }
    Ok(words)
}

/// End (exclusive) of a `"..."` token starting at `start`, backslash escapes included.
fn double_quoted_end(line: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < line.len() {
        match line[i] {
            b'"' => return Some(i + 1),
            b'\\' if i + 1 < line.len() && line[i + 1] != b'\n' => i += 2,
            b'\\' => return None,
            _ => i += 1,
        }
    }
    None
}

/// Go's `strconv.Unquote` for a double-quoted literal (quotes included).
pub fn unquote(quoted: &[u8]) -> Option<Vec<u8>> {
    let inner = quoted.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    let hex = |s: &[u8]| -> Option<u32> { u32::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok() };
    while i < inner.len() {
        let c = inner[i];
        if c == b'"' || c == b'\n' {
            return None;
        }
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let esc = *inner.get(i + 1)?;
        i += 2;
        match esc {
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'\\' => out.push(b'\\'),
            b'"' => out.push(b'"'),
            b'x' => {
                let v = hex(inner.get(i..i + 2)?)?;
                out.push(v as u8);
                i += 2;
            }
            b'0'..=b'7' => {
                let digits = inner.get(i - 1..i + 2)?;
                let v = u32::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok()?;
                out.push(u8::try_from(v).ok()?);
                i += 2;
            }
            b'u' | b'U' => {
                let n = if esc == b'u' { 4 } else { 8 };
                let ch = char::from_u32(hex(inner.get(i..i + n)?)?)?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                i += n;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Just enough of Go's `fmt` scanning for `Sscanf(s, "%q) %s %q", ...)`:
/// verbs skip leading spaces, a space in the format needs at least one space
/// (or the end) in the input, other format characters must match exactly.
pub struct GoScanner<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> GoScanner<'a> {
    pub fn new(input: &'a [u8]) -> Self {
        GoScanner { input, pos: 0 }
    }

    fn skip_spaces(&mut self) {
        while self.pos < self.input.len() && matches!(self.input[self.pos], b' ' | b'\t' | b'\r') {
            self.pos += 1;
        }
    }

    /// `%q`: a `"double quoted"` (Go escapes) or `` `raw` `` string.
    pub fn quoted(&mut self) -> Option<Vec<u8>> {
        self.skip_spaces();
        let rest = &self.input[self.pos..];
        match rest.first()? {
            b'`' => {
                let close = rest[1..].iter().position(|&b| b == b'`')?;
                self.pos += close + 2;
                Some(rest[1..1 + close].to_vec())
            }
            b'"' => {
                let end = double_quoted_end(rest, 0)?;
                let value = unquote(&rest[..end])?;
                self.pos += end;
                Some(value)
            }
            _ => None,
        }
    }

    /// `%s`: a run of non-space characters (at least one).
    pub fn word(&mut self) -> Option<String> {
        self.skip_spaces();
        let rest = &self.input[self.pos..];
        let len = rest.iter().position(|b| b.is_ascii_whitespace()).unwrap_or(rest.len());
        if len == 0 {
            return None;
        }
        self.pos += len;
        Some(String::from_utf8_lossy(&rest[..len]).into_owned())
    }

    /// A literal format character.
    pub fn literal(&mut self, c: u8) -> Option<()> {
        if self.input.get(self.pos) == Some(&c) {
            self.pos += 1;
            Some(())
        } else {
            None
        }
    }

    /// A space in the format: one or more spaces, or the end of input.
    pub fn space(&mut self) -> Option<()> {
        match self.input.get(self.pos) {
            None => Some(()),
            Some(b' ' | b'\t' | b'\r') => {
                self.skip_spaces();
                Some(())
            }
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        match argify(line.as_bytes()) {
            Ok(w) => w.into_iter().map(|w| w.to_string_lossy().into_owned()).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn argify_splits_like_etcdctl() {
        assert_eq!(words("put foo bar"), ["put", "foo", "bar"]);
        assert_eq!(words(r#"put "a b" "c\"d""#), ["put", "a b", "c\"d"]);
        assert_eq!(words("put 'a b' c"), ["put", "a b", "c"]);
        assert_eq!(words("  get   k  --prefix "), ["get", "k", "--prefix"]);
        assert_eq!(words(r#"put k "\x41\n""#), ["put", "k", "A\n"]);
        assert!(argify(br#"put k "\q""#).is_err());
    }

    #[test]
    fn scanner_reads_a_compare() {
        let mut s = GoScanner::new(br#""k1") > "0""#);
        assert_eq!(s.quoted(), Some(b"k1".to_vec()));
        assert_eq!(s.literal(b')'), Some(()));
        assert_eq!(s.space(), Some(()));
        assert_eq!(s.word().as_deref(), Some(">"));
        assert_eq!(s.space(), Some(()));
        assert_eq!(s.quoted(), Some(b"0".to_vec()));
    }
}
