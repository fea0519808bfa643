//! The detectors: hand-written scanners with checksums where the format has one (Luhn for
//! cards, mod-97 for IBANs), and context rules for phone numbers, whose formats overlap with
//! street numbers, postal codes, dates and ids.
//!
//! Detectors run in a fixed order (secrets, emails, IBANs, IP addresses, then numbers: SSN,
//! card, phone) and a later detector never reports text an earlier one claimed. Offsets are
//! byte offsets into the scanned text.

/// What a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Email,
    Phone,
    Ssn,
    CreditCard,
    Iban,
    IpAddress,
    Secret,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 7] = [
        Kind::Email,
        Kind::Phone,
        Kind::Ssn,
        Kind::CreditCard,
        Kind::Iban,
        Kind::IpAddress,
        Kind::Secret,
    ];

    /// The name used in config and events.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::Ssn => "ssn",
            Kind::CreditCard => "credit_card",
            Kind::Iban => "iban",
            Kind::IpAddress => "ip_address",
            Kind::Secret => "secret",
        }
    }

    /// The text that replaces a redacted value.
    pub fn marker(self) -> &'static str {
        match self {
            Kind::Email => "[EMAIL_REDACTED]",
            Kind::Phone => "[PHONE_REDACTED]",
            Kind::Ssn => "[SSN_REDACTED]",
            Kind::CreditCard => "[CREDIT_CARD_REDACTED]",
            Kind::Iban => "[IBAN_REDACTED]",
            Kind::IpAddress => "[IP_ADDRESS_REDACTED]",
            Kind::Secret => "[SECRET_REDACTED]",
        }
    }

    /// Parse a config name.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// One detected value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset just past the last byte.
    pub end: usize,
}

/// Longest value any detector reports, in bytes (JWTs are the longest). Streaming holds back
/// at most this much.
pub const MAX_SPAN: usize = 2048;

/// Every finding in `text`, in order of position, non-overlapping.
pub fn detect(text: &str) -> Vec<Finding> {
    let b = text.as_bytes();
    let mut found: Vec<Finding> = Vec::new();
    let add = |found: &mut Vec<Finding>, f: Finding| {
        if !found.iter().any(|g| g.start < f.end && f.start < g.end) {
            found.push(f);
        }
    };
    // Most text has no `@` and many prompts no digit: one cheap pass decides which detectors
    // can possibly match, so plain prose costs little more than a scan.
    let has_at = b.contains(&b'@');
    let has_digit = b.iter().any(u8::is_ascii_digit);
    let has_colons = b.windows(2).any(|w| w == b"::");
    for f in secrets(b) {
        add(&mut found, f);
    }
    if has_at {
        for f in emails(b) {
            add(&mut found, f);
        }
    }
    if has_digit {
        for f in ibans(b) {
            add(&mut found, f);
        }
    }
    if has_digit || has_colons {
        for f in ip_addresses(text) {
            add(&mut found, f);
        }
    }
    if has_digit {
        for f in numbers(text) {
            add(&mut found, f);
        }
    }
    found.sort_by_key(|f| f.start);
    found
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

// ---- secrets -----------------------------------------------------------------------------

fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

fn secrets(b: &[u8]) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if i > 0 && is_token_char(b[i - 1]) && b[i - 1] != b'-' {
            i += 1;
            continue;
        }
        let rest = &b[i..];
        let run = rest.iter().take_while(|&&c| is_token_char(c)).count();
        let token = &rest[..run];
        let hit = if token.starts_with(b"sk-ant-") {
            run >= 7 + 20
        } else if token.starts_with(b"sk-") {
            // OpenAI keys: sk-..., sk-proj-..., sk-svcacct-...; long and mixed.
            run >= 3 + 20 && token[3..].iter().any(u8::is_ascii_digit)
        } else if token.starts_with(b"AKIA") || token.starts_with(b"ASIA") {
            run == 20
                && token
                    .iter()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        } else if [&b"ghp_"[..], b"gho_", b"ghu_", b"ghs_", b"ghr_"]
            .iter()
            .any(|p| token.starts_with(p))
        {
            run >= 4 + 30
        } else if token.starts_with(b"github_pat_") {
            run >= 11 + 20
        } else {
            false
        };
        if hit {
            out.push(Finding {
                kind: Kind::Secret,
                start: i,
                end: i + run,
            });
            i += run;
            continue;
        }
        if let Some(len) = jwt_at(rest) {
            out.push(Finding {
                kind: Kind::Secret,
                start: i,
                end: i + len,
            });
            i += len;
            continue;
        }
        i += run.max(1);
    }
    out
}

