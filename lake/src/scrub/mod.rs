//! Free-text scrubbing: the personal data a title, body, comment, resume or description loses
//! before it enters the lake.
//!
//! Written by hand on top of `regex`: no maintained Rust crate recognises these kinds with the
//! checks (Luhn, IBAN mod-97, E.164 lengths) and the replacement rules the lake needs; the
//! well-known PII scrubbers (Presidio, scrubadub) are Python.
//!
//! [`Scrubber::scrub`] removes the kinds below, each replaced by a fixed token, and counts what
//! it removed per kind. It runs one pass per kind, in this order, because an earlier kind may
//! contain a later one: a URL may hold an e-mail or an IP address, an e-mail address holds an
//! `@` that is not a mention, an IBAN holds digit groups that look like a phone number, an IPv6
//! address may end in an IPv4 one.
//!
//! 1. **URL** → `[url]`: `scheme://…` (any scheme), `www.…`, and a bare host under a common
//!    TLD with a path (`linkedin.com/in/ann`, but not `Node.js/React`). It runs to the next
//!    whitespace, less trailing punctuation and a `)` that closes a parenthesis opened before it.
//! 2. **E-mail** → `[email]`: `local@domain.tld` with plus-addressing, subdomains and Unicode
//!    letters, and the bracketed obfuscations `ann [at] example [dot] com`, `ann(at)example.com`,
//!    `{at}`, `<at>` (any case).
//! 3. **IBAN** → `[iban]`: two letters, two check digits and 11–30 letters or digits, compact
//!    or grouped by single spaces, when the mod-97 check gives 1, the length is the country's
//!    (any of 15–34 for a country not in the registry table), the letters are of one case and at
//!    least half the account part is digits. A trailing word that breaks the check is left out.
//! 4. **IP address** → `[ip]`: IPv6 in every form [`std::net::Ipv6Addr`] parses (`::`
//!    compression, an IPv4 tail), not glued to a word (`std::fmt` stays); IPv4 as four octets
//!    0–255, not inside a longer dotted run (`1.2.3.4.5` stays, as does the version `1.2.3`).
//! 5. **Payment card** → `[card]` and **phone** → `[phone]`, in one pass over number runs,
//!    described below.
//! 6. **Mention** → `@<pseudonym>`, or `[user]` when the caller's lookup knows no such user:
//!    `@` at the start or after a non-word character, then a username as accounts allows it (a
//!    letter, then 2–31 ASCII letters, digits or `_`), not followed by a word character. An
//!    unknown name of 32 lowercase hex digits is taken to be a pseudonym already and kept.
//!
//! A number run is digit groups joined by single spaces, dots, dashes or slashes, with an
//! optional leading `+` and parenthesised groups (`(555)`, `(0)20`); a piece glued to a word
//! (`abc1234567`, `1234567px`) is left out. The longest stretch of whole space-separated pieces
//! with 7–19 digits and no date (`2026-11-26`, `26.11.2026`, `11/26/26`) that is a card or a
//! phone is replaced, then the rest of the run is tried, so `4111 1111 1111 1111 2026` loses the
//! card and keeps the year. A stretch is
//!
//! - a **card** when it has 13–19 digits, is one unseparated run or a group of four and then
//!   groups of 3–6 joined by spaces or dashes (4-4-4-4, 4-6-5), and passes Luhn;
//! - kept whole when it is written like that, has 16–19 digits and fails Luhn: no phone number
//!   is that long, and an order number is more likely than a mistyped card;
//! - a **phone** when it has 7–15 digits (E.164's maximum), is not one decimal (`3.14159265`),
//!   and every digit group after the first has two digits or more, three or more if the stretch
//!   is only space-separated with no `+`, no parentheses and no leading `0` (`10 20 30 40` stays,
//!   `612 345 678` goes). A parenthesised group (`(0)`) and a one-digit area code after the
//!   country code (`+33 6 12 34 56 78`) may be shorter. So a long digit run that fails Luhn is
//!   a phone number when it has 13–15 digits.
//!
//! A replacement can free a neighbour glued to what it replaced (in `@agA::0` the mention goes,
//! then `::0` is an address), so the passes repeat until a round removes nothing. Scrubbing is
//! therefore idempotent: scrubbing scrubbed text changes nothing.
//!
//! # What it does not catch
//!
//! It recognises patterns, so it misses what has no pattern: personal names, street addresses,
//! postcodes, dates of birth, national id numbers, licence plates, MAC addresses, and a username
//! written without `@`. It also misses e-mail addresses written `ann at example dot com` without
//! brackets or `ann @ example.com` with spaces; bare domains without a path (`example.com`) or
//! under a TLD outside its list; phone numbers with letters (`1-800-FLOWERS`), glued to a word
//! (`tel5551234`) or split by spaced dashes (`555 - 1234`); card numbers and IBANs glued to a
//! word or grouped in other ways than above; and an IBAN with a wrong check (its digits may
//! still go as a phone number). It errs towards removing: digit groupings of 7–15 digits that are
//! not phone numbers (`1 000 000`, `1.000.000`, `2024 2025 2026`, ids of 7–15 digits) go as
//! phones, one in ten card-shaped 13–19-digit ids passes Luhn and goes as a card, and about one
//! in 97 IBAN-shaped strings of the right length passes mod-97.
//!
//! Each pass is one regex scan (the regexes are compiled once, in [`Scrubber::new`]) plus a
//! check per candidate, skipped when the text lacks a character the pattern needs; a second
//! round runs only when the first removed something. The IBAN and IPv4 passes scan non-ASCII
//! text through an ASCII stand-in (see `ascii_stand_in`), which keeps `regex` on its fast
//! engine; the URL and e-mail patterns may match non-ASCII characters, so they scan the text
//! itself, but only when a scan of another ASCII stand-in that can only match more (see
//! `class_stand_in`) found something. Measured
//! once on a development machine (release build, one core, not asserted anywhere): prose with
//! some PII at about 18 MB/s, a pathological run of single digits (`1 1 1 …`) at under 1 MB/s.

