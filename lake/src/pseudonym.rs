//! Keyed pseudonyms for identifiers.
//!
//! A pseudonym is `HMAC-SHA256(key, domain ‖ 0x00 ‖ id)`, truncated to 128 bits and written as
//! 32 lowercase hex digits. The key is a secret from configuration that never enters the lake;
//! without it a pseudonym cannot be linked back to an id, not even by trying every id (the
//! HMAC is keyed, unlike a plain hash). The domain separates kinds of identifiers, so a user
//! id and an item id that happen to be equal never share a pseudonym. Every row also carries
//! the key's id, so the key can rotate: rows written under the new key get new pseudonyms, and
//! a rewrite of old partitions (or a join table kept by the operator) bridges the two.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// What kind of identifier a pseudonym stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Domain {
    User,
    Item,
    Image,
    Payment,
}

impl Domain {
    fn tag(self) -> &'static [u8] {
        match self {
            Domain::User => b"user",
            Domain::Item => b"item",
            Domain::Image => b"image",
            Domain::Payment => b"payment",
        }
    }
}

/// Why a key is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("pseudonym key `{0}` is shorter than 32 bytes")]
    TooShort(String),
    #[error("pseudonym key id `{0}` must be 1-32 characters of [A-Za-z0-9_-]")]
    BadId(String),
}

/// Makes pseudonyms under one key.
#[derive(Clone)]
pub struct Pseudonymizer {
    key_id: String,
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Pseudonymizer {
    /// Shows the key id, never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pseudonymizer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Pseudonymizer {
    /// A pseudonymizer for `key` (at least 32 bytes of secret), recorded as `key_id`.
    pub fn new(key_id: &str, key: &[u8]) -> Result<Self, KeyError> {
        let id_ok = (1..=32).contains(&key_id.len())
            && key_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !id_ok {
            return Err(KeyError::BadId(key_id.chars().take(40).collect()));
        }
        if key.len() < 32 {
            return Err(KeyError::TooShort(key_id.to_owned()));
        }
        let mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
        Ok(Self {
            key_id: key_id.to_owned(),
            mac,
        })
    }

    /// The id of the key, stored next to every pseudonym.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The pseudonym of `id` in `domain`.
    pub fn pseudonym(&self, domain: Domain, id: Uuid) -> String {
        self.of_uuid(domain, id).as_str().to_owned()
    }

    /// The pseudonym of `id` in `domain`, held inline (no allocation).
    pub fn of_uuid(&self, domain: Domain, id: Uuid) -> Pseudonym {
        self.inline(domain, id.as_bytes())
    }

    /// The pseudonym of an identifier that is not a UUID (a payment reference, say).
    pub fn of_bytes(&self, domain: Domain, id: &[u8]) -> String {
        self.inline(domain, id).as_str().to_owned()
    }

    fn inline(&self, domain: Domain, id: &[u8]) -> Pseudonym {
        let mut mac = self.mac.clone();
        mac.update(domain.tag());
        mac.update(&[0]);
        mac.update(id);
        let digest = mac.finalize().into_bytes();
        let mut out = [0u8; 32];
        for (i, b) in digest[..16].iter().enumerate() {
            out[2 * i] = b"0123456789abcdef"[(b >> 4) as usize];
            out[2 * i + 1] = b"0123456789abcdef"[(b & 15) as usize];
        }
        Pseudonym(out)
    }
}

/// A pseudonym held inline: 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pseudonym([u8; 32]);

impl Pseudonym {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

impl std::fmt::Debug for Pseudonym {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"an operator secret of at least thirty-two bytes";

    #[test]
    fn stable_per_key_and_domain_and_distinct_otherwise() {
        let p = Pseudonymizer::new("k1", KEY).unwrap();
        let id = Uuid::from_u128(42);
        let a = p.pseudonym(Domain::User, id);
        assert_eq!(a, p.pseudonym(Domain::User, id), "stable");
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(a, p.pseudonym(Domain::Item, id), "domains separate");
        assert_ne!(a, p.pseudonym(Domain::User, Uuid::from_u128(43)));
        let rotated =
            Pseudonymizer::new("k2", b"another operator secret, also 32+ bytes long").unwrap();
        assert_ne!(
            a,
            rotated.pseudonym(Domain::User, id),
            "a new key, new pseudonyms"
        );
        assert_eq!(rotated.key_id(), "k2");
        assert!(!a.contains(&id.simple().to_string()), "no trace of the id");
    }

    #[test]
    fn refuses_weak_keys_and_bad_ids_and_never_prints_the_key() {
        assert_eq!(
            Pseudonymizer::new("k", b"short").unwrap_err(),
            KeyError::TooShort("k".into())
        );
        for bad in ["", "has space", "ü", &"x".repeat(33)] {
            assert!(matches!(
                Pseudonymizer::new(bad, KEY),
                Err(KeyError::BadId(_))
            ));
        }
        let p = Pseudonymizer::new("k1", KEY).unwrap();
        let shown = format!("{p:?}");
        assert!(
            shown.contains("k1") && !shown.contains("operator secret"),
            "{shown}"
        );
    }

    #[test]
    fn matches_a_reference_hmac() {
        // HMAC-SHA256(key = 32 × 0x0b, "user" ‖ 0x00 ‖ 16 zero bytes), first 16 bytes, computed
        // independently with Python's hmac module.
        let p = Pseudonymizer::new("ref", &[0x0b; 32]).unwrap();
        assert_eq!(p.pseudonym(Domain::User, Uuid::nil()), REFERENCE);
    }

    const REFERENCE: &str = "80fb02add9058dd475bb985dedb08e3b";
}
