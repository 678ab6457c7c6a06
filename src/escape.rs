//! Untrusted text made safe to show people: a process names itself, a
//! policy names files and rules, and none of it may drive the terminal that
//! reads reflex's output. Control characters (C0, DEL, C1) are shown
//! escaped (`\x1b`, `\n`, `\u{9b}`); everything else is left as it is.

use std::borrow::Cow;

/// `text` with its control characters escaped, and backslashes doubled when
/// anything was (so that an escape cannot be forged).
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert!(matches!(escape("strace"), Cow::Borrowed("strace")));
        assert_eq!(
            escape("\x1b[2J\x1b[31mX\x1b]0;T"),
            "\\x1b[2J\\x1b[31mX\\x1b]0;T"
        );
        assert_eq!(escape("a\nb\u{9b}c\\"), "a\\nb\\u{9b}c\\\\");
        assert_eq!(escape("ünïcode ok"), "ünïcode ok");
    }
}
