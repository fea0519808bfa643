//! Each class of issue 22, several cases each: what must be found (misses), and what must not
//! be read as another type (cross-type false positives).

mod common;

use common::{kinds, labelled, lookalikes, with_luhn};
use pii_redact::detect::Kind;

/// Every labelled text yields exactly its values, of their types.
#[test]
fn every_labelled_value_is_found_whole_with_its_type() {
    for (text, values) in labelled() {
        let found: Vec<(Kind, String)> = kinds(&text)
            .into_iter()
            .map(|(k, v)| (k, v.to_owned()))
            .collect();
        assert_eq!(found, values, "{text}");
    }
}

#[test]
fn ibans_followed_by_a_word_grouped_or_compact() {
    for iban in [
        "BE68 5390 0754 7034",
        "BE68539007547034",
        "GB82 WEST 1234 5698 7654 32",
        "NO93 8601 1117 947",
        "CH93 0076 2011 6238 5295 7",
        "ES9121000418450200051332",
    ] {
        for after in [" and", " is mine", " Thanks", " 2024"] {
            let text = format!("pay {iban}{after}");
            assert_eq!(kinds(&text)[0], (Kind::Iban, iban), "{text}");
        }
    }
}

#[test]
fn invalid_cards_and_ibans_are_not_phones() {
    for text in [
        "card 4111 1111 1111 1112",
        "4111-1111-1111-1112 declined",
        "5500 0000 0000 0005",
        "GB82 WEST 1234 5698 7654 31",
        "gb82 west 1234 5698 7654 33 ok",
        "DE89 3704 0044 0532 0130 01",
        "NL91 ABNA 0417 1643 01",
    ] {
        assert_eq!(kinds(text), [], "{text}");
    }
}

#[test]
fn versions_isbns_and_out_of_range_ips_are_not_phones() {
    for text in [
        "Windows 10.0.19045.3803",
        "v 10.0.22631.2861 ok",
        "build 22621.2715 out",
        "ISBN 978-3-16-148410-0",
        "978-0-306-40615-7",
        "0-306-40615-2",
        "999.999.999.999",
        "256.300.12.1",
        "300.168.100.200 x",
    ] {
        assert_eq!(kinds(text), [], "{text}");
    }
}

#[test]
fn thirteen_digits_are_a_card_only_for_visa() {
    for prefix in [
        "100000000000",
        "590123412345",
        "612345678901",
        "930000000001",
    ] {
        let n = with_luhn(prefix);
        assert_eq!(kinds(&format!("number {n} here")), [], "{n}");
    }
    let visa = with_luhn("422222222222");
    assert_eq!(
        kinds(&format!("number {visa} here")),
        [(Kind::CreditCard, visa.as_str())]
    );
}

#[test]
fn ipv4_with_a_port_redacts_the_address() {
    for (text, ip) in [
        ("127.0.0.1:8080", "127.0.0.1"),
        ("at 10.0.0.5:443.", "10.0.0.5"),
        ("host=192.168.0.1:65535,", "192.168.0.1"),
    ] {
        assert_eq!(kinds(text), [(Kind::IpAddress, ip)], "{text}");
    }
    // Not a port: too large.
    assert_eq!(kinds("10.0.0.5:99999"), []);
}

#[test]
fn ipv6_with_a_zone() {
    for ip in [
        "fe80::1%eth0",
        "fe80::a00:27ff:fe4e:66a1%enp0s3",
        "ff02::1%2",
        "fe80::1%wlan0",
    ] {
        assert_eq!(
            kinds(&format!("addr {ip} up")),
            [(Kind::IpAddress, ip)],
            "{ip}"
        );
    }
}

#[test]
fn ssns_with_spaces_dots_or_in_parentheses() {
    for ssn in ["078 05 1120", "078.05.1120", "219 09 9999", "219.09.9999"] {
        assert_eq!(kinds(&format!("ssn {ssn} ok")), [(Kind::Ssn, ssn)], "{ssn}");
        assert_eq!(kinds(&format!("({ssn})")), [(Kind::Ssn, ssn)], "({ssn})");
    }
    assert_eq!(kinds("(078-05-1120)"), [(Kind::Ssn, "078-05-1120")]);
    // Never-issued ranges and mixed separators stay out.
    for text in ["000 12 3456", "666.12.3456", "912 12 3456", "078-05.1120"] {
        assert!(kinds(text).iter().all(|(k, _)| *k != Kind::Ssn), "{text}");
    }
}

