//! How much of a streamed answer to hold back: the trailing stretch that could still grow into
//! a value once the next chunk arrives, the text a number there still needs to be classified,
//! and no more.
//!
//! The policy scans the held text and the new chunk together ([`crate::stream_step`]): values
//! before the cut are released redacted, everything from the cut on is held and scanned again
//! with the next chunk. The cut never falls inside a unit a detector read (a value, or a
//! lookalike such as a bad-checksum IBAN), so a value is released only whole, and only as the
//! whole text would have it.

use crate::detect::{self, CONTEXT_BYTES};

/// Most text held back, in bytes (the host allows 4 KiB).
pub const MAX_HOLD: usize = 3072;

/// Bytes that can be part of a value some detector reports (non-ASCII: email local parts and
/// domains).
fn value_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"@._%+-():'".contains(&c) || c >= 0x80
}

/// Whether `t` (the end of the text) could be the start of an IBAN: two letters, two digits,
/// then letters and digits, compact or in groups of four with single spaces, at most 34.
fn iban_prefix(t: &[u8]) -> bool {
    let mut chars = 0;
    let mut k = 0;
    while k < t.len() {
        let c = t[k];
        let ok = match chars {
            0 | 1 => c.is_ascii_alphabetic(),
            2 | 3 => c.is_ascii_digit(),
            _ => c.is_ascii_alphanumeric(),
        };
        if ok {
            chars += 1;
        } else if c == b' ' && chars >= 4 && chars % 4 == 0 && t[k - 1] != b' ' {
            // a single space after a full group
        } else {
            return false;
        }
        if chars > 34 {
            return false;
        }
        k += 1;
    }
    true
}

/// The earliest start of an IBAN prefix that runs to the end of `b`.
fn iban_start(b: &[u8]) -> Option<usize> {
    let from = b.len().saturating_sub(34 + 8);
    (from..b.len()).find(|&p| {
        (p == 0 || !b[p - 1].is_ascii_alphanumeric())
            && b[p].is_ascii_alphabetic()
            && iban_prefix(&b[p..])
    })
}

/// The start of the word holding byte `at`: just after the whitespace before it.
fn word_start(b: &[u8], at: usize) -> usize {
    let mut p = at;
    while p > 0 && !b[p - 1].is_ascii_whitespace() {
        p -= 1;
    }
    p
}

/// Where a number could start at `p`: a digit, or `+`/`(` before one (or at the end, where
/// one may still come), not inside a word.
fn number_start(b: &[u8], p: usize) -> bool {
    let c = b[p];
    let starts = c.is_ascii_digit()
        || ((c == b'+' || c == b'(') && b.get(p + 1).is_none_or(u8::is_ascii_digit));
    starts && (p == 0 || !b[p - 1].is_ascii_alphanumeric())
}

