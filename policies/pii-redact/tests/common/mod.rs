//! Shared by the test files: findings as (kind, text) pairs, and texts for every class of the
//! detectors' behaviour (issue 22), each with the values it holds.

#![allow(dead_code)]

use pii_redact::detect::{Kind, detect};

/// The findings in `text`, as (kind, the value's text).
pub fn kinds(text: &str) -> Vec<(Kind, &str)> {
    detect(text)
        .into_iter()
        .map(|f| (f.kind, &text[f.start..f.end]))
        .collect()
}

/// Append the Luhn check digit to `digits`.
pub fn with_luhn(digits: &str) -> String {
    for check in 0..10 {
        let n = format!("{digits}{check}");
        let d: Vec<u8> = n.bytes().collect();
        if pii_redact::detect::luhn_ok(&d) {
            return n;
        }
    }
    unreachable!("one check digit always fits")
}

/// Texts holding values, each with the values (kind, text) a reader would redact.
pub fn labelled() -> Vec<(String, Vec<(Kind, String)>)> {
    let mut out: Vec<(String, Vec<(Kind, String)>)> = Vec::new();
    let mut add = |text: &str, values: &[(Kind, &str)]| {
        out.push((
            text.to_owned(),
            values.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        ));
    };
    use Kind::*;
    // IBANs whose first group is followed by letters, grouped and compact, and a word after.
    add(
        "Pay GB82 WEST 1234 5698 7654 32 today.",
        &[(Iban, "GB82 WEST 1234 5698 7654 32")],
    );
    add(
        "IBAN: IT60 X054 2811 1010 0000 0123 456 thanks",
        &[(Iban, "IT60 X054 2811 1010 0000 0123 456")],
    );
    add(
        "to NL91 ABNA 0417 1643 00 please",
        &[(Iban, "NL91 ABNA 0417 1643 00")],
    );
    add(
        "send it to BE68 5390 0754 7034 and tell me",
        &[(Iban, "BE68 5390 0754 7034")],
    );
    add(
        "or BE68539007547034 and done",
        &[(Iban, "BE68539007547034")],
    );
    add(
        "Norway: NO93 8601 1117 947 is the account",
        &[(Iban, "NO93 8601 1117 947")],
    );
    add(
        "fr1420041010050500013m02606 was given",
        &[(Iban, "fr1420041010050500013m02606")],
    );
    add(
        "DE89370400440532013000 ok",
        &[(Iban, "DE89370400440532013000")],
    );
    // IPv4 with a port, IPv6 with a zone.
    add("connect to 127.0.0.1:8080 now", &[(IpAddress, "127.0.0.1")]);
    add(
        "the server 10.0.0.5:443, then 192.168.1.20:22.",
        &[(IpAddress, "10.0.0.5"), (IpAddress, "192.168.1.20")],
    );
    add(
        "link-local fe80::1%eth0 and fe80::a00:27ff:fe4e:66a1%enp0s3 up",
        &[
            (IpAddress, "fe80::1%eth0"),
            (IpAddress, "fe80::a00:27ff:fe4e:66a1%enp0s3"),
        ],
    );
    add(
        "ping [2001:db8::1]:443 please",
        &[(IpAddress, "2001:db8::1")],
    );
    // SSNs with spaces, dots, in parentheses.
    add("SSN 078 05 1120 on file", &[(Ssn, "078 05 1120")]);
    add("her number 219.09.9999 was", &[(Ssn, "219.09.9999")]);
    add(
        "the applicant (078-05-1120) signed",
        &[(Ssn, "078-05-1120")],
    );
    add("(SSN: 219-09-9999) ok", &[(Ssn, "219-09-9999")]);
    add("(219 09 9999)", &[(Ssn, "219 09 9999")]);
    // Phones followed by a word.
    add("ring 020 7946 0958 if you can", &[(Phone, "020 7946 0958")]);
    add(
        "my number is 020 7946 0958 if it helps",
        &[(Phone, "020 7946 0958")],
    );
    add("try 0161 496 0000 or email", &[(Phone, "0161 496 0000")]);
    add("it is 415 555 2671 before noon", &[(Phone, "415 555 2671")]);
    add(
        "+44 20 7946 0958 tomorrow works",
        &[(Phone, "+44 20 7946 0958")],
    );
    add("(415) 555-2671 and more", &[(Phone, "(415) 555-2671")]);
    // Emails with non-ASCII local parts, punycode and internationalised domains.
    add(
        "write to josé.garcía@example.com today",
        &[(Email, "josé.garcía@example.com")],
    );
    add(
        "or müller@xn--mnchen-3ya.de, please",
        &[(Email, "müller@xn--mnchen-3ya.de")],
    );
    add(
        "shop info@xn--bcher-kva.xn--p1ai now",
        &[(Email, "info@xn--bcher-kva.xn--p1ai")],
    );
    add("用户@例子.广告 is one", &[(Email, "用户@例子.广告")]);
    add("“bob@x.io” quoted", &[(Email, "bob@x.io")]);
    // Slack and Stripe keys.
    add(
        "SLACK_TOKEN=xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx here",
        &[(
            Secret,
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        )],
    );
    add(
        "user token xoxp-2222222222-3333333333-4444444444-abcdef0123456789",
        &[(
            Secret,
            "xoxp-2222222222-3333333333-4444444444-abcdef0123456789",
        )],
    );
    add(
        "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc and",
        &[(Secret, "sk_live_4eC39HqLyjWDarjtT1zdp7dc")],
    );
    add(
        "test key: sk_test_51H8xYzAbCdEfGhIjKlMnOpQr.",
        &[(Secret, "sk_test_51H8xYzAbCdEfGhIjKlMnOpQr")],
    );
    add(
        "restricted rk_live_abcdefghij0123456789XYZ ok",
        &[(Secret, "rk_live_abcdefghij0123456789XYZ")],
    );
    // The formats that worked before, in one text.
    add(
        "Reach Jane at jane.doe@acme.io or (415) 555-2671; SSN 078-05-1120, card 4111 1111 1111 1111, IP 192.168.1.20.",
        &[
            (Email, "jane.doe@acme.io"),
            (Phone, "(415) 555-2671"),
            (Ssn, "078-05-1120"),
            (CreditCard, "4111 1111 1111 1111"),
            (IpAddress, "192.168.1.20"),
        ],
    );
    add(
        "key sk-proj-Ab3dEf9hIjKlMn0pQrStUvWx and 2001:db8::ff00:42:8329 and +41 (0)38 549 02 90 mobile",
        &[
            (Secret, "sk-proj-Ab3dEf9hIjKlMn0pQrStUvWx"),
            (IpAddress, "2001:db8::ff00:42:8329"),
            (Phone, "+41 (0)38 549 02 90"),
        ],
    );
    add(
        "Card 4222222222222 (Visa, 13 digits) and amex 3782 822463 10005.",
        &[
            (CreditCard, "4222222222222"),
            (CreditCard, "3782 822463 10005"),
        ],
    );
    out
}