/// A JWT: three base64url segments, the first two JSON objects (`eyJ`).
fn jwt_at(b: &[u8]) -> Option<usize> {
    if !b.starts_with(b"eyJ") {
        return None;
    }
    let seg = |from: usize| {
        b[from..]
            .iter()
            .take_while(|&&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
            .count()
    };
    let first = seg(0);
    if first < 10 || b.get(first) != Some(&b'.') || !b[first + 1..].starts_with(b"eyJ") {
        return None;
    }
    let second = seg(first + 1);
    let third_at = first + 1 + second;
    if second < 10 || b.get(third_at) != Some(&b'.') {
        return None;
    }
    let third = seg(third_at + 1);
    (third >= 10)
        .then_some(third_at + 1 + third)
        .filter(|&n| n <= MAX_SPAN)
}

// ---- emails ------------------------------------------------------------------------------

fn is_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"._%+-'".contains(&c)
}

fn is_domain(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'.' || c == b'-'
}

fn emails(b: &[u8]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (at, _) in b.iter().enumerate().filter(|(_, c)| **c == b'@') {
        let mut start = at;
        while start > 0 && is_local(b[start - 1]) && at - start < 64 {
            start -= 1;
        }
        while start < at && !b[start].is_ascii_alphanumeric() {
            start += 1;
        }
        let mut end = at + 1;
        while end < b.len() && is_domain(b[end]) && end - at < 255 {
            end += 1;
        }
        while end > at + 1 && !b[end - 1].is_ascii_alphanumeric() {
            end -= 1;
        }
        if start == at || end <= at + 1 {
            continue;
        }
        let domain = &b[at + 1..end];
        let Some(dot) = domain.iter().rposition(|&c| c == b'.') else {
            continue;
        };
        let tld = &domain[dot + 1..];
        if tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic) && dot > 0 {
            out.push(Finding {
                kind: Kind::Email,
                start,
                end,
            });
        }
    }
    out
}

// ---- IBANs -------------------------------------------------------------------------------

