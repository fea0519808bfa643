//! How much of a streamed answer to hold back: the trailing stretch that could still grow into
//! a value once the next chunk arrives, and no more.

/// Most text held back, in bytes (the host allows 4 KiB).
pub const MAX_HOLD: usize = 3072;

/// Bytes that can be part of a value some detector reports.
fn value_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"@._%+-():'".contains(&c)
}

/// A space inside a value: between digit groups of a phone or card number.
fn joins(before: u8, after: Option<u8>) -> bool {
    let before_ok = before.is_ascii_digit() || before == b')';
    let after_ok = after.is_none_or(|c| c.is_ascii_digit() || c == b'(' || c == b'+' || c == b'x');
    before_ok && after_ok
}

/// The byte offset where the held tail of `text` starts: everything before it can be scanned
/// and released now, because no value can cross it.
pub fn hold_point(text: &str) -> usize {
    let b = text.as_bytes();
    let mut i = b.len();
    while i > 0 {
        let c = b[i - 1];
        if value_byte(c) || (c == b' ' && i >= 2 && joins(b[i - 2], b.get(i).copied())) {
            i -= 1;
        } else {
            break;
        }
    }
    let mut cut = i.max(b.len().saturating_sub(MAX_HOLD));
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(text: &str) -> &str {
        &text[hold_point(text)..]
    }

    #[test]
    fn holds_the_stretch_that_could_still_be_a_value() {
        assert_eq!(held("write to bob@exa"), "bob@exa");
        assert_eq!(held("call +41 (0)38 549"), "+41 (0)38 549");
        assert_eq!(held("call 415 "), "415 ");
        assert_eq!(held("card 4111 1111 11"), "4111 1111 11");
        assert_eq!(held("the weather is fine. "), "");
        assert_eq!(held("the weather is"), "is");
        assert_eq!(held("ends with ünï"), "");
    }

    #[test]
    fn never_holds_more_than_the_limit() {
        let long = "a".repeat(10_000);
        assert_eq!(held(&long).len(), MAX_HOLD);
    }
}
