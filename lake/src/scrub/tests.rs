use std::sync::LazyLock;

use proptest::prelude::*;

use super::checks::luhn;
use super::*;

static SCRUBBER: LazyLock<Scrubber> = LazyLock::new(Scrubber::new);
/// Scans every pass over the text itself: what the ASCII stand-in must agree with.
static REFERENCE: LazyLock<Scrubber> = LazyLock::new(Scrubber::without_stand_in);
const ANN: &str = "0123456789abcdef0123456789abcdef";
const BOB: &str = "c0ffee00c0ffee00c0ffee00c0ffee00";

/// Knows `ann` and `Bob_2`.
fn lookup(name: &str) -> Option<String> {
    match name {
        "ann" => Some(ANN.to_owned()),
        "Bob_2" => Some(BOB.to_owned()),
        _ => None,
    }
}

fn scrub(text: &str) -> Scrubbed {
    SCRUBBER.scrub(text, &lookup)
}

/// Asserts that each input scrubs to `expected`, with one removal of `kind` and nothing else.
fn assert_one(kind: PiiKind, expected: &str, inputs: &[&str]) {
    for input in inputs {
        let s = scrub(input);
        assert_eq!(s.text, expected, "{input:?}");
        assert_eq!(s.count(kind), 1, "{input:?}: {s:?}");
        assert_eq!(s.total(), 1, "{input:?}: {s:?}");
    }
}

/// Asserts that each input is left exactly as it is.
fn assert_kept(inputs: &[&str]) {
    for input in inputs {
        let s = scrub(input);
        assert_eq!(s.text, *input);
        assert_eq!(s.total(), 0, "{input:?}");
    }
}

#[test]
fn kinds_have_distinct_tokens_and_names_in_all_order() {
    for (i, kind) in PiiKind::ALL.into_iter().enumerate() {
        assert_eq!(kind.index(), i);
        assert!(kind.token().starts_with('[') && kind.token().ends_with(']'));
    }
    let mut tokens: Vec<_> = PiiKind::ALL.iter().map(|k| k.token()).collect();
    let mut names: Vec<_> = PiiKind::ALL.iter().map(|k| k.as_str()).collect();
    tokens.dedup();
    names.dedup();
    assert_eq!((tokens.len(), names.len()), (7, 7));
}

#[test]
fn urls() {
    for url in [
        "https://example.com/path?q=1&u=ann#frag",
        "http://ann.example.org",
        "ftp://files.example.net/x.zip",
        "www.example.com/ann",
        "linkedin.com/in/ann-smith",
        "https://example.com/?to=ann@example.com&ip=10.0.0.1",
    ] {
        assert_one(PiiKind::Url, "see [url] now", &[&format!("see {url} now")]);
        assert_one(PiiKind::Url, "([url]).", &[&format!("({url}).")]);
    }
    assert_one(
        PiiKind::Url,
        "see [url], ok",
        &["see https://en.wikipedia.org/wiki/Rust_(language), ok"],
    );
    assert_kept(&[
        "Node.js/React and/or e.g. this",
        "version 1.2/3",
        "example.com",
        "a://",
    ]);
}

#[test]
fn emails() {
    for email in [
        "ann@example.com",
        "first.last+tag@sub.example.co.uk",
        "ANN.O'NEIL@EXAMPLE.COM",
        "jörg_99@exämple.de",
        "ann [at] example [dot] com",
        "ann(at)example.com",
        "ann {AT} mail (dot) example (dot) org",
        "ann<at>example.com",
    ] {
        assert_one(
            PiiKind::Email,
            "mail [email].",
            &[&format!("mail {email}.")],
        );
    }
    // Not e-mail addresses (and `ann@localhost` is not a mention either).
    assert_kept(&[
        "ann@localhost",
        "a@b",
        "ann at example dot com",
        "me @ home",
        "ann@example.c0m",
    ]);
}

