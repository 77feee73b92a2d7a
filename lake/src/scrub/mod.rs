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
//! check per candidate; a second round runs only when the first removed something. Measured
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
        // The replacements never add `/ @ : .` or brackets, nor digits before the last pass.
        let has = |t: &str, chars: &[char]| t.contains(chars);
        let mut text = if has(text, &['/']) || text.contains("www.") {
            self.pass(text, &self.url, removed, |t, s, e, out| {
                let end = s + trim_url(&t[s..e]);
                if end > s {
                    out.push(Edit::token(s, end, PiiKind::Url));
                }
            })
        } else {
            text.to_owned()
        };
        if has(&text, &['@']) {
            text = self.pass(&text, &self.email, removed, |_, s, e, out| {
                out.push(Edit::token(s, e, PiiKind::Email));
            });
        }
        if has(&text, &['@', '[', '(', '{', '<']) {
            text = self.pass(&text, &self.email_obfuscated, removed, |_, s, e, out| {
                out.push(Edit::token(s, e, PiiKind::Email));
            });
        }
        if !text.bytes().any(|b| b.is_ascii_digit()) {
            // IBANs, IP addresses, cards and phones all have digits: only mentions are left.
            return self.mentions(text, mention, removed);
        }
        text = self.pass(&text, &self.iban, removed, |t, s, e, out| {
            // `@ab12…` is a mention (or a pseudonym written by an earlier scrub), not an IBAN.
            if t[..s].ends_with('@') {
                return;
            }
            if let Some(len) = checks::iban_prefix(&t[s..e]) {
                out.push(Edit::token(s, s + len, PiiKind::Iban));
            }
        });
        if has(&text, &[':']) {
            text = self.pass(&text, &self.ipv6, removed, |t, s, e, out| {
                let cand = t[s..e].trim_end_matches(':');
                let end = s + cand.len();
                let glued = ends_with_word(&t[..s]) || starts_with_word(&t[end..]);
                let parses = cand.parse::<Ipv6Addr>().is_ok();
                if parses && !glued && cand.contains(|c: char| c.is_ascii_hexdigit()) {
                    out.push(Edit::token(s, end, PiiKind::IpAddress));
                }
            });
        }
        text = self.pass(&text, &self.ipv4, removed, |t, s, e, out| {
            let dotted_before =
                t[..s].ends_with('.') && t[..s.saturating_sub(1)].ends_with(is_digit);
            let dotted_after = t[e..].starts_with('.') && t[e + 1..].starts_with(is_digit);
            let octets_ok = t[s..e].split('.').all(|o| o.parse::<u8>().is_ok());
            if octets_ok && !dotted_before && !dotted_after {
                out.push(Edit::token(s, e, PiiKind::IpAddress));
            }
        });
        text = self.pass(&text, &self.number, removed, checks::numbers);
        self.mentions(text, mention, removed)
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
        self.pass(&text, &self.mention, removed, |t, s, e, out| {
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

    /// Runs `check` on every match of `re` in `text` (with the whole text, for context) and
    /// applies the edits it asks for, in order and without overlaps.
    fn pass(
        &self,
        text: &str,
        re: &Regex,
        removed: &mut [u32; 7],
        mut check: impl FnMut(&str, usize, usize, &mut Vec<Edit>),
    ) -> String {
        let mut edits = Vec::new();
        for m in re.find_iter(text) {
            check(text, m.start(), m.end(), &mut edits);
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
