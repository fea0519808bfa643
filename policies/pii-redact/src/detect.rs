//! The detectors: hand-written scanners with checksums where the format has one (Luhn for
//! cards, mod-97 for IBANs), and context rules for phone numbers, whose formats overlap with
//! street numbers, postal codes, dates and ids.
//!
//! Detectors run in a fixed order (secrets, emails, IBANs, IP addresses, then numbers: SSN,
//! card, phone) and a later detector never reports text an earlier one took as a unit: a value,
//! or a lookalike that failed its check (a bad-checksum IBAN, a Luhn-invalid or issuer-less
//! card number), so the digits of an invalid card or IBAN are never a phone. Phone numbers
//! must also be grouped as phone numbers are (no version strings, ISBNs or dotted quads), and
//! a spaced number followed by a street name or street word is an address. Offsets are byte
//! offsets into the scanned text.

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

/// A detector's view of a text: the values it reports, and every span it read as one unit
/// (a value, or something shaped like one that failed its check, such as a Luhn-invalid card
/// or a bad-checksum IBAN). Streaming never cuts inside a unit, and no later detector reports
/// text an earlier one took as a unit, so the digits of an invalid card are not a phone.
#[derive(Debug, Default)]
pub struct Scan {
    /// Every finding, in order of position, non-overlapping.
    pub findings: Vec<Finding>,
    /// Byte spans read as one unit (findings included), in no particular order.
    pub units: Vec<(usize, usize)>,
}

/// Every finding in `text`, in order of position, non-overlapping.
pub fn detect(text: &str) -> Vec<Finding> {
    scan(text).findings
}

/// Findings and units of `text` (see [`Scan`]).
pub fn scan(text: &str) -> Scan {
    let b = text.as_bytes();
    let mut s = Scan::default();
    // Most text has no `@` and many prompts no digit: cheap passes decide which detectors can
    // possibly match, so plain prose costs little more than a scan. The detectors jump from
    // candidate to candidate (an `@`, a digit) themselves, starting at the first.
    let first_at = find_in(b, 0, b'@', b'@');
    let first_digit = find_in(b, 0, b'0', b'9');
    secrets(b, &mut s);
    if let Some(at) = first_at {
        emails(text, at, &mut s);
    }
    if let Some(digit) = first_digit {
        ibans(b, digit, &mut s);
    }
    if first_digit.is_some() || has_double_colon(b) {
        ip_addresses(text, &mut s);
    }
    if let Some(digit) = first_digit {
        numbers(text, digit, &mut s);
    }
    s.findings.sort_by_key(|f| f.start);
    s
}

impl Scan {
    /// Whether `start..end` overlaps a unit already taken.
    fn taken(&self, start: usize, end: usize) -> bool {
        overlaps(&self.units, start, end)
    }

    /// Report a value, unless an earlier detector took part of its text. Either way its span
    /// is a unit: which detector wins can change as a stream grows (a key completing after an
    /// email), so streaming must not cut inside either.
    fn found(&mut self, kind: Kind, start: usize, end: usize) -> bool {
        let taken = self.taken(start, end);
        if !taken {
            self.findings.push(Finding { kind, start, end });
        }
        self.units.push((start, end));
        !taken
    }

    /// Take a span shaped like a value that failed its check.
    fn lookalike(&mut self, start: usize, end: usize) {
        self.units.push((start, end));
    }
}

/// Whether `start..end` overlaps one of `units`.
fn overlaps(units: &[(usize, usize)], start: usize, end: usize) -> bool {
    units.iter().any(|&(s, e)| s < end && start < e)
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The first position at or after `from` whose byte is in `lo..=hi` (ASCII bounds), looked
/// for eight bytes at a time: detectors jump from candidate to candidate (digits, colons)
/// instead of testing every byte of prose.
fn find_in(b: &[u8], from: usize, lo: u8, hi: u8) -> Option<usize> {
    debug_assert!(lo <= hi && hi < 0x80);
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    let mut i = from;
    while i + 8 <= b.len() {
        let word = u64::from_le_bytes(b[i..i + 8].try_into().expect("eight bytes"));
        // Per byte, with its top bit cleared (no carry can cross into the next byte): adding
        // `0x80 - lo` sets the top bit when the byte is at least `lo`, adding `0x7f - hi` when
        // it is above `hi`. Bytes with the top bit set (not ASCII) never match.
        let low = word & !HIGH;
        let at_least_lo = low + ONES * u64::from(0x80 - lo);
        let above_hi = low + ONES * u64::from(0x7f - hi);
        let hits = at_least_lo & !above_hi & !word & HIGH;
        if hits != 0 {
            return Some(i + hits.trailing_zeros() as usize / 8);
        }
        i += 8;
    }
    (i..b.len()).find(|&k| (lo..=hi).contains(&b[k]))
}

/// Whether `b` holds `::` (an IPv6 address may have no digit).
fn has_double_colon(b: &[u8]) -> bool {
    let mut from = 0;
    while let Some(p) = find_in(b, from, b':', b':') {
        if b.get(p + 1) == Some(&b':') {
            return true;
        }
        from = p + 2;
    }
    false
}

// ---- secrets -----------------------------------------------------------------------------

fn is_token_char(c: u8) -> bool {
    TOKEN_CHARS[usize::from(c)]
}

/// [`is_token_char`] as a table: ASCII letters and digits, `_` and `-`.
const TOKEN_CHARS: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        table[c] = b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
        c += 1;
    }
    table
};