/// The byte offset where the held tail of `text` starts: everything before it can be released
/// now. `units` are the spans a scan of `text` read as one unit ([`detect::Scan::units`]).
pub fn hold_point(text: &str, units: &[(usize, usize)]) -> usize {
    let b = text.as_bytes();
    // The trailing stretch of value bytes, and spaces after digits (a phone, card or SSN in
    // groups; a word after a number decides whether it is a phone or an address).
    let mut i = b.len();
    while i > 0 {
        let c = b[i - 1];
        let joins = c == b' ' && i >= 2 && (b[i - 2].is_ascii_digit() || b[i - 2] == b')');
        if value_byte(c) || joins {
            i -= 1;
        } else {
            break;
        }
    }
    // A grouped IBAN has letters after spaces: `GB82 WEST 12`.
    if let Some(p) = iban_start(b) {
        i = i.min(p);
    }
    // A spaced number is judged by the words after it in its clause: hold it while fewer than
    // all of them have arrived (the last may still grow).
    let clause = text
        .char_indices()
        .rev()
        .find(|&(_, c)| detect::ends_clause(c))
        .map_or(0, |(p, c)| p + c.len_utf8());
    let words: Vec<(usize, &str)> = text[clause..]
        .split_whitespace()
        .map(|w| (w.as_ptr() as usize - text.as_ptr() as usize, w))
        .collect();
    let recent = words.len().saturating_sub(detect::LOOKAHEAD_WORDS + 1);
    if let Some(&(p, _)) = words[recent..]
        .iter()
        .find(|(_, w)| w.ends_with(|c: char| c.is_ascii_digit() || c == ')'))
    {
        i = i.min(p);
    }
    // A context word in the last stretch would be read by a number that has not arrived yet.
    if detect::has_context_before(text, b.len()) {
        i = i.min(word_start(b, b.len().saturating_sub(CONTEXT_BYTES)));
    }
    let floor = b.len().saturating_sub(MAX_HOLD);
    i = i.max(floor);
    loop {
        let mut cut = i;
        // A number whose classification reads context words before it keeps them with it.
        let reads_context = (cut..b.len().min(cut + CONTEXT_BYTES))
            .find(|&p| number_start(b, p) && detect::has_context_before(text, p));
        if let Some(p) = reads_context
            && cut > 0
        {
            cut = word_start(b, p.saturating_sub(CONTEXT_BYTES));
        }
        // Never inside a unit, nor right after a byte that changes how the held text starts
        // (a number after `:` or `/` is not one, an IPv4 after `.` is not one).
        loop {
            if let Some(&(s, _)) = units.iter().find(|&&(s, e)| s < cut && cut < e) {
                cut = s;
            } else if cut > 0 && (value_byte(b[cut - 1]) || b[cut - 1] == b'/') {
                cut -= 1;
            } else {
                break;
            }
        }
        cut = cut.max(floor);
        if cut >= i {
            break;
        }
        i = cut;
    }
    let mut cut = i;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(text: &str) -> &str {
        &text[hold_point(text, &detect::scan(text).units)..]
    }

    #[test]
    fn holds_the_stretch_that_could_still_be_a_value() {
        assert_eq!(held("write to bob@exa"), "bob@exa");
        assert_eq!(held("please, +41 (0)38 549"), "+41 (0)38 549");
        assert_eq!(held("so 415 "), "415 ");
        assert_eq!(held("so 415 555 2671 to"), "415 555 2671 to");
        // Until three words have come after a number, an address word may still follow.
        assert_eq!(
            held("so 415 555 2671 or email ap"),
            "415 555 2671 or email ap"
        );
        assert_eq!(held("so 415 555 2671 or email to a"), "a");
        assert_eq!(held("the weather is fine. "), "");
        assert_eq!(held("the weather is"), "is");
        assert_eq!(held("ends with ünï"), "ünï");
        assert_eq!(held("ends with ünï. "), "");
    }

    #[test]
    fn holds_a_grouped_iban_from_its_country_code() {
        assert_eq!(held("pay GB82 WEST 1234 5"), "GB82 WEST 1234 5");
        assert_eq!(held("pay it60 x054 "), "it60 x054 ");
        assert_eq!(held("pay NL91ABNA04"), "NL91ABNA04");
        assert_eq!(held("pay GB82 WEST 1234 5698 7654 32. Now"), "Now");
        // A word right after a number stays with it until the word is whole.
        assert_eq!(
            held("pay GB82 WEST 1234 5698 7654 32 no"),
            "GB82 WEST 1234 5698 7654 32 no"
        );
    }

    #[test]
    fn holds_the_words_a_number_is_classified_by() {
        // "order" makes the number something else than a phone: it stays with the number.
        let text = "the order number is 415-555";
        assert_eq!(held(text), text);
        // No context word: only the number.
        assert_eq!(held("the value is 415-555"), "415-555");
        // The words a number still to come will read.
        assert_eq!(
            held("a long enough sentence, then the order number is "),
            "enough sentence, then the order number is "
        );
    }

    #[test]
    fn never_holds_more_than_the_limit() {
        let long = "a".repeat(10_000);
        assert_eq!(held(&long).len(), MAX_HOLD);
    }
}
