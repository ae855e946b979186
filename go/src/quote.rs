//! `strconv.Quote`: how Go prints a string with `%q`.

/// `strconv.Quote` of a byte string (`%q` of `string(b)`): invalid UTF-8 bytes
/// become `\xNN`, non-printable characters Go escapes, the rest is kept.
pub fn quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    let mut rest = bytes;
    while !rest.is_empty() {
        let (ch, len) = match decode_utf8(rest) {
            Some(decoded) => decoded,
            None => {
                out.push_str(&format!("\\x{:02x}", rest[0]));
                rest = &rest[1..];
                continue;
            }
        };
        rest = &rest[len..];
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// The first UTF-8 character of `bytes` and its length, if it is valid.
fn decode_utf8(bytes: &[u8]) -> Option<(char, usize)> {
    let len = match bytes[0] {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return None,
    };
    let s = std::str::from_utf8(bytes.get(..len)?).ok()?;
    s.chars().next().map(|c| (c, len))
}

/// An approximation of Go's `unicode.IsPrint`: letters, marks, numbers,
/// punctuation, symbols and the ASCII space; no controls, other spaces or
/// format characters.
fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(c as u32,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e | 0x200b..=0x200f
        | 0x2028..=0x202e | 0x2060..=0x206f | 0xfeff | 0xfff9..=0xfffb
        | 0xd800..=0xdfff | 0xe000..=0xf8ff | 0xfffe | 0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_matches_go_strconv_quote() {
        let cases: &[(&[u8], &str)] = &[
            (b"foo", r#""foo""#),
            (b"a\x01b", r#""a\x01b""#),
            (b"tab\there\n", r#""tab\there\n""#),
            (b"q\"b\\", r#""q\"b\\""#),
            (b"\xff\xfe", r#""\xff\xfe""#),
            ("héllo ✓".as_bytes(), "\"héllo ✓\""),
            (b"\x7f", r#""\x7f""#),
            ("\u{a0}".as_bytes(), r#""\u00a0""#),
        ];
        for (input, want) in cases {
            assert_eq!(quote(input), *want, "quote({input:?})");
        }
    }
}