/// Whether `token` is a key of a known provider, by prefix and shape.
fn is_secret(token: &[u8]) -> bool {
    let run = token.len();
    let has_digit = |from: usize| token[from.min(run)..].iter().any(u8::is_ascii_digit);
    if token.starts_with(b"sk-ant-") {
        run >= 7 + 20
    } else if token.starts_with(b"sk-") {
        // OpenAI keys: sk-..., sk-proj-..., sk-svcacct-...; long and mixed.
        run >= 3 + 20 && has_digit(3)
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
    } else if [
        &b"xoxb-"[..],
        b"xoxp-",
        b"xoxa-",
        b"xoxr-",
        b"xoxs-",
        b"xoxe-",
    ]
    .iter()
    .any(|p| token.starts_with(p))
    {
        // Slack tokens: xoxb-<team>-<bot>-<secret>, digits in the first groups.
        run >= 5 + 20 && has_digit(5)
    } else if token.starts_with(b"xapp-") {
        run >= 5 + 20 && has_digit(5)
    } else if [
        &b"sk_live_"[..],
        b"sk_test_",
        b"rk_live_",
        b"rk_test_",
        b"whsec_",
    ]
    .iter()
    .any(|p| token.starts_with(p))
    {
        // Stripe secret and restricted keys, webhook secrets.
        let prefix = if token.starts_with(b"whsec_") { 6 } else { 8 };
        run >= prefix + 16 && token[prefix..].iter().all(u8::is_ascii_alphanumeric)
    } else {
        false
    }
}

/// The shortest token [`is_secret`] or [`jwt_at`] accepts (a JWT's first segment); shorter
/// tokens, nearly every word of prose, are skipped without a look at their prefix.
const MIN_SECRET_TOKEN: usize = 10;

/// Where the next token (run of token characters) of at least [`MIN_SECRET_TOKEN`] characters
/// starts, at or after `from` (where no token continues from before). A token that long
/// covers one of every [`MIN_SECRET_TOKEN`] positions, so only those bytes are probed: a probe
/// on anything else skips that many bytes, a probe inside a shorter token skips past it.
/// Prose, words of a few letters, is passed over reading about half its bytes.
fn next_long_token(b: &[u8], from: usize) -> Option<usize> {
    let mut probe = from + MIN_SECRET_TOKEN - 1;
    while probe < b.len() {
        if !is_token_char(b[probe]) {
            probe += MIN_SECRET_TOKEN;
            continue;
        }
        let mut start = probe;
        while start > from && is_token_char(b[start - 1]) {
            start -= 1;
        }
        let mut end = probe + 1;
        while end < b.len() && end - start < MIN_SECRET_TOKEN && is_token_char(b[end]) {
            end += 1;
        }
        if end - start >= MIN_SECRET_TOKEN {
            return Some(start);
        }
        // `end` is no token character: a long token starts after it.
        probe = end + MIN_SECRET_TOKEN;
    }
    None
}