mod checks;
#[cfg(test)]
mod tests;

use std::net::Ipv6Addr;

use regex::Regex;

/// What the scrubber removes, each replaced by a fixed token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PiiKind {
    Email,
    Phone,
    Url,
    IpAddress,
    PaymentCard,
    Iban,
    Mention,
}

impl PiiKind {
    /// Every kind, in the order of [`Scrubbed::removed`].
    pub const ALL: [PiiKind; 7] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::Url,
        PiiKind::IpAddress,
        PiiKind::PaymentCard,
        PiiKind::Iban,
        PiiKind::Mention,
    ];

    /// The token that replaces it. A mention is replaced by `@<pseudonym>`, or by this token
    /// (`[user]`) when the mentioned user is unknown.
    pub fn token(self) -> &'static str {
        match self {
            PiiKind::Email => "[email]",
            PiiKind::Phone => "[phone]",
            PiiKind::Url => "[url]",
            PiiKind::IpAddress => "[ip]",
            PiiKind::PaymentCard => "[card]",
            PiiKind::Iban => "[iban]",
            PiiKind::Mention => "[user]",
        }
    }

    /// A stable snake_case name, for metrics and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::Url => "url",
            PiiKind::IpAddress => "ip_address",
            PiiKind::PaymentCard => "payment_card",
            PiiKind::Iban => "iban",
            PiiKind::Mention => "mention",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Scrubbed text and how many of each kind were removed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scrubbed {
    pub text: String,
    /// Counts per [`PiiKind`], in [`PiiKind::ALL`] order.
    pub removed: [u32; 7],
}

impl Scrubbed {
    pub fn count(&self, kind: PiiKind) -> u32 {
        self.removed[kind.index()]
    }

    pub fn total(&self) -> u32 {
        self.removed.iter().sum()
    }
}