fn ibans(b: &[u8]) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 4 <= b.len() {
        let starts = (i == 0 || !b[i - 1].is_ascii_alphanumeric())
            && b[i].is_ascii_alphabetic()
            && b[i + 1].is_ascii_alphabetic()
            && b[i + 2].is_ascii_digit()
            && b[i + 3].is_ascii_digit();
        if !starts {
            i += 1;
            continue;
        }
        // Collect alphanumerics, allowing single spaces between groups (printed IBANs).
        let mut chars: Vec<u8> = Vec::with_capacity(34);
        let mut end = i;
        let mut j = i;
        while j < b.len() && chars.len() < 34 {
            if b[j].is_ascii_alphanumeric() {
                chars.push(b[j].to_ascii_uppercase());
                j += 1;
                end = j;
            } else if b[j] == b' '
                && j + 1 < b.len()
                && b[j + 1].is_ascii_alphanumeric()
                && chars.len().is_multiple_of(4)
            {
                j += 1;
            } else {
                break;
            }
        }
        let bounded = end >= b.len() || !b[end].is_ascii_alphanumeric();
        if bounded && (15..=34).contains(&chars.len()) && iban_checksum_ok(&chars) {
            out.push(Finding {
                kind: Kind::Iban,
                start: i,
                end,
            });
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// ISO 13616 mod-97 check: move the first four characters to the end, letters to numbers.
pub fn iban_checksum_ok(chars: &[u8]) -> bool {
    let rotated = chars[4..].iter().chain(&chars[..4]);
    let mut rem: u32 = 0;
    for &c in rotated {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

// ---- IP addresses ------------------------------------------------------------------------

fn ip_addresses(text: &str) -> Vec<Finding> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let boundary = i == 0 || !(is_word(b[i - 1]) || b[i - 1] == b'.' || b[i - 1] == b':');
        if !boundary || !(b[i].is_ascii_hexdigit() || b[i] == b':') {
            i += 1;
            continue;
        }
        let run = b[i..]
            .iter()
            .take_while(|&&c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
            .count();
        let mut cand = &text[i..i + run];
        // Sentence punctuation after an address is not part of it.
        while cand.ends_with('.') || cand.ends_with(':') && !cand.ends_with("::") {
            cand = &cand[..cand.len() - 1];
        }
        let end = i + cand.len();
        let bounded = end >= b.len() || !is_word(b[end]);
        let is_ip = bounded
            && (cand.parse::<std::net::Ipv4Addr>().is_ok()
                || (cand.matches(':').count() >= 2 && cand.parse::<std::net::Ipv6Addr>().is_ok()));
        if is_ip {
            out.push(Finding {
                kind: Kind::IpAddress,
                start: i,
                end,
            });
            i = end;
        } else {
            i += run.max(1);
        }
    }
    out
}

// ---- numbers: SSN, cards, phones ---------------------------------------------------------

/// Words just before a number that make it something else than a phone number.
const NOT_PHONE_CONTEXT: &[&str] = &[
    "license",
    "licence",
    "zip",
    "postal",
    "passport",
    "account",
    "iban",
    "card",
    "ssn",
    "social security",
    "order",
    "invoice",
    "tracking",
];
/// Words just before a number that make it a phone number.
const PHONE_CONTEXT: &[&str] = &[
    "call", "phone", "tel", "mobile", "cell", "fax", "reach", "contact", "dial", "text me",
    "whatsapp",
];
/// Words that may follow a phone number on the same line.
const PHONE_LABELS: &[&str] = &[
    "office", "fax", "mobile", "cell", "home", "work", "tel", "phone", "ext", "main", "direct",
];

/// A run of digits and phone punctuation, starting at `start`.
#[derive(Clone)]
struct NumberRun {
    start: usize,
    /// End of the number proper (last digit, or closing parenthesis).
    end: usize,
    /// End including an extension (`x123`, ` x 123`).
    end_with_ext: usize,
    digits: Vec<u8>,
    has_plus: bool,
    has_paren: bool,
    /// Only digits, no separators at all.
    plain: bool,
}

/// The run starting at `start`, stopping at `limit` at the latest.
fn number_run(b: &[u8], start: usize, limit: usize) -> Option<NumberRun> {
    let b = &b[..limit];
    let mut j = start;
    let has_plus = b[j] == b'+';
    if has_plus {
        j += 1;
    }
    let mut digits = Vec::new();
    let mut separators = 0;
    let mut has_paren = false;
    let mut end = j;
    while j < b.len() {
        let c = b[j];
        if c.is_ascii_digit() {
            digits.push(c);
            j += 1;
            end = j;
        } else if c == b'(' || c == b')' {
            has_paren = true;
            j += 1;
            if c == b')' {
                end = j;
            }
        } else if (c == b'-' || c == b'.' || c == b' ') && j + 1 < b.len() {
            // A separator must lead to more of the number.
            let next = b[j + 1];
            if next.is_ascii_digit() || next == b'(' {
                separators += 1;
                j += 1;
            } else {
                break;
            }
        } else {
            break;
        }
    }
    if digits.is_empty() {
        return None;
    }
    let mut end_with_ext = end;
    let mut k = end;
    if k < b.len() && b[k] == b' ' {
        k += 1;
    }
    if k < b.len() && b[k] == b'x' {
        let ext = b[k + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if (1..=5).contains(&ext) {
            end_with_ext = k + 1 + ext;
        }
    }
    let plain = !has_plus && !has_paren && separators == 0;
    Some(NumberRun {
        start,
        end,
        end_with_ext,
        digits,
        has_plus,
        has_paren,
        plain,
    })
}

fn numbers(text: &str) -> Vec<Finding> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let starts = c.is_ascii_digit()
            || ((c == b'+' || c == b'(') && b.get(i + 1).is_some_and(u8::is_ascii_digit));
        let boundary = i == 0
            || !(is_word(b[i - 1])
                || b"@/:-.".contains(&b[i - 1])
                || (c != b'(' && b[i - 1] == b'('));
        if !starts || !boundary {
            i += 1;
            continue;
        }
        let Some(full) = number_run(b, i, b.len()) else {
            i += 1;
            continue;
        };
        // Numbers separated by single spaces run together ("078-05-1120 219-09-9999"): try the
        // whole run, then ever shorter prefixes ending at a group boundary.
        let mut ends: Vec<usize> = (i + 1..=full.end)
            .filter(|&p| {
                (b[p - 1].is_ascii_digit() || b[p - 1] == b')')
                    && (p == full.end || matches!(b[p], b' ' | b'-' | b'.'))
            })
            .collect();
        ends.reverse();
        let runs: Vec<NumberRun> = ends
            .iter()
            .filter_map(|&end| {
                if end == full.end {
                    Some(full.clone())
                } else {
                    number_run(b, i, end)
                }
            })
            .filter(|run| {
                let after = run.end_with_ext;
                !(after < b.len() && (is_word(b[after]) || b[after] == b'@'))
            })
            .collect();
        // Exact formats with checksums or fixed shapes first, then phones.
        let found = [false, true].into_iter().find_map(|phones| {
            runs.iter()
                .find_map(|run| classify(text, run, phones).map(|kind| (kind, run)))
        });
        i = match found {
            Some((kind, run)) => {
                let end = if kind == Kind::Phone {
                    run.end_with_ext
                } else {
                    run.end
                };
                out.push(Finding {
                    kind,
                    start: run.start,
                    end,
                });
                end
            }
            None => full.end_with_ext.max(i + 1),
        };
    }
    out
}

/// What `run` is: with `phones` false, an SSN or a card; with `phones` true, a phone number.
fn classify(text: &str, run: &NumberRun, phones: bool) -> Option<Kind> {
    let b = text.as_bytes();
    let number = &text[run.start..run.end];
    let n = run.digits.len();
    if !phones {
        if is_ssn(number) {
            return Some(Kind::Ssn);
        }
        let card_shaped = (run.plain && (12..=19).contains(&n))
            || (!run.has_plus && !run.has_paren && is_card_grouping(number));
        return (card_shaped && luhn_ok(&run.digits)).then_some(Kind::CreditCard);
    }
    if is_ssn(number) || is_date(number) {
        return None;
    }
    if !(7..=15).contains(&n)
        || (run.plain && !(n == 10 || n == 11))
        || is_postal_code(number)
        || number.ends_with(')')
    {
        return None;
    }
    let before = lower_window(text, run.start, 40);
    let last_of = |words: &[&str]| words.iter().filter_map(|w| before.rfind(w)).max();
    let against = last_of(NOT_PHONE_CONTEXT);
    let for_phone = last_of(PHONE_CONTEXT);
    if against.is_some() && against > for_phone {
        return None;
    }
    let has_ext = run.end_with_ext > run.end;
    let dash_dot = number.bytes().filter(|c| *c == b'-' || *c == b'.').count();
    if run.has_plus || run.has_paren || has_ext || dash_dot >= 2 {
        return Some(Kind::Phone);
    }
    // Weakly shaped (spaces only, or bare digits): a word right after it on the same line
    // usually means a street address ("370 3911 Fourth Ave"), unless it labels the number.
    let mut k = run.end_with_ext;
    while k < b.len() && (b[k] == b' ' || b[k] == b'\t') {
        k += 1;
    }
    let word_len = b[k..]
        .iter()
        .take_while(|c| c.is_ascii_alphabetic())
        .count();
    if word_len > 0 && for_phone.is_none() {
        let word = text[k..k + word_len].to_ascii_lowercase();
        if !PHONE_LABELS.contains(&word.as_str()) {
            return None;
        }
    }
    Some(Kind::Phone)
}

/// `ddd-dd-dddd` with the number ranges the SSA never issues excluded.
fn is_ssn(s: &str) -> bool {
    let b = s.as_bytes();
    let shaped = b.len() == 11
        && b[3] == b'-'
        && b[6] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 3 || i == 6 || c.is_ascii_digit());
    if !shaped {
        return false;
    }
    let area = &s[0..3];
    area != "000"
        && area != "666"
        && !area.starts_with('9')
        && &s[4..6] != "00"
        && &s[7..11] != "0000"
}

/// `YYYY-MM-DD` (or with `.` or `/`), possibly followed by more.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10
        && (b.starts_with(b"19") || b.starts_with(b"20"))
        && b[..4].iter().all(u8::is_ascii_digit)
        && matches!(b[4], b'-' | b'.' | b'/')
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b[4]
        && b[8..10].iter().all(u8::is_ascii_digit)
        && (b"01".contains(&b[5]))
}

