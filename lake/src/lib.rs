//! Philo's lake: what leaves the platform for data procurers, and how it is made safe to sell.
//!
//! - [`pseudonym`]: identifiers become keyed pseudonyms (HMAC-SHA256 under a secret that never
//!   enters the lake, with a key id so the key can rotate); the same user has the same
//!   pseudonym in every table, so joins still work.
//! - [`scrub`]: free text loses e-mail addresses, phone numbers, URLs, IP addresses, payment
//!   card numbers (Luhn-checked), IBANs (mod-97-checked) and `@mentions` (replaced by the
//!   mentioned user's pseudonym).
//! - [`anonymize`]: every action as rows of the lake's fact tables, anonymized; opt-outs of data
//!   sale and erasures stop a user's rows.
//! - [`kanon`]: the `users` dimension generalised until every quasi-identifier combination
//!   occurs at least `k` times.

pub mod anonymize;
pub mod kanon;
pub mod pseudonym;
pub mod scrub;