#[test]
fn phones() {
    for phone in [
        "+1 555 123 4567",
        "+1 (555) 123-4567",
        "+44 20 7946 0958",
        "+44 (0)20 7946 0958",
        "+49 30 1234567",
        "+33 6 12 34 56 78",
        "+491701234567",
        "(555) 123-4567",
        "555-123-4567",
        "555.123.4567",
        "1-800-555-0199",
        "555-0100",
        "030 1234567",
        "030/1234567",
        "07911 123456",
        "06 12 34 56 78",
        "612 345 678",
        "5551234567",
    ] {
        assert_one(
            PiiKind::Phone,
            "call [phone] today",
            &[&format!("call {phone} today")],
        );
    }
    assert_kept(&[
        "in 2026 we had 1,000 users and $1,234,567.89",
        "on 2026-11-26, 26.11.2026, 11/26/2026 or 1/2/26 at 12:30:00",
        "pi is 3.14159265 and e is 2.71828",
        "scores 10 20 30 40 and 1 2 3 4 5 6 7 8",
        "build 10.0.19041.1, room 1234, 12345 Berlin",
        "id abc1234567 and 1234567px",
        "555 - 1234",
    ]);
    // A date next to a phone number keeps the date.
    let s = scrub("on 2026-11-26 555 1234");
    assert_eq!(s.text, "on 2026-11-26 [phone]");
}

/// Builds a Luhn-valid number from `body` by appending its check digit.
fn with_luhn_digit(body: &str) -> String {
    (0..10)
        .map(|d| format!("{body}{d}"))
        .find(|n| luhn(n))
        .expect("one check digit fits")
}

#[test]
fn cards() {
    let nineteen = with_luhn_digit("630400000000000000");
    for card in [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
        "378282246310005",
        "3782 822463 10005",
        "6011111111111117",
        "5555555555554444",
        "4222222222222",
        &nineteen,
    ] {
        assert_one(
            PiiKind::PaymentCard,
            "pay [card] now",
            &[&format!("pay {card} now")],
        );
    }
    assert_one(
        PiiKind::PaymentCard,
        "[card] 2026",
        &["4111 1111 1111 1111 2026"],
    );
    // Luhn-invalid 16–19 digits are no phone number either: kept.
    assert!(!luhn("4111111111111112"));
    assert_kept(&[
        "ref 4111 1111 1111 1112",
        "order 4111111111111112",
        "x 12345678901234567",
    ]);
    // Luhn-invalid 13–15 digits are shaped like a phone number: removed as one.
    assert!(!luhn("123456789012"));
    assert_one(PiiKind::Phone, "id [phone]", &["id 1234567890123"]);
}

#[test]
fn ibans() {
    for iban in [
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82 WEST 1234 5698 7654 32",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91 ABNA 0417 1643 00",
        "MT84 MALT 0110 0001 2345 MTLC AST0 01S",
        "gb82west12345698765432",
    ] {
        assert_one(
            PiiKind::Iban,
            "to [iban] please",
            &[&format!("to {iban} please")],
        );
    }
    assert_one(
        PiiKind::Iban,
        "IBAN: [iban] OK",
        &["IBAN: DE89 3704 0044 0532 0130 00 OK"],
    );
    // A wrong check digit is no IBAN (its digits may still go as a phone number).
    assert_eq!(scrub("DE88 3704 0044 0532 0130 00").count(PiiKind::Iban), 0);
    assert_kept(&["AB12 hello world this is text", "MP3S ARE GREAT FOR MUSIC"]);
}