/// The free-text scrubber; see the [module docs](self) for what it removes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Scrubber {
    url: Regex,
    email: Regex,
    email_obfuscated: Regex,
    iban: Regex,
    ipv4: Regex,
    ipv6: Regex,
    number: Regex,
    mention: Regex,
    /// Whether the IBAN and IPv4 passes scan an ASCII stand-in of non-ASCII text (see
    /// [`ascii_stand_in`]); off only in the tests' reference scrubber.
    stand_in: bool,
}

impl Default for Scrubber {
    fn default() -> Self {
        Self::new()
    }
}

/// Rounds after the first; one more is needed only in contrived text.
const MAX_ROUNDS: usize = 4;

/// A replacement of `text[start..end]`.
struct Edit {
    start: usize,
    end: usize,
    kind: PiiKind,
    with: Option<String>,
}

impl Edit {
    fn token(start: usize, end: usize, kind: PiiKind) -> Self {
        Edit {
            start,
            end,
            kind,
            with: None,
        }
    }
}

impl Scrubber {
    pub fn new() -> Self {
        let re = |s: &str| Regex::new(s).expect("scrubber regexes are valid");
        const LOCAL: &str = r"[\w!#$%&'*+/=?^`{|}~-]+(?:\.[\w!#$%&'*+/=?^`{|}~-]+)*";
        const AT: &str = r"\s*[\[({<]\s*[aA][tT]\s*[\])}>]\s*";
        const DOT: &str = r"(?:\.|\s*[\[({<]\s*[dD][oO][tT]\s*[\])}>]\s*)";
        const TLDS: &str = concat!(
            "com|org|net|edu|gov|io|co|me|info|biz|dev|app|ai|",
            "de|uk|fr|es|it|nl|eu|us|ca|au|ch|at|be|se|no|dk|fi|pl|ru|jp|cn|in|br"
        );
        // A number run: digit groups joined by one space, dot, dash or slash, or by a
        // parenthesised group; optionally after a `+` or a parenthesised group.
        const NUMBER: &str = concat!(
            r"(?:\+[ ]?)?(?:\([0-9]{1,6}\)[ .-]?)?[0-9]+",
            r"(?:(?:[ ./-]|[ ]?\([0-9]{1,6}\)[ .-]?)[0-9]+)*"
        );
        Scrubber {
            url: re(&format!(
                concat!(
                    r#"(?:\b[A-Za-z][A-Za-z0-9+.-]*://|\bwww\.|\b(?:[A-Za-z0-9-]+\.)+(?:{TLDS})/)"#,
                    r#"[^\s<>"]+"#
                ),
                TLDS = TLDS
            )),
            email: re(&format!(r"{LOCAL}@(?:[\w-]+\.)+[^\W\d_]{{2,}}\b")),
            email_obfuscated: re(&format!(
                r"[\w.+-]+(?:@|{AT})(?:[\w-]+{DOT})+[^\W\d_]{{2,}}\b"
            )),
            iban: re(r"\b[A-Za-z]{2}[0-9]{2}(?:[ ]?[A-Za-z0-9]){11,30}\b"),
            ipv4: re(r"\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b"),
            ipv6: re(
                r"(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{0,4})",
            ),
            number: re(NUMBER),
            mention: re(r"@[A-Za-z][A-Za-z0-9_]{2,31}"),
            stand_in: true,
        }
    }

    /// The scrubber without the ASCII stand-in: every pass scans the text itself. The tests
    /// compare the two.
    #[cfg(test)]
    fn without_stand_in() -> Self {
        Scrubber {
            stand_in: false,
            ..Self::new()
        }
    }

