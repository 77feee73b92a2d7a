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
//! - [`columnar`], [`table`], [`storage`]: the rows as Arrow batches in Delta tables on local
//!   disk or S3, each commit recording the log positions it holds.
//! - [`job`]: the anonymizer stream job (exactly once, micro-batched).
//! - [`tables`]: all tables open together — erasure, compaction, vacuum, the `users`
//!   dimension, the daily aggregates, SQL over them.

pub mod anonymize;
pub mod columnar;
pub mod job;
pub mod kanon;
pub mod pseudonym;
pub mod scrub;
pub mod storage;
pub mod table;
pub mod tables;

/// The Delta Lake stack the lake is written with (Arrow, DataFusion), for readers of it.
pub use deltalake;