/// Next to a non-ASCII character, an IBAN or an IPv4 address starts or ends a word as the
/// regex crate's Unicode `\b` sees it: glued to a letter, a digit of another script or a mark
/// it is part of a word; next to a dash, a symbol or `²` it stands alone.
#[test]
fn unicode_neighbours_bound_ibans_and_ip_addresses() {
    let cases = [
        ("é10.0.0.1", PiiKind::IpAddress, 0),
        ("10.0.0.1٣", PiiKind::IpAddress, 0),
        ("a\u{301}10.0.0.1", PiiKind::IpAddress, 0),
        ("—10.0.0.1—", PiiKind::IpAddress, 1),
        ("²10.0.0.1€", PiiKind::IpAddress, 1),
        ("中 10.0.0.1 中", PiiKind::IpAddress, 1),
        ("éDE89370400440532013000", PiiKind::Iban, 0),
        ("DE89370400440532013000ß", PiiKind::Iban, 0),
        ("«DE89370400440532013000»", PiiKind::Iban, 1),
        (
            "Zürich: DE89 3704 0044 0532 0130 00 — merci",
            PiiKind::Iban,
            1,
        ),
    ];
    for (text, kind, n) in cases {
        let s = scrub(text);
        assert_eq!(s.count(kind), n, "{text:?}: {s:?}");
        assert_eq!(s, REFERENCE.scrub(text, &lookup), "{text:?}");
    }
}

#[test]
fn ip_addresses() {
    for ip in [
        "192.168.1.1",
        "10.0.0.255",
        "8.8.8.8",
        "2001:db8::1",
        "::1",
        "fe80::1ff:fe23:4567:890a",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        "::ffff:192.0.2.128",
    ] {
        assert_one(PiiKind::IpAddress, "from [ip].", &[&format!("from {ip}.")]);
    }
    assert_one(PiiKind::IpAddress, "[ip]:53", &["8.8.8.8:53"]);
    assert_kept(&[
        "version 1.2.3 and 1.2.3.4.5",
        "256.1.1.1",
        "std::fmt::Debug and Vec::new() at 10:30:00",
        "a :: b",
        "00:1A:2B:3C:4D:5E",
    ]);
}

#[test]
fn mentions() {
    let s = scrub("hi @ann, @Bob_2 and @nobody!");
    assert_eq!(s.text, format!("hi @{ANN}, @{BOB} and [user]!"));
    assert_eq!(s.count(PiiKind::Mention), 3);
    assert_eq!(scrub("@ann's post").text, format!("@{ANN}'s post"));
    let long = format!("@a{}", "b".repeat(32));
    assert_kept(&[
        "ann@localhost",
        "@ab",
        "@1abc",
        "@_abc",
        "x@ann",
        &long,
        "@",
    ]);
    // The lookup gets the name as written.
    let seen = std::cell::RefCell::new(Vec::new());
    SCRUBBER.scrub("@AnN @x_Y_z", &|n| {
        seen.borrow_mut().push(n.to_owned());
        None
    });
    assert_eq!(*seen.borrow(), ["AnN", "x_Y_z"]);
}

#[test]
fn emails_and_urls_go_before_mentions_and_ips() {
    let s = scrub("mail ann@example.com, see http://10.0.0.1/@ann or ping @ann");
    assert_eq!(s.text, format!("mail [email], see [url] or ping @{ANN}"));
    assert_eq!(
        (
            s.count(PiiKind::Email),
            s.count(PiiKind::Url),
            s.count(PiiKind::Mention)
        ),
        (1, 1, 1)
    );
    assert_eq!(s.total(), 3);
}

#[test]
fn surrounding_text_is_kept_and_counts_add_up() {
    let text = "Grüße — 電話 +49 30 1234567 ✓\nMail: ann@example.com; card 4111 1111 1111 1111.\n\
                IBAN DE89 3704 0044 0532 0130 00, server 192.168.0.1 / ::1, @ann @ghost.";
    let s = scrub(text);
    assert_eq!(
        s.text,
        format!(
            "Grüße — 電話 [phone] ✓\nMail: [email]; card [card].\n\
             IBAN [iban], server [ip] / [ip], @{ANN} [user]."
        )
    );
    let want = [(PiiKind::Email, 1), (PiiKind::Phone, 1), (PiiKind::Url, 0)];
    for (kind, n) in want {
        assert_eq!(s.count(kind), n, "{kind:?}");
    }
    assert_eq!(s.removed, [1, 1, 0, 2, 1, 1, 2]);
    assert_eq!(s.total(), 8);
    assert_kept(&["", "plain text, nothing to see: 42 cats!"]);
}