/// Postal codes such as `75534-030` or `3610-114`.
fn is_postal_code(s: &str) -> bool {
    let Some((a, b)) = s.split_once('-') else {
        return false;
    };
    (a.len() == 4 || a.len() == 5)
        && b.len() == 3
        && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
}

/// Cards printed in groups: 4-4-4-4(-3), 4-6-4 (Diners), 4-6-5 (Amex), with spaces or dashes.
fn is_card_grouping(s: &str) -> bool {
    let groups: Vec<usize> = s.split([' ', '-']).map(str::len).collect();
    let all_digits = s
        .bytes()
        .all(|c| c.is_ascii_digit() || c == b' ' || c == b'-');
    all_digits
        && matches!(
            groups.as_slice(),
            [4, 4, 4, 4] | [4, 4, 4, 4, 3] | [4, 6, 4] | [4, 6, 5] | [4, 4, 4, 3] | [4, 4, 4, 2]
        )
}

/// The Luhn checksum of a card number.
pub fn luhn_ok(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let v = u32::from(d - b'0');
            if i % 2 == 1 {
                let v2 = v * 2;
                if v2 > 9 { v2 - 9 } else { v2 }
            } else {
                v
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Up to `len` bytes before `at`, lower-cased, cut at a character boundary.
fn lower_window(text: &str, at: usize, len: usize) -> String {
    let mut from = at.saturating_sub(len);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    text[from..at].to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(Kind, &str)> {
        detect(text)
            .into_iter()
            .map(|f| (f.kind, &text[f.start..f.end]))
            .collect()
    }

    #[test]
    fn emails_with_plus_dots_and_subdomains() {
        assert_eq!(
            kinds("mail Jane.Doe+tag@mail.example.co.uk, or bob@x.io."),
            [
                (Kind::Email, "Jane.Doe+tag@mail.example.co.uk"),
                (Kind::Email, "bob@x.io")
            ]
        );
        assert_eq!(kinds("not@an email, @handle, a@b"), []);
    }

    #[test]
    fn cards_need_a_valid_luhn_checksum() {
        assert_eq!(
            kinds("card 4111 1111 1111 1111 ok"),
            [(Kind::CreditCard, "4111 1111 1111 1111")]
        );
        assert_eq!(
            kinds("card 4111-1111-1111-1111"),
            [(Kind::CreditCard, "4111-1111-1111-1111")]
        );
        assert_eq!(
            kinds("amex 378282246310005"),
            [(Kind::CreditCard, "378282246310005")]
        );
        assert_eq!(kinds("order 4111111111111112 shipped"), []);
    }

    #[test]
    fn ibans_need_a_valid_mod97_checksum_in_any_case_and_grouping() {
        assert_eq!(
            kinds("pay GB82WEST12345698765432 now"),
            [(Kind::Iban, "GB82WEST12345698765432")]
        );
        assert_eq!(
            kinds("iban gb82 west 1234 5698 7654 32"),
            [(Kind::Iban, "gb82 west 1234 5698 7654 32")]
        );
        assert_eq!(kinds("pay GB82WEST12345698765431 now"), []);
    }

    #[test]
    fn ssns_exclude_numbers_never_issued() {
        assert_eq!(kinds("ssn 078-05-1120."), [(Kind::Ssn, "078-05-1120")]);
        assert_eq!(kinds("ssn 000-12-3456 or 666-12-3456 or 912-12-3456"), []);
    }

    #[test]
    fn ip_addresses_v4_and_v6() {
        assert_eq!(
            kinds("from 192.168.1.20."),
            [(Kind::IpAddress, "192.168.1.20")]
        );
        assert_eq!(
            kinds("host 2001:db8::ff00:42:8329 down"),
            [(Kind::IpAddress, "2001:db8::ff00:42:8329")]
        );
        assert_eq!(kinds("version 1.2.3.4.5 and 256.1.1.1 and 10:30:00"), []);
    }

    #[test]
    fn phones_in_us_and_international_formats() {
        for phone in [
            "(415) 555-2671",
            "415-555-2671",
            "415.555.2671",
            "+1 415 555 2671",
            "+14155552671",
            "+44 20 7946 0958",
            "+41 (0)38 549 02 90",
            "001-518-640-0854",
            "345-899-3560x4587",
            "4155552671",
        ] {
            let text = format!("call me at {phone}.");
            assert_eq!(kinds(&text), [(Kind::Phone, phone)], "{phone}");
        }
    }

    #[test]
    fn numbers_that_are_not_phones() {
        for text in [
            "The restaurant is at 17151 2450 Crown St",
            "When: 2000-04-16 11:34:35",
            "My zip code is 90010-170",
            "The driver's license number is 2270-66-1551",
            "It costs 1234567 dollars",
            "version 12.4.1 released",
        ] {
            assert_eq!(kinds(text), [], "{text}");
        }
    }

    #[test]
    fn secrets_by_prefix_and_shape() {
        let openai = "sk-proj-Ab3dEf9hIjKlMn0pQrStUvWx";
        let anthropic = "sk-ant-api03-AbCdEf0123456789xyzXYZ";
        let aws = "AKIAIOSFODNN7EXAMPLE";
        let github = "ghp_0123456789abcdefghijABCDEFGHIJ0123";
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        for secret in [openai, anthropic, aws, github, jwt] {
            let text = format!("key={secret} end");
            assert_eq!(kinds(&text), [(Kind::Secret, secret)], "{secret}");
        }
        assert_eq!(kinds("the sk-learn library and a task-list"), []);
    }

    #[test]
    fn multibyte_text_around_findings_is_safe() {
        assert_eq!(
            kinds("café ☕ bob@x.io — ünïcode"),
            [(Kind::Email, "bob@x.io")]
        );
    }
}