#[test]
fn phones_followed_by_a_word_are_whole() {
    for phone in [
        "020 7946 0958",
        "0161 496 0000",
        "415 555 2671",
        "0490 75 40 81",
    ] {
        for after in [
            " if you can",
            " or email",
            " before noon",
            " I'd say",
            " office",
        ] {
            let text = format!("it is {phone}{after}");
            assert_eq!(kinds(&text), [(Kind::Phone, phone)], "{text}");
        }
    }
    // Street addresses stay out.
    for text in [
        "370 3911 Fourth Ave",
        "17151 2450 Crown St",
        "636 1812 Rue De La Gare",
        "3747 3911 fourth avenue suite 112",
        "03262 2437 Main St",
    ] {
        assert_eq!(kinds(text), [], "{text}");
    }
}

#[test]
fn emails_with_non_ascii_local_parts_and_punycode_domains() {
    for email in [
        "josé.garcía@example.com",
        "Δοκιμή@example.gr",
        "用户@例子.广告",
        "müller@xn--mnchen-3ya.de",
        "info@xn--bcher-kva.xn--p1ai",
        "user@xn--80ak6aa92e.com",
    ] {
        assert_eq!(
            kinds(&format!("to {email}, thanks")),
            [(Kind::Email, email)],
            "{email}"
        );
    }
    // Typographic quotes and dashes around an address are not part of it.
    assert_eq!(kinds("«bob@x.io»"), [(Kind::Email, "bob@x.io")]);
    assert_eq!(kinds("—bob@x.io—"), [(Kind::Email, "bob@x.io")]);
    assert_eq!(kinds("a@b.c1 and x@y..com"), []);
}

#[test]
fn slack_and_stripe_keys() {
    for key in [
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "xoxp-2222222222-3333333333-4444444444-abcdef0123456789",
        "xapp-1-A0123456789-1234567890123-abcdef0123456789abcdef",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "sk_test_51H8xYzAbCdEfGhIjKlMnOpQr",
        "rk_live_abcdefghij0123456789XYZ",
    ] {
        assert_eq!(
            kinds(&format!("key={key} end")),
            [(Kind::Secret, key)],
            "{key}"
        );
    }
    for text in [
        "xoxb-docs",
        "see sk_live_ keys",
        "sk_live_short",
        "the xoxb-token-format page",
    ] {
        assert_eq!(kinds(text), [], "{text}");
    }
}

/// Findings of any type on texts full of lookalikes (and on the labelled texts, so real values
/// are counted too): at least 95 % are real values, of the right type and whole.
#[test]
fn precision_on_lookalikes_counting_every_type_is_at_least_95_percent() {
    let (mut right, mut wrong, mut missed) = (0u32, 0u32, 0u32);
    // The lookalike texts, and the labelled texts whose real values sit among them.
    for (text, values) in lookalikes().into_iter().chain(labelled()) {
        let found = kinds(&text);
        for (kind, value) in &found {
            if values.iter().any(|(k, v)| k == kind && v == value) {
                right += 1;
            } else {
                wrong += 1;
                eprintln!("false {kind:?}: {value:?} in {text:?}");
            }
        }
        for (kind, value) in &values {
            if !found.iter().any(|(k, v)| k == kind && v == value) {
                missed += 1;
                eprintln!("missed {kind:?}: {value:?} in {text:?}");
            }
        }
    }
    let precision = f64::from(right) / f64::from((right + wrong).max(1));
    eprintln!(
        "lookalikes: precision {precision:.3} (right {right}, wrong {wrong}, missed {missed})"
    );
    assert!(right > 0, "the texts hold real values too");
    assert!(precision >= 0.95, "precision {precision:.3}");
    assert_eq!(missed, 0, "values next to lookalikes are still found");
}