#[test]
fn scrubbing_is_idempotent() {
    let text = "call +1 555 123 4567 or 030 1234567, mail ann@example.com, pay 4111111111111111 \
                to GB82 WEST 1234 5698 7654 32 from 10.1.2.3 via https://x.io/a, \
                cc @ann @Bob_2 @zed";
    let once = scrub(text);
    let twice = scrub(&once.text);
    assert_eq!(twice.text, once.text);
    assert_eq!(twice.total(), 0);
}

// --- generated PII ---------------------------------------------------------------------------

/// A valid IBAN for `country` and `bban`, grouped in fours when `grouped`.
fn iban(country: &str, bban: &str, grouped: bool) -> String {
    let check = (1..=98)
        .map(|c| format!("{country}{c:02}{bban}"))
        .find(|s| checks_iban(s))
        .expect("one check number fits");
    if !grouped {
        return check;
    }
    let chars: Vec<char> = check.chars().collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

fn checks_iban(s: &str) -> bool {
    checks::iban_prefix(s) == Some(s.len())
}

fn digits(seed: &[u8], n: usize) -> String {
    (0..n)
        .map(|i| char::from(b'0' + seed[i % seed.len()].wrapping_add(i as u8) % 10))
        .collect()
}

/// One PII value of kind `k` (mod 6) from `seed` (at least 8 bytes), as people write them.
fn pii(k: u8, seed: &[u8]) -> String {
    let d = |n| digits(seed, n);
    let pick = seed[0] as usize;
    match k % 6 {
        0 => {
            let tld = ["com", "org", "de", "co.uk", "io"][pick % 5];
            let tag = if seed[1].is_multiple_of(2) {
                format!("+t{}", d(2))
            } else {
                String::new()
            };
            format!("user{}.x{tag}@mail{}.{tld}", d(3), seed[2] % 7)
        }
        1 => match pick % 9 {
            0 => format!("+{} {} {} {}", 1 + seed[1] % 98, d(3), d(3), d(4)),
            1 => format!("+{} ({}) {}-{}", 1 + seed[1] % 98, d(3), d(3), d(4)),
            2 => format!("({}) {}-{}", d(3), d(3), d(4)),
            3 => format!("{}-{}-{}", d(3), d(3), d(4)),
            4 => format!("{}.{}.{}", d(3), d(3), d(4)),
            5 => format!("0{} {} {}", d(2), d(4), d(4)),
            6 => format!("0{} {} {} {} {}", 1 + seed[1] % 9, d(2), d(2), d(2), d(2)),
            7 => format!("+{}{}", 1 + seed[1] % 98, d(9)),
            _ => format!("{} {} {}", 1 + seed[1] % 9, d(2) + &d(3)[..1], d(3)),
        },
        2 => {
            let card = with_luhn_digit(&format!("4{}", d(14)));
            if pick.is_multiple_of(2) {
                let c: Vec<char> = card.chars().collect();
                c.chunks(4)
                    .map(|g| g.iter().collect::<String>())
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                card
            }
        }
        3 => match pick % 3 {
            0 => iban("DE", &d(18), seed[1].is_multiple_of(2)),
            1 => iban("GB", &format!("WEST{}", d(14)), seed[1].is_multiple_of(2)),
            _ => iban(
                "FR",
                &format!("{}M{}", d(12), d(10)),
                seed[1].is_multiple_of(2),
            ),
        },
        4 => format!("{}.{}.{}.{}", seed[1], seed[2], seed[3], seed[4]),
        _ => format!("@user_{}", d(4)),
    }
}

/// Asserts that nothing of the planted value survives: not the value, and (as the surrounding
/// text has no digits or `@`) no digit or `@` at all.
fn assert_gone(planted: &str, out: &str) {
    assert!(!out.contains(planted), "{planted:?} survived in {out:?}");
    assert!(
        !out.contains(|c: char| c.is_ascii_digit() || c == '@'),
        "{planted:?} left {out:?}"
    );
}

proptest! {
    #[test]
    fn planted_pii_never_survives(
        before in "[a-zA-Z ,;!?]{0,30}",
        after in "[a-zA-Z ,;!?]{0,30}",
        kind in 0u8..6,
        seed in prop::collection::vec(any::<u8>(), 8),
    ) {
        let planted = pii(kind, &seed);
        let out = SCRUBBER.scrub(&format!("{before} {planted} {after}"), &|_| None);
        assert_gone(&planted, &out.text);
        prop_assert_eq!(out.total(), 1);
        let (head, tail) = (format!("{before} "), format!(" {after}"));
        prop_assert!(out.text.starts_with(&head));
        prop_assert!(out.text.ends_with(&tail));
    }

    /// Non-ASCII text (word characters of every kind the regex crate's `\b` knows: letters,
    /// decimal digits of other scripts, combining marks; and non-word ones: dashes, symbols,
    /// `²`, which Rust calls alphanumeric and the regex crate does not, and a no-break space)
    /// glued to IBANs, IP addresses, e-mail addresses (plain, obfuscated, with non-ASCII
    /// letters), URLs and the rest: the stand-ins scrub it exactly as scanning the text does.
    #[test]
    fn the_ascii_stand_in_scrubs_exactly_like_the_text(
        pieces in prop::collection::vec(prop_oneof![
            "[a-zA-Z0-9 .:@_#(/\\[\\]-]{0,6}",
            "[é—٣\u{301}²€中ß\u{a0}]{1,2}",
            Just("10.0.0.1".to_owned()),
            Just("fe80::1".to_owned()),
            Just("josé@exämple.com".to_owned()),
            Just("ann(at)example.cöm".to_owned()),
            Just("zoë [at] example [dot] fr".to_owned()),
            Just("www.zürich.ch/été".to_owned()),
            Just("https://例え.jp/".to_owned()),
            (0u8..6, prop::collection::vec(any::<u8>(), 8)).prop_map(|(k, seed)| pii(k, &seed)),
        ], 0..12)
    ) {
        let text = pieces.concat();
        prop_assert_eq!(SCRUBBER.scrub(&text, &lookup), REFERENCE.scrub(&text, &lookup));
    }

    #[test]
    fn scrubbing_anything_twice_changes_nothing(text in "[a-zA-Z0-9_ .,:;@()+/\\-\\[\\]\n]{0,80}") {
        let once = scrub(&text);
        let twice = scrub(&once.text);
        prop_assert_eq!(&twice.text, &once.text);
    }
}

#[test]
fn a_thousand_canaries_do_not_survive() {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let frames = [
        "Contact me at {} tomorrow.",
        "My details: {}",
        "({}) is mine!",
        "Use {}, thanks",
    ];
    let mut planted = Vec::new();
    let mut doc = String::new();
    for i in 0..1000u32 {
        let seed = next().to_le_bytes();
        let value = pii((i % 6) as u8, &seed);
        let frame = frames[(seed[7] % 4) as usize];
        let sentence = frame.replace("{}", &value);
        let alone = SCRUBBER.scrub(&sentence, &|_| None);
        assert_eq!(alone.total(), 1, "{sentence:?} -> {alone:?}");
        assert_gone(&value, &alone.text);
        doc.push_str(&sentence);
        doc.push(if i % 10 == 9 { '\n' } else { ' ' });
        planted.push(value);
    }
    let out = SCRUBBER.scrub(&doc, &|_| None);
    for value in &planted {
        assert_gone(value, &out.text);
    }
    assert_eq!(out.total(), 1000);
}