fn secrets(b: &[u8], s: &mut Scan) {
    let mut i = 0;
    while let Some(start) = next_long_token(b, i) {
        // The whole token: a key, or the first segment of a JWT.
        i = start + MIN_SECRET_TOKEN;
        while i < b.len() && is_token_char(b[i]) {
            i += 1;
        }
        if is_secret(&b[start..i]) {
            s.found(Kind::Secret, start, i);
        } else if let Some(len) = jwt_at(&b[start..]) {
            s.found(Kind::Secret, start, start + len);
            i = start + len;
        }
    }
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

/// A character of a local part: ASCII letters, digits and `._%+-'`, and any non-ASCII letter
/// or digit (RFC 6531 addresses such as `josé@…` or `用户@…`).
fn is_local(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._%+-'".contains(c) || (!c.is_ascii() && c.is_alphanumeric())
}

/// A character of a domain: ASCII letters, digits, `.` and `-` (so punycode `xn--…` labels),
/// and non-ASCII letters and digits (internationalised domains written out).
fn is_domain(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '-' || (!c.is_ascii() && c.is_alphanumeric())
}

/// A top-level domain: two or more letters, or a punycode label (`xn--p1ai`).
fn is_tld(tld: &str) -> bool {
    let letters = tld.chars().count() >= 2 && tld.chars().all(char::is_alphabetic);
    let punycode = tld.len() > 4
        && tld.is_char_boundary(4)
        && tld[..4].eq_ignore_ascii_case("xn--")
        && tld.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-');
    letters || punycode
}

/// The emails around each `@` from `first_at` (the first) on.
fn emails(text: &str, first_at: usize, s: &mut Scan) {
    let b = text.as_bytes();
    let mut next = Some(first_at);
    while let Some(at) = next {
        next = find_in(b, at + 1, b'@', b'@');
        let mut start = at;
        for (i, c) in text[..at].char_indices().rev() {
            if !is_local(c) || at - i > 64 {
                break;
            }
            start = i;
        }
        while start < at && b".%+-'".contains(&b[start]) {
            start += 1;
        }
        let mut end = at + 1;
        for (i, c) in text[at + 1..].char_indices() {
            if !is_domain(c) || i >= 255 {
                break;
            }
            end = at + 1 + i + c.len_utf8();
        }
        while end > at + 1 && (b[end - 1] == b'.' || b[end - 1] == b'-') {
            end -= 1;
        }
        if start == at || end <= at + 1 || b[start] == b'.' {
            continue;
        }
        let domain = &text[at + 1..end];
        let Some(dot) = domain.rfind('.') else {
            continue;
        };
        if dot > 0 && !domain.contains("..") && is_tld(&domain[dot + 1..]) {
            s.found(Kind::Email, start, end);
        }
    }
}

// ---- IBANs -------------------------------------------------------------------------------

/// IBAN lengths by country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

/// Whether `n` characters is a valid IBAN length for the country `cc` (upper case); any
/// length from 15 to 34 for a country not in the registry above.
fn iban_length_ok(cc: &[u8], n: usize) -> bool {
    match IBAN_LENGTHS.iter().find(|(c, _)| &c[..] == cc) {
        Some(&(_, len)) => n == len,
        None => (15..=34).contains(&n),
    }
}

/// The IBANs (and lookalikes) from `first_digit` (the first digit of `b`) on.
fn ibans(b: &[u8], first_digit: usize, s: &mut Scan) {
    let mut i = first_digit.saturating_sub(2);
    while i + 4 <= b.len() {
        // The check digits are the third and fourth characters: go to the next digit.
        let Some(digit) = find_in(b, i + 2, b'0', b'9') else {
            break;
        };
        i = digit - 2;
        if i + 4 > b.len() {
            break;
        }
        let starts = (i == 0 || !b[i - 1].is_ascii_alphanumeric())
            && b[i].is_ascii_alphabetic()
            && b[i + 1].is_ascii_alphabetic()
            && b[i + 2].is_ascii_digit()
            && b[i + 3].is_ascii_digit();
        if !starts {
            // Nor is a later digit of this run a third character (the second is a digit).
            let digits = b[digit..].iter().take_while(|c| c.is_ascii_digit()).count();
            i = digit + digits - 2;
            continue;
        }
        // Collect alphanumerics, allowing single spaces between groups of four (printed
        // IBANs); every place the text could end the IBAN is a candidate, longest first, so a
        // word after it ("… 7034 and") does not hide it.
        let mut chars: Vec<u8> = Vec::with_capacity(36);
        let mut ends: Vec<(usize, usize)> = Vec::new();
        let mut j = i;
        while j < b.len() && chars.len() < 34 {
            if b[j].is_ascii_alphanumeric() {
                chars.push(b[j].to_ascii_uppercase());
                j += 1;
                if j >= b.len() || !b[j].is_ascii_alphanumeric() {
                    ends.push((chars.len(), j));
                }
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
        let valid = ends
            .iter()
            .rev()
            .find(|&&(n, _)| iban_length_ok(&chars[..2], n) && iban_checksum_ok(&chars[..n]));
        match valid {
            Some(&(_, end)) => {
                s.found(Kind::Iban, i, end);
                i = end;
            }
            None => {
                // Shaped like an IBAN (country, check digits, at least eleven more characters
                // with a digit among them) but failing its check: no phone or card inside it.
                let shaped = ends
                    .iter()
                    .rev()
                    .find(|&&(n, _)| (15..=34).contains(&n))
                    .filter(|_| chars[4..].iter().filter(|c| c.is_ascii_digit()).count() >= 6);
                if let Some(&(_, end)) = shaped {
                    s.lookalike(i, end);
                    i = end;
                } else {
                    i += 1;
                }
            }
        }
    }
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

/// A port after an IPv4 address: `:` and 1 to 5 digits up to 65535.
fn port_len(b: &[u8]) -> Option<usize> {
    if b.first() != Some(&b':') {
        return None;
    }
    let digits = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
    let port: u32 = std::str::from_utf8(&b[1..1 + digits.min(5)])
        .ok()?
        .parse()
        .ok()?;
    ((1..=5).contains(&digits) && port <= 65535).then_some(1 + digits)
}

/// A byte of an address candidate: hex digits, `:` and `.`.
fn is_address_byte(c: u8) -> bool {
    c.is_ascii_hexdigit() || c == b':' || c == b'.'
}

fn ip_addresses(text: &str, s: &mut Scan) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // An address has a digit (IPv4) or colons (IPv6), and starts where its run of address
        // bytes does (inside a run is no boundary): go to the start of the run holding the
        // next digit or colon (`:` follows `9`). Runs before it cannot be addresses.
        let Some(p) = find_in(b, i, b'0', b':') else {
            break;
        };
        let from = i;
        i = p;
        while i > from && is_address_byte(b[i - 1]) {
            i -= 1;
        }
        let run = b[i..].iter().take_while(|&&c| is_address_byte(c)).count();
        let boundary = i == 0 || !(is_word(b[i - 1]) || b[i - 1] == b'.' || b[i - 1] == b':');
        // An IPv4 address (with a port or not) has three dots, an IPv6 one two colons: a number
        // or a word is not parsed.
        let (dots, colons) = b[i..i + run].iter().fold((0, 0), |(d, c), &x| {
            (d + usize::from(x == b'.'), c + usize::from(x == b':'))
        });
        let shaped = dots >= 3 || colons >= 2;
        if !boundary || !(b[i].is_ascii_hexdigit() || b[i] == b':') || !shaped {
            i += run;
            continue;
        }
        let mut cand = &text[i..i + run];
        // Sentence punctuation after an address is not part of it.
        while cand.ends_with('.') || cand.ends_with(':') && !cand.ends_with("::") {
            cand = &cand[..cand.len() - 1];
        }
        // An IPv4 address with a port (`10.0.0.5:443`): the address is the value.
        let mut port = 0;
        if let Some((addr, _)) = cand.split_once(':')
            && addr.contains('.')
            && addr.parse::<std::net::Ipv4Addr>().is_ok()
            && let Some(len) = port_len(&b[i + addr.len()..])
        {
            port = len;
            cand = addr;
        }
        let mut end = i + cand.len();
        let v4 = cand.parse::<std::net::Ipv4Addr>().is_ok();
        let v6 =
            !v4 && cand.matches(':').count() >= 2 && cand.parse::<std::net::Ipv6Addr>().is_ok();
        // An IPv6 zone (`fe80::1%eth0`) belongs to the address.
        if v6 && b.get(end) == Some(&b'%') {
            let zone = b[end + 1..]
                .iter()
                .take_while(|&&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
                .count();
            if zone > 0 {
                end += 1 + zone;
            }
        }
        let after = end + port;
        let bounded = after >= b.len() || !is_word(b[after]);
        if bounded && (v4 || v6) {
            s.found(Kind::IpAddress, i, end);
            i = after;
        } else {
            i += run.max(1);
        }
    }
}

// ---- numbers: SSN, cards, phones ---------------------------------------------------------

/// How far before a number its context words are looked for, in bytes.
pub const CONTEXT_BYTES: usize = 40;

/// Whether a context word (for or against a phone) is in the window before byte `at`.
pub fn has_context_before(text: &str, at: usize) -> bool {
    let context = Context::before(text, at);
    context.against.is_some() || context.for_phone.is_some()
}

/// How many words after a spaced number, within its clause, tell a phone from an address.
pub const LOOKAHEAD_WORDS: usize = 3;

/// Characters that end the clause a number's following words are read in.
pub fn ends_clause(c: char) -> bool {
    ".,;:!?\n()\\\"-".contains(c)
}

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
    "isbn",
    "version",
    "build",
    "serial",
    "apt",
    "suite",
    "box",
    "unit",
];
/// Words just before a number that make it a phone number.
const PHONE_CONTEXT: &[&str] = &[
    "call", "phone", "tel", "mobile", "cell", "fax", "reach", "contact", "dial", "text me",
    "whatsapp", "ring",
];
/// Words after a spaced number that make it part of an address (`370 3911 Fourth Ave`),
/// within the next three words: abbreviations and these full words in any case, the rest of
/// [`STREET_WORDS`] capitalised.
const STREET_ABBREVIATIONS: &[&str] = &[
    "st",
    "str",
    "ave",
    "av",
    "rd",
    "blvd",
    "ln",
    "dr",
    "hwy",
    "pkwy",
    "apt",
    "ste",
    "ct",
    "sq",
    "street",
    "avenue",
    "road",
    "lane",
    "drive",
    "boulevard",
    "rue",
    "strasse",
    "straße",
    "via",
    "calle",
    "suite",
];
const STREET_WORDS: &[&str] = &[
    "Way",
    "Court",
    "Place",
    "Square",
    "Terrace",
    "Highway",
    "Parkway",
    "Apartment",
    "Crescent",
    "Close",
    "Row",
    "Plaza",
];
/// Words that may follow a phone number on the same line.
const PHONE_LABELS: &[&str] = &[
    "office", "fax", "mobile", "cell", "home", "work", "tel", "phone", "ext", "main", "direct",
    "desk",
];

/// A run of digits and phone punctuation, starting at `start`.
#[derive(Clone, Copy)]
struct NumberRun {
    start: usize,
    /// End of the number proper (last digit, or closing parenthesis).
    end: usize,
    /// End including an extension (`x123`, ` x 123`).
    end_with_ext: usize,
    /// How many digits the number has (extension excluded).
    digits: usize,
    has_plus: bool,
    has_paren: bool,
    /// Only digits, no separators at all.
    plain: bool,
}

/// The run starting at `start`, stopping at `limit` at the latest. A run stopped at one of its
/// group ends is the same run up to there: the same digits, the same separators.
fn number_run(b: &[u8], start: usize, limit: usize) -> Option<NumberRun> {
    let b = &b[..limit];
    let mut j = start;
    let has_plus = b[j] == b'+';
    if has_plus {
        j += 1;
    }
    let mut digits = 0;
    let mut has_paren = false;
    let mut open = false;
    let mut end = j;
    while j < b.len() {
        let c = b[j];
        if c.is_ascii_digit() {
            digits += 1;
            j += 1;
            end = j;
        } else if c == b'(' && !open && b.get(j + 1).is_some_and(u8::is_ascii_digit) {
            has_paren = true;
            open = true;
            j += 1;
        } else if c == b')' && open && b[j - 1].is_ascii_digit() {
            open = false;
            j += 1;
            end = j;
        } else if (c == b'-' || c == b'.' || c == b' ') && j + 1 < b.len() {
            // A separator must lead to more of the number.
            let next = b[j + 1];
            if next.is_ascii_digit() || next == b'(' {
                j += 1;
            } else {
                break;
            }
        } else {
            break;
        }
    }
    if digits == 0 {
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
    // Separators count only inside the number, not one read before a stray parenthesis.
    let plain = !has_plus && !has_paren && b[start..end].iter().all(u8::is_ascii_digit);
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

/// What a number run is.
enum Verdict {
    /// A value of this kind, spanning these bytes.
    Value(Kind, usize, usize),
    /// Shaped like a card but failing its check: nothing inside it is a value.
    Lookalike,
}

/// The most digits of any number format read here (a card: 19). Of a longer run, only the
/// prefixes with at most this many are read.
const MAX_DIGITS: usize = 19;

/// How far the prefixes of the number run `start..end` worth reading reach: to its end, or up
/// to its digit after the [`MAX_DIGITS`]th.
fn reach(b: &[u8], start: usize, end: usize) -> usize {
    let run = b.get(start..end.min(b.len())).unwrap_or(&[]);
    let mut digits = 0;
    for (i, c) in run.iter().enumerate() {
        if c.is_ascii_digit() {
            digits += 1;
            if digits > MAX_DIGITS {
                return start + i;
            }
        }
    }
    end
}

/// The numbers from `first_digit` (the first digit of `text`) on.
fn numbers(text: &str, first_digit: usize, s: &mut Scan) {
    let b = text.as_bytes();
    // The units of the detectors before this one: this one's own units all end before the
    // number it reads next, so only those can overlap it.
    let earlier = s.units.len();
    let mut i = first_digit.saturating_sub(1);
    while i < b.len() {
        // A number starts at a digit, or at a `+` or `(` before one: go to the next.
        let Some(digit) = find_in(b, i, b'0', b'9') else {
            break;
        };
        i = if digit > i && matches!(b[digit - 1], b'+' | b'(') {
            digit - 1
        } else {
            digit
        };
        let c = b[i];
        let boundary = i == 0
            || !(is_word(b[i - 1])
                || b"@/:-.".contains(&b[i - 1])
                || (c != b'(' && b[i - 1] == b'('));
        if !boundary || overlaps(&s.units[..earlier], i, i + 1) {
            i += 1;
            continue;
        }
        let Some(full) = number_run(b, i, b.len()) else {
            i += 1;
            continue;
        };
        // A run that reaches into a unit an earlier detector took stops before it.
        let full = match s.units[..earlier]
            .iter()
            .filter(|&&(st, _)| st > i && st < full.end_with_ext)
            .map(|u| u.0)
            .min()
        {
            Some(limit) => match number_run(b, i, limit) {
                Some(run) => run,
                None => {
                    i += 1;
                    continue;
                }
            },
            None => full,
        };
        // Numbers separated by single spaces run together ("078-05-1120 219-09-9999"): try the
        // whole run, then ever shorter prefixes ending at a group boundary.
        let group_end = |p: usize| {
            (b[p - 1].is_ascii_digit() || b[p - 1] == b')') && (p == full.end || b[p] == b' ')
        };
        let reach = reach(b, i, full.end);
        let runs = || {
            (i + 1..=reach)
                .rev()
                .filter(|&p| group_end(p))
                .filter_map(|end| {
                    if end == full.end {
                        Some(full)
                    } else {
                        number_run(b, i, end)
                    }
                })
                .filter(|run| {
                    let after = run.end_with_ext;
                    !(after < b.len() && (is_word(b[after]) || b[after] == b'@'))
                })
        };
        // Exact formats with checksums or fixed shapes first, then phones. Only the whole run
        // can be first, and every prefix reads the same context words.
        let mut verdict = runs().find_map(|run| fixed_format(text, &run, run.end == full.end));
        if verdict.is_none() {
            let mut context = None;
            verdict = runs().find_map(|run| phone(text, &run, run.end == full.end, &mut context));
        }
        i = match verdict {
            Some(Verdict::Value(kind, start, end)) => {
                s.found(kind, start, end);
                end
            }
            Some(Verdict::Lookalike) | None => {
                // Nothing in it, but it was read as one number: streaming keeps it together.
                s.lookalike(full.start, full.end_with_ext);
                full.end_with_ext.max(i + 1)
            }
        };
    }
}

/// An SSN or a card in `run`; a card-shaped run failing its checks (when `whole`, the run is
/// all of the number) is a lookalike.
fn fixed_format(text: &str, run: &NumberRun, whole: bool) -> Option<Verdict> {
    let number = &text[run.start..run.end];
    if is_ssn(number) {
        return Some(Verdict::Value(Kind::Ssn, run.start, run.end));
    }
    // In parentheses: `(078-05-1120)`.
    if number.len() > 2 && number.starts_with('(') && number.ends_with(')') {
        let inner = &number[1..number.len() - 1];
        if is_ssn(inner) {
            return Some(Verdict::Value(Kind::Ssn, run.start + 1, run.end - 1));
        }
    }
    let n = run.digits;
    let card_shaped = (run.plain && (12..=19).contains(&n))
        || (!run.has_plus && !run.has_paren && is_card_grouping(number));
    if !card_shaped || n > MAX_DIGITS {
        return None;
    }
    let mut digits = [0; MAX_DIGITS];
    for (d, c) in digits
        .iter_mut()
        .zip(number.bytes().filter(u8::is_ascii_digit))
    {
        *d = c;
    }
    let digits = &digits[..n];
    if luhn_ok(digits) && issuer_ok(digits) {
        Some(Verdict::Value(Kind::CreditCard, run.start, run.end))
    } else if whole && n >= 13 {
        Some(Verdict::Lookalike)
    } else {
        None
    }
}

/// Whether a card number's length fits its issuer's prefix (IIN ranges of Visa, Mastercard,
/// Amex, Discover, Diners, JCB, UnionPay and Maestro).
fn issuer_ok(d: &[u8]) -> bool {
    let n = d.len();
    let p = |len: usize| -> u32 {
        d[..len]
            .iter()
            .fold(0, |acc, c| acc * 10 + u32::from(c - b'0'))
    };
    let (p1, p2, p4) = (p(1), p(2), p(4));
    // Maestro and other debit ranges: 12 digits, or 16 to 19 (13 digits is Visa only).
    let maestro = n == 12 || (16..=19).contains(&n);
    match p1 {
        4 => matches!(n, 13 | 16 | 19),
        5 => ((51..=55).contains(&p2) && n == 16) || (p2 == 50 || p2 >= 56) && maestro,
        2 => ((2221..=2720).contains(&p4) && n == 16) || (p4 == 2131 && n == 15),
        1 => p4 == 1800 && n == 15,
        3 => match p2 {
            34 | 37 => n == 15,
            30 | 36 | 38 | 39 => (14..=19).contains(&n),
            35 => (16..=19).contains(&n),
            _ => false,
        },
        6 => maestro,
        0 => p4 == 604 && maestro,
        _ => false,
    }
}

/// The digit groups of a phone-shaped number, with whether each sat in parentheses.
fn phone_groups(number: &str) -> Vec<(usize, bool)> {
    let mut groups = Vec::new();
    let (mut len, mut paren) = (0, false);
    for c in number.bytes() {
        match c {
            b'0'..=b'9' => len += 1,
            _ => {
                if len > 0 {
                    groups.push((len, paren));
                }
                len = 0;
                if c == b'(' {
                    paren = true;
                } else if c == b')' {
                    if let Some(g) = groups.last_mut() {
                        g.1 = true;
                    }
                    paren = false;
                }
            }
        }
    }
    if len > 0 {
        groups.push((len, paren));
    }
    groups
}

/// Whether the grouping of `number` is one a phone number is written in: no one-digit group
/// after the first (unless in parentheses, `+41 (0)38`), and with dots, groups of two to four
/// and not four groups of at most three (an out-of-range IPv4 address). Version strings
/// (`10.0.19045.3803`) and ISBNs (`978-3-16-148410-0`) fail.
fn phone_grouping_ok(number: &str) -> bool {
    let groups = phone_groups(number);
    // One-digit groups: the first (a country or trunk code), in parentheses (`(0)`), or the
    // area code right after one (`+46 (0)8 928 571 38`).
    let lone = groups
        .iter()
        .enumerate()
        .skip(1)
        .any(|(k, &(len, paren))| len == 1 && !paren && !groups[k - 1].1);
    if lone {
        return false;
    }
    if number.contains('.') {
        let ip_like =
            groups.len() == 4 && groups.iter().all(|g| g.0 <= 3) && !number.contains([' ', '-']);
        if ip_like || groups.iter().skip(1).any(|g| !(2..=4).contains(&g.0)) {
            return false;
        }
    }
    true
}

/// Whether `word` names a kind of street.
fn street_word(word: &str) -> bool {
    STREET_ABBREVIATIONS
        .iter()
        .any(|a| a.eq_ignore_ascii_case(word))
        || STREET_WORDS.contains(&word)
}

/// Whether `run` is a phone number. `first` says it is the whole run, not a prefix of it: a
/// prefix must be strongly shaped (`+`, parentheses, an extension, or dashes or dots) to stand
/// alone, so `020 7946` is not taken out of `020 7946 0958`. `context` holds the context words
/// before the run once looked up (the same for every prefix of a run).
fn phone(
    text: &str,
    run: &NumberRun,
    first: bool,
    context: &mut Option<Context>,
) -> Option<Verdict> {
    let number = &text[run.start..run.end];
    let n = run.digits;
    if is_ssn(number) || is_date(number) {
        return None;
    }
    if !(7..=15).contains(&n)
        || (run.plain && !(n == 10 || n == 11))
        || is_postal_code(number)
        || number.ends_with(')')
        || !phone_grouping_ok(number)
    {
        return None;
    }
    let Context { against, for_phone } =
        *context.get_or_insert_with(|| Context::before(text, run.start));
    if against.is_some() && against > for_phone {
        return None;
    }
    let has_ext = run.end_with_ext > run.end;
    let dash_dot = number.bytes().filter(|c| *c == b'-' || *c == b'.').count();
    let value = Some(Verdict::Value(Kind::Phone, run.start, run.end_with_ext));
    if run.has_plus || run.has_paren || has_ext || dash_dot >= 2 {
        return value;
    }
    if !first {
        return None;
    }
    // Weakly shaped (spaces only, or bare digits): what follows on the same line tells a
    // phone number ("020 7946 0958 if you can", "… office") from an address ("370 3911 Fourth
    // Ave", "636 1812 Rue De La Gare"), unless a phone word came before it.
    if for_phone.is_none() {
        let rest = &text[run.end_with_ext..];
        let clause = rest.find(ends_clause).map_or(rest, |p| &rest[..p]);
        let words: Vec<&str> = clause.split_whitespace().take(LOOKAHEAD_WORDS).collect();
        if words.iter().any(|w| street_word(w)) {
            return None;
        }
        if let Some(first) = words.first() {
            let label = PHONE_LABELS.iter().any(|l| l.eq_ignore_ascii_case(first));
            let pronoun = *first == "I" || first.starts_with("I'");
            let name = first.chars().next().is_some_and(char::is_uppercase);
            if name && !label && !pronoun {
                return None;
            }
        }
    }
    value
}

/// The context words before a number: where the last word against a phone and the last word
/// for one start.
#[derive(Clone, Copy, Default)]
struct Context {
    /// The last of [`NOT_PHONE_CONTEXT`].
    against: Option<usize>,
    /// The last of [`PHONE_CONTEXT`].
    for_phone: Option<usize>,
}

impl Context {
    /// The byte offsets of the last word of each list (lower case, ASCII) that starts a word
    /// in the [`CONTEXT_BYTES`] before `at` on `at`'s line and ends by `at`, in any case. A
    /// word starts where the byte before it in the text (not in the window) is no letter, so
    /// where the window happens to begin changes nothing. One pass from `at` backwards, with
    /// the lists compared only where a word starts.
    fn before(text: &str, at: usize) -> Context {
        let b = text.as_bytes();
        let mut from = at.saturating_sub(CONTEXT_BYTES);
        if let Some(nl) = b[from..at].iter().rposition(|&c| c == b'\n') {
            from += nl + 1;
        }
        let mut context = Context::default();
        for i in (from..at).rev() {
            if context.against.is_some() && context.for_phone.is_some() {
                break;
            }
            let word_start =
                b[i].is_ascii_alphabetic() && (i == 0 || !b[i - 1].is_ascii_alphabetic());
            if !word_start {
                continue;
            }
            let rest = &b[i..at];
            let letter = 1 << (b[i].to_ascii_lowercase() - b'a');
            if context.against.is_none()
                && NOT_PHONE_LETTERS & letter != 0
                && starts_with_one_of(rest, NOT_PHONE_CONTEXT)
            {
                context.against = Some(i);
            }
            if context.for_phone.is_none()
                && PHONE_LETTERS & letter != 0
                && starts_with_one_of(rest, PHONE_CONTEXT)
            {
                context.for_phone = Some(i);
            }
        }
        context
    }
}

/// The first letters of `words` (lower case), as bits: `a` is bit 0.
const fn first_letters(words: &[&str]) -> u32 {
    let mut bits = 0;
    let mut k = 0;
    while k < words.len() {
        bits |= 1 << (words[k].as_bytes()[0] - b'a');
        k += 1;
    }
    bits
}
const NOT_PHONE_LETTERS: u32 = first_letters(NOT_PHONE_CONTEXT);
const PHONE_LETTERS: u32 = first_letters(PHONE_CONTEXT);

/// Whether `text` (not empty) starts with one of `words` (lower case, ASCII), in any case.
fn starts_with_one_of(text: &[u8], words: &[&str]) -> bool {
    let first = text[0].to_ascii_lowercase();
    words.iter().any(|w| {
        let w = w.as_bytes();
        w[0] == first && text.len() >= w.len() && text[..w.len()].eq_ignore_ascii_case(w)
    })
}

/// `ddd-dd-dddd` (or with spaces or dots, the same both times) with the number ranges the
/// SSA never issues excluded.
fn is_ssn(s: &str) -> bool {
    let b = s.as_bytes();
    let shaped = b.len() == 11
        && matches!(b[3], b'-' | b' ' | b'.')
        && b[6] == b[3]
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
    const GROUPINGS: [&[usize]; 6] = [
        &[4, 4, 4, 4],
        &[4, 4, 4, 4, 3],
        &[4, 6, 4],
        &[4, 6, 5],
        &[4, 4, 4, 3],
        &[4, 4, 4, 2],
    ];
    // 16 (4-6-4) to 23 characters (4-4-4-4-3).
    let all_digits = s
        .bytes()
        .all(|c| c.is_ascii_digit() || c == b' ' || c == b'-');
    (16..=23).contains(&s.len())
        && all_digits
        && GROUPINGS
            .iter()
            .any(|g| s.split([' ', '-']).map(str::len).eq(g.iter().copied()))
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

    #[test]
    fn find_in_finds_what_a_byte_by_byte_search_finds() {
        // Every byte value at every offset of a word, and the tail after the last word.
        let ranges = [(b'0', b'9'), (b'0', b':'), (b':', b':'), (b'@', b'@')];
        for c in 0..=255u8 {
            for len in 0..20 {
                for at in 0..len {
                    let mut b = vec![b'x'; len];
                    b[at] = c;
                    for (lo, hi) in ranges {
                        for from in 0..=len {
                            let naive = (from..len).find(|&k| (lo..=hi).contains(&b[k]));
                            assert_eq!(find_in(&b, from, lo, hi), naive, "{c} at {at} of {len}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn no_key_or_jwt_is_shorter_than_the_tokens_read() {
        // The prefixes `is_secret` knows, and a JWT's first segment: filled up to one character
        // short of the tokens read, none is a secret, so skipping shorter tokens misses none.
        let prefixes = [
            "sk-ant-",
            "sk-",
            "AKIA",
            "ASIA",
            "ghp_",
            "github_pat_",
            "xoxb-",
            "xapp-",
            "sk_live_",
            "rk_test_",
            "whsec_",
            "eyJ",
        ];
        for prefix in prefixes {
            let mut token = prefix.to_owned();
            while token.len() < MIN_SECRET_TOKEN - 1 {
                token.push(if token.len() % 2 == 0 { '7' } else { 'Q' });
            }
            let token = &token[..token.len().min(MIN_SECRET_TOKEN - 1)];
            assert!(!is_secret(token.as_bytes()), "{token}");
            let jwt = format!("{token}.eyJhbGciOiJIUzI1NiJ9.dozjgNryP4J3jVmNHl0w5N");
            assert_eq!(jwt_at(jwt.as_bytes()), None, "{jwt}");
        }
    }

    #[test]
    fn long_tokens_are_found_wherever_they_start() {
        // The probes land at every offset of the key, after words of every length.
        let key = "sk-proj-Ab3dEf9hIjKlMn0pQrStUvWx";
        for words in 0..12 {
            let text = format!("{} {key}, done", "ab ".repeat(words));
            let start = text.find(key).expect("the key");
            assert_eq!(
                detect(&text),
                [Finding {
                    kind: Kind::Secret,
                    start,
                    end: start + key.len()
                }],
                "{text}"
            );
        }
    }

    #[test]
    fn a_card_opens_a_run_of_more_digits_than_any_format() {
        // Prefixes past nineteen digits are not read; the card at the start still is.
        assert_eq!(
            kinds("ref 4111 1111 1111 1111 2222 3333 4444 5555 6666 end"),
            [(Kind::CreditCard, "4111 1111 1111 1111")]
        );
    }
}