    /// Scrubs `text`. `mention` maps a username (without `@`, as written) to the mentioned
    /// user's pseudonym, `None` when there is no such user (the mention becomes `[user]`). It
    /// may be asked about a name more than once, and about a pseudonym written by an earlier
    /// round; it should answer `None` for a name that is no user's.
    pub fn scrub(&self, text: &str, mention: &dyn Fn(&str) -> Option<String>) -> Scrubbed {
        let mut removed = [0u32; 7];
        let mut text = self.scrub_once(text, mention, &mut removed);
        // A replacement can free a neighbour that was glued to what it replaced (`@agA::0`
        // loses the mention, then `::0` is an address): scrub again until nothing changes.
        // Text the first round left alone has nothing to free.
        if removed.iter().all(|n| *n == 0) {
            return Scrubbed { text, removed };
        }
        for _ in 0..MAX_ROUNDS {
            let before = removed.iter().sum::<u32>();
            let again = self.scrub_once(&text, mention, &mut removed);
            if removed.iter().sum::<u32>() == before {
                break;
            }
            text = again;
        }
        Scrubbed { text, removed }
    }

    /// One round of every pass, in order.
    fn scrub_once(
        &self,
        text: &str,
        mention: &dyn Fn(&str) -> Option<String>,
        removed: &mut [u32; 7],
    ) -> String {
        // Each pattern needs a character most text lacks; looking for it first skips the
        // regex (Unicode word boundaries make it fall back to slow engines) for most text.
        // The replacements never add `/ @ : .` or digits, and the brackets of their tokens
        // cannot make an obfuscated `[at]`, so one look at the text serves every pass up to
        // the IBANs' (a pass it lets run needlessly finds nothing); after that the set is
        // taken again when a pass changed the text.
        let mut present = Present::of(text);
        // Non-ASCII text goes through the URL and e-mail patterns only when their prefilter
        // (see `class_stand_in`) finds a match.
        let wants_url = present.any(b"/") || text.contains("www.");
        let mut classes = if wants_url || present.any(b"@[({<") {
            self.classes_of(text)
        } else {
            None
        };
        let may_match = |re: &Regex, classes: &Option<String>| {
            classes.as_deref().is_none_or(|c| re.is_match(c))
        };
        let mut text = if wants_url && may_match(&self.url, &classes) {
            let after = self.pass(text, None, &self.url, removed, |t, s, e, out| {
                let end = s + trim_url(&t[s..e]);
                if end > s {
                    out.push(Edit::token(s, end, PiiKind::Url));
                }
            });
            if after != text {
                classes = self.classes_of(&after);
            }
            after
        } else {
            text.to_owned()
        };
        if present.any(b"@") && may_match(&self.email, &classes) {
            let after = self.pass(&text, None, &self.email, removed, |_, s, e, out| {
                out.push(Edit::token(s, e, PiiKind::Email));
            });
            if after != text {
                classes = self.classes_of(&after);
            }
            text = after;
        }
        if present.any(b"@[({<") && may_match(&self.email_obfuscated, &classes) {
            text = self.pass(
                &text,
                None,
                &self.email_obfuscated,
                removed,
                |_, s, e, out| {
                    out.push(Edit::token(s, e, PiiKind::Email));
                },
            );
        }
        if !present.any(b"0123456789") {
            // IBANs, IP addresses, cards and phones all have digits: only mentions are left.
            return self.mentions(text, mention, removed);
        }
        // The IBAN and IPv4 patterns match ASCII only and look at their neighbours only
        // through `\b` and the ASCII checks below, so scanning the ASCII stand-in of a
        // non-ASCII text finds the same matches at the same offsets, with the fast engine.
        let mut stand_in = self.stand_in_of(&text);
        let after = self.pass(
            &text,
            stand_in.as_deref(),
            &self.iban,
            removed,
            |t, s, e, out| {
                // `@ab12…` is a mention (or a pseudonym written by an earlier scrub), not an
                // IBAN.
                if t[..s].ends_with('@') {
                    return;
                }
                if let Some(len) = checks::iban_prefix(&t[s..e]) {
                    out.push(Edit::token(s, s + len, PiiKind::Iban));
                }
            },
        );
        if after != text {
            present = Present::of(&after);
            stand_in = self.stand_in_of(&after);
        }
        text = after;
        if present.any(b":") {
            let after = self.pass(&text, None, &self.ipv6, removed, |t, s, e, out| {
                let cand = t[s..e].trim_end_matches(':');
                let end = s + cand.len();
                let glued = ends_with_word(&t[..s]) || starts_with_word(&t[end..]);
                let parses = cand.parse::<Ipv6Addr>().is_ok();
                if parses && !glued && cand.contains(|c: char| c.is_ascii_hexdigit()) {
                    out.push(Edit::token(s, end, PiiKind::IpAddress));
                }
            });
            if after != text {
                stand_in = self.stand_in_of(&after);
            }
            text = after;
        }
        text = self.pass(
            &text,
            stand_in.as_deref(),
            &self.ipv4,
            removed,
            |t, s, e, out| {
                let dotted_before =
                    t[..s].ends_with('.') && t[..s.saturating_sub(1)].ends_with(is_digit);
                let dotted_after = t[e..].starts_with('.') && t[e + 1..].starts_with(is_digit);
                let octets_ok = t[s..e].split('.').all(|o| o.parse::<u8>().is_ok());
                if octets_ok && !dotted_before && !dotted_after {
                    out.push(Edit::token(s, e, PiiKind::IpAddress));
                }
            },
        );
        text = self.pass(&text, None, &self.number, removed, checks::numbers);
        self.mentions(text, mention, removed)
    }

