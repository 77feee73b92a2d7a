//! The checks behind the scrubber's regexes: IBAN mod-97, Luhn, and telling cards and phone
//! numbers from other numbers in a run of digit groups.

use super::{Edit, PiiKind, ends_with_word, starts_with_word};

/// The length of the longest prefix of an IBAN-shaped candidate (`DE89 3704 …`) that is a valid
/// IBAN, ending at a space or the candidate's end; `None` when there is none.
pub(super) fn iban_prefix(cand: &str) -> Option<usize> {
    let ends = cand
        .char_indices()
        .filter(|&(_, c)| c == ' ')
        .map(|(i, _)| i)
        .chain([cand.len()]);
    let mut ends: Vec<usize> = ends.collect();
    ends.reverse();
    ends.into_iter().find(|&end| is_iban(&cand[..end]))
}

/// IBAN lengths by country, from the SWIFT IBAN registry.
#[rustfmt::skip]
const IBAN_LENGTHS: [(&str, usize); 88] = [
    ("AD", 24), ("AE", 23), ("AL", 28), ("AT", 20), ("AZ", 28), ("BA", 20), ("BE", 16),
    ("BG", 22), ("BH", 22), ("BI", 27), ("BR", 29), ("BY", 28), ("CH", 21), ("CR", 22),
    ("CY", 28), ("CZ", 24), ("DE", 22), ("DJ", 27), ("DK", 18), ("DO", 28), ("EE", 20),
    ("EG", 29), ("ES", 24), ("FI", 18), ("FK", 18), ("FO", 18), ("FR", 27), ("GB", 22),
    ("GE", 22), ("GI", 23), ("GL", 18), ("GR", 27), ("GT", 28), ("HR", 21), ("HU", 28),
    ("IE", 22), ("IL", 23), ("IQ", 23), ("IS", 26), ("IT", 27), ("JO", 30), ("KW", 30),
    ("KZ", 20), ("LB", 28), ("LC", 32), ("LI", 21), ("LT", 20), ("LU", 20), ("LV", 21),
    ("LY", 25), ("MC", 27), ("MD", 24), ("ME", 22), ("MK", 19), ("MN", 20), ("MR", 27),
    ("MT", 31), ("MU", 30), ("NI", 28), ("NL", 18), ("NO", 15), ("OM", 23), ("PK", 24),
    ("PL", 28), ("PS", 29), ("PT", 25), ("QA", 29), ("RO", 24), ("RS", 22), ("RU", 33),
    ("SA", 24), ("SC", 31), ("SD", 18), ("SE", 24), ("SI", 19), ("SK", 24), ("SM", 27),
    ("SO", 23), ("ST", 25), ("SV", 28), ("TL", 23), ("TN", 24), ("TR", 26), ("UA", 29),
    ("VA", 22), ("VG", 24), ("XK", 20), ("YE", 30),
];

/// Whether `s` (spaces allowed) is an IBAN: its country's length (15–34 characters for a
/// country not in [`IBAN_LENGTHS`]), mod-97 of the rearranged number
/// equal to 1, letters all of one case, and at least half the account part digits (which keeps
/// words out of it).
fn is_iban(s: &str) -> bool {
    let compact: Vec<u8> = s.bytes().filter(|&b| b != b' ').collect();
    let country = [
        compact[0].to_ascii_uppercase(),
        compact[1].to_ascii_uppercase(),
    ];
    let length_ok = match IBAN_LENGTHS.iter().find(|(c, _)| c.as_bytes() == country) {
        Some(&(_, len)) => compact.len() == len,
        None => (15..=34).contains(&compact.len()),
    };
    if !length_ok {
        return false;
    }
    let bban = &compact[4..];
    let digits = bban.iter().filter(|b| b.is_ascii_digit()).count();
    let upper = compact.iter().any(u8::is_ascii_uppercase);
    let lower = compact.iter().any(u8::is_ascii_lowercase);
    if digits * 2 < bban.len() || (upper && lower) {
        return false;
    }
    let mut rem: u32 = 0;
    for &b in bban.iter().chain(&compact[..4]) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            _ => u32::from(b.to_ascii_uppercase() - b'A') + 10,
        };
        rem = if v < 10 {
            (rem * 10 + v) % 97
        } else {
            (rem * 100 + v) % 97
        };
    }
    rem == 1
}