/// Texts with lookalikes of values, and the values that are really there.
pub fn lookalikes() -> Vec<(String, Vec<(Kind, String)>)> {
    let mut out: Vec<(String, Vec<(Kind, String)>)> = Vec::new();
    let mut add = |text: String, values: &[(Kind, &str)]| {
        out.push((
            text,
            values.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        ));
    };
    use Kind::*;
    // Luhn-invalid cards, grouped and plain.
    add("card 4111 1111 1111 1112 declined".into(), &[]);
    add("Card number: 5500-0000-0000-0005.".into(), &[]);
    add("amex 3782 822463 10006 expired".into(), &[]);
    add("ref 6011000990139425 in the log".into(), &[]);
    // Bad-checksum IBANs.
    add("IBAN GB82 WEST 1234 5698 7654 31 bounced".into(), &[]);
    add("DE89 3704 0044 0532 0130 01 is wrong".into(), &[]);
    add("NL91 ABNA 0417 1643 01 and".into(), &[]);
    add("it was IT60 X054 2811 1010 0000 0123 457 then".into(), &[]);
    // Version strings, builds.
    add("Windows 10.0.19045.3803 is installed".into(), &[]);
    add("upgrade to 10.0.22631.2861 or 6.1.7601.24546".into(), &[]);
    add("kernel 5.15.0.1051 and 1.2.3456.78901".into(), &[]);
    // ISBNs.
    add("ISBN 978-3-16-148410-0".into(), &[]);
    add("see 0-306-40615-2 and 978-0-306-40615-7".into(), &[]);
    add("the book 9780306406157 sold".into(), &[]);
    // Out-of-range IPs.
    add("bad 999.999.999.999 value".into(), &[]);
    add("not 256.300.12.1 nor 300.168.100.200".into(), &[]);
    // Thirteen-digit numbers that pass Luhn but fit no issuer.
    for prefix in [
        "100000000000",
        "590123412345",
        "700000000012",
        "930000000001",
    ] {
        let n = with_luhn(prefix);
        add(format!("barcode {n} scanned"), &[]);
    }
    // Dates, times, prices, addresses, order numbers.
    add("When: 2000-04-16 11:34:35, total $1,234.56".into(), &[]);
    add("The restaurant is at 17151 2450 Crown St".into(), &[]);
    add("370 3911 Fourth Ave, Suite 12".into(), &[]);
    add("order number 415-555-2671 shipped".into(), &[]);
    add("pi is 3.14159265 and e is 2.71828".into(), &[]);
    // Lookalikes next to real values.
    add(
        "card 4111 1111 1111 1112 declined, call (415) 555-2671".into(),
        &[(Phone, "(415) 555-2671")],
    );
    add(
        "bad GB82 WEST 1234 5698 7654 31, good GB82 WEST 1234 5698 7654 32".into(),
        &[(Iban, "GB82 WEST 1234 5698 7654 32")],
    );
    add(
        "build 10.0.19045.3803 from 10.1.2.3:8080".into(),
        &[(IpAddress, "10.1.2.3")],
    );
    add(
        "ISBN 978-3-16-148410-0 by jane@acme.io".into(),
        &[(Email, "jane@acme.io")],
    );
    out
}