    /// The ASCII stand-in the IBAN and IPv4 passes scan instead of `text`: `None` (scan the
    /// text itself) when it is ASCII. See [`ascii_stand_in`].
    fn stand_in_of(&self, text: &str) -> Option<String> {
        (self.stand_in && !text.is_ascii()).then(|| ascii_stand_in(text))
    }

    /// The class stand-in the URL and e-mail passes are prefiltered with: `None` (no
    /// prefilter) when the text is ASCII. See [`class_stand_in`].
    fn classes_of(&self, text: &str) -> Option<String> {
        (self.stand_in && !text.is_ascii()).then(|| class_stand_in(text))
    }

    /// The mention pass (the last of a round).
    fn mentions(
        &self,
        text: String,
        mention: &dyn Fn(&str) -> Option<String>,
        removed: &mut [u32; 7],
    ) -> String {
        if !text.contains('@') {
            return text;
        }
        self.pass(&text, None, &self.mention, removed, |t, s, e, out| {
            // What precedes it in the output: a mention just replaced may end in `]`.
            let before = match out.last() {
                Some(prev) if prev.end == s => prev.with.as_deref().unwrap_or_default(),
                _ => &t[..s],
            };
            if ends_with_word(before) || starts_with_word(&t[e..]) {
                return;
            }
            let name = &t[s + 1..e];
            let with = match mention(name) {
                Some(pseudonym) => format!("@{pseudonym}"),
                None if is_pseudonym(name) => return,
                None => PiiKind::Mention.token().to_owned(),
            };
            out.push(Edit {
                start: s,
                end: e,
                kind: PiiKind::Mention,
                with: Some(with),
            });
        })
    }

    /// Runs `check` on every match of `re` in `scan` (with the whole of it, for context) and
    /// applies the edits it asks for to `text`, in order and without overlaps. `scan` is
    /// `text` itself or its ASCII stand-in (same length, same offsets).
    fn pass(
        &self,
        text: &str,
        scan: Option<&str>,
        re: &Regex,
        removed: &mut [u32; 7],
        mut check: impl FnMut(&str, usize, usize, &mut Vec<Edit>),
    ) -> String {
        let scan = scan.unwrap_or(text);
        debug_assert_eq!(scan.len(), text.len());
        let mut edits = Vec::new();
        for m in re.find_iter(scan) {
            check(scan, m.start(), m.end(), &mut edits);
        }
        if edits.is_empty() {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for edit in edits {
            debug_assert!(at <= edit.start && edit.start < edit.end);
            out.push_str(&text[at..edit.start]);
            out.push_str(edit.with.as_deref().unwrap_or(edit.kind.token()));
            removed[edit.kind.index()] += 1;
            at = edit.end;
        }
        out.push_str(&text[at..]);
        out
    }
}

/// Which ASCII bytes a text holds: one pass over it answers every "does it contain any of
/// these characters" question of a round.
struct Present(u128);

impl Present {
    fn of(text: &str) -> Self {
        Present(
            text.bytes()
                .filter(u8::is_ascii)
                .fold(0u128, |set, b| set | (1u128 << b)),
        )
    }