/// The Luhn check of the digits in `s` (other characters are skipped).
pub(super) fn luhn(s: &str) -> bool {
    let sum: u32 = s
        .bytes()
        .rev()
        .filter(u8::is_ascii_digit)
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            match (i % 2 == 1, d * 2) {
                (false, _) => d,
                (true, d2) if d2 > 9 => d2 - 9,
                (true, d2) => d2,
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A space-separated piece of a number run: where it is in the run, its digit count, and
/// whether it is a date.
struct Piece {
    start: usize,
    end: usize,
    digits: usize,
    date: bool,
}

/// Replaces the cards and phone numbers in the number run `t[s..e]`: the longest stretch of
/// whole space-separated pieces that is one, then the rest of the run after it.
pub(super) fn numbers(t: &str, s: usize, e: usize, out: &mut Vec<Edit>) {
    let run = &t[s..e];
    let mut pieces: Vec<Piece> = Vec::new();
    let mut at = 0;
    for piece in run.split(' ') {
        let digits = piece.bytes().filter(u8::is_ascii_digit).count();
        let (start, end, date) = (at, at + piece.len(), is_date(piece));
        pieces.push(Piece {
            start,
            end,
            digits,
            date,
        });
        at = end + 1;
    }
    // A run glued to a word (`abc12345678`, `12345678px`) loses that piece.
    if ends_with_word(&t[..s]) && run.starts_with(|c: char| c.is_ascii_digit()) {
        pieces.remove(0);
    }
    if starts_with_word(&t[e..]) {
        pieces.pop();
    }
    let mut i = 0;
    while i < pieces.len() {
        // Stretches from piece `i` with 7–19 digits and no date, longest first: no card or
        // phone number has fewer or more digits.
        let (mut first, mut last, mut digits) = (None, i, 0);
        for (j, piece) in pieces.iter().enumerate().skip(i) {
            digits += piece.digits;
            if digits > 19 || piece.date {
                break;
            }
            if digits >= 7 {
                first.get_or_insert(j);
                last = j;
            }
        }
        let candidates = first.map_or(0..0, |first| first..last + 1);
        let found = candidates.rev().find_map(|j| {
            let stretch = &run[pieces[i].start..pieces[j].end];
            classify(stretch, j == i).map(|kind| (j, kind))
        });
        match found {
            Some((j, Found::Pii(kind))) => {
                out.push(Edit::token(s + pieces[i].start, s + pieces[j].end, kind));
                i = j + 1;
            }
            Some((j, Found::NotACard)) => i = j + 1,
            None => i += 1,
        }
    }
}

/// What a stretch of a number run is.
enum Found {
    Pii(PiiKind),
    /// 16–19 digits written like a card number but not Luhn-valid: kept whole, no part of it is
    /// a phone number.
    NotACard,
}

/// Whether a stretch is written like a card number: one unseparated run, or a first group of
/// four and then groups of 3–6 digits (the last may be shorter), as in 4-4-4-4, 4-6-5, 4-4-4-4-3.
fn is_card_shaped(stretch: &str) -> bool {
    let mut groups = stretch.split([' ', '-']).map(str::len).peekable();
    let first = groups.next().unwrap_or_default();
    if groups.peek().is_none() {
        return true;
    }
    first == 4 && {
        let mut ok = true;
        while let Some(len) = groups.next() {
            let last = groups.peek().is_none();
            ok &= (3..=6).contains(&len) || (last && (1..=6).contains(&len));
        }
        ok
    }
}

/// Whether a stretch of 7–19 digits without a date is a card, a phone number or neither (see
/// the module docs). `single` is whether it is one piece.
fn classify(stretch: &str, single: bool) -> Option<Found> {
    let digits = stretch.bytes().filter(u8::is_ascii_digit).count();
    let has_plus = stretch.starts_with('+');
    let has_paren = stretch.contains('(');
    let card_chars = stretch
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b' ' || b == b'-');
    if card_chars && (13..=19).contains(&digits) && is_card_shaped(stretch) {
        if luhn(stretch) {
            return Some(Found::Pii(PiiKind::PaymentCard));
        }
        if digits >= 16 {
            return Some(Found::NotACard);
        }
    }
    let decimal = single
        && stretch.matches('.').count() == 1
        && stretch.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if digits > 15 || decimal {
        return None;
    }
    let strong = has_plus
        || has_paren
        || stretch.bytes().find(u8::is_ascii_digit) == Some(b'0')
        || stretch.bytes().all(|b| b.is_ascii_digit())
        || stretch.contains(['.', '-', '/']);
    let min = if strong { 2 } else { 3 };
    // Digit groups after the first need `min` digits, unless parenthesised (`(0)`) or a
    // one-digit area code right after the country code (`+33 6 12 34 56 78`).
    let (mut ok, mut group, mut len, mut paren, mut prev) = (true, 0, 0, false, ' ');
    for c in stretch.chars().chain([' ']) {
        if c.is_ascii_digit() {
            if !prev.is_ascii_digit() {
                (paren, len) = (prev == '(', 0);
            }
            len += 1;
        } else if prev.is_ascii_digit() {
            let short_ok = paren || (len == 1 && group == 1 && has_plus);
            ok &= group == 0 || len >= min || short_ok;
            group += 1;
        }
        prev = c;
    }
    ok.then_some(Found::Pii(PiiKind::Phone))
}

/// `2026-11-26`, `26.11.2026`, `11/26/26`: three digit groups joined by one separator, shaped
/// like a date.
fn is_date(piece: &str) -> bool {
    let seps: Vec<char> = piece.chars().filter(|c| !c.is_ascii_digit()).collect();
    if seps.len() != 2 || seps[0] != seps[1] || !matches!(seps[0], '-' | '.' | '/') {
        return false;
    }
    let lens: Vec<usize> = piece.split(seps[0]).map(str::len).collect();
    match lens[..] {
        [4, m, d] => (1..=2).contains(&m) && (1..=2).contains(&d),
        [a, b, y] => (1..=2).contains(&a) && (1..=2).contains(&b) && (y == 2 || y == 4),
        _ => false,
    }
}