    /// Whether the text holds any of `chars` (ASCII).
    fn any(&self, chars: &[u8]) -> bool {
        chars.iter().any(|&b| self.0 & (1u128 << b) != 0)
    }
}

/// `text` with each non-ASCII character replaced, byte for byte, by `_` when it is a word
/// character as the regex crate's Unicode `\b` sees it and by `#` when it is not. A pattern
/// that matches ASCII characters other than `_` and `#` only, and sees its neighbours only
/// through `\b`, finds the same matches at the same offsets in it; and the regex crate's fast
/// engine (a lazy DFA) runs over ASCII text, where Unicode word boundaries in non-ASCII text
/// make it fall back to a backtracking one (a fifth of the anonymizer's time before).
fn ascii_stand_in(text: &str) -> String {
    stand_in(text, |c| {
        if regex_syntax::is_word_character(c) {
            '_'
        } else {
            '#'
        }
    })
}

/// `text` with each non-ASCII character replaced, byte for byte, by `a` when it is a word
/// character as the regex crate's Unicode `\w` and `\b` see it, by a space when it is white
/// space (`\s`), and by `,` otherwise. Every character class of the URL and e-mail patterns
/// (`\w`, `\s`, `[^\W\d_]`, `[^\s<>"]`, the local part's class, the brackets) holds the
/// replacement of every character it holds, `\b` and `\s` see the same boundaries and spaces,
/// no replacement is a literal those patterns need outside a class (`@`, `.`, `://`, brackets),
/// and their only counted repetition (`{2,}`) has no upper bound. So wherever such a pattern
/// matches the text, it also matches here at the same offsets: when it finds nothing here
/// there is nothing in the text, and the scan of this ASCII string runs on the regex crate's
/// fast engine, where Unicode word boundaries send a scan of non-ASCII text to a backtracking
/// one. It may match more (`a` also stands for a digit of another script, and a multi-byte
/// letter counts as several), so a match here sends the text itself through the pattern.
fn class_stand_in(text: &str) -> String {
    stand_in(text, |c| {
        if regex_syntax::is_word_character(c) {
            'a'
        } else if c.is_whitespace() {
            ' '
        } else {
            ','
        }
    })
}

/// `text` with each non-ASCII character replaced, byte for byte, by `replace(c)` (ASCII): an
/// ASCII string with the text's length and offsets.
fn stand_in(text: &str, replace: impl Fn(char) -> char) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            out.extend(std::iter::repeat_n(replace(c), c.len_utf8()));
        }
    }
    out
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit()
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn ends_with_word(s: &str) -> bool {
    s.chars().next_back().is_some_and(is_word)
}

fn starts_with_word(s: &str) -> bool {
    s.chars().next().is_some_and(is_word)
}

/// 32 lowercase hex digits: what [`crate::pseudonym`] writes.
fn is_pseudonym(name: &str) -> bool {
    name.len() == 32
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The length of a URL match without trailing punctuation and without a `)` that closes a
/// parenthesis opened before the URL.
fn trim_url(url: &str) -> usize {
    let mut end = url.len();
    loop {
        let s = &url[..end];
        let Some(last) = s.chars().next_back() else {
            return 0;
        };
        let unbalanced = last == ')' && s.matches('(').count() < s.matches(')').count();
        if matches!(last, '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '*') || unbalanced {
            end -= last.len_utf8();
        } else {
            return end;
        }
    }
}
