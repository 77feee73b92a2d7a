//! Access tokens (HS256 JWTs) and refresh tokens (opaque, stored hashed).
//!
//! Access tokens are checked without touching the database: signature (HS256 only; `alg: none`
//! and every other algorithm are refused), issuer, and expiry against the injected clock with
//! zero leeway. Refresh tokens are 32 random bytes, base64url; only their SHA-256 is stored.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{AccountsError, Role};

/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: Uuid,
    pub role: Role,
    /// The session (refresh-token family) this token belongs to.
    pub sid: Uuid,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Expires at, unix seconds; refused from this second on.
    pub exp: i64,
    pub iss: String,
    /// Unique token id.
    pub jti: Uuid,
}

/// What login, register and refresh hand back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPair {
    /// HS256 JWT, sent as `Authorization: Bearer ...`.
    pub access_token: String,
    /// Opaque; exchange it once at refresh for a new pair.
    pub refresh_token: String,
    /// Lifetime of the access token in seconds.
    pub expires_in: u64,
}

/// Signs and checks access tokens.
#[derive(Clone)]
pub(crate) struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
}

impl JwtKeys {
    pub(crate) fn new(secret: &[u8], issuer: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        // Expiry is checked below against the injected clock (design invariant 7), not against
        // the system clock jsonwebtoken would use.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_owned(),
        }
    }

    /// Mints an access token valid from `now` for `ttl_secs` seconds.
    pub(crate) fn issue(
        &self,
        sub: Uuid,
        role: Role,
        sid: Uuid,
        now: DateTime<Utc>,
        ttl_secs: i64,
    ) -> Result<(String, Claims), AccountsError> {
        let iat = now.timestamp();
        let claims = Claims {
            sub,
            role,
            sid,
            iat,
            exp: iat.saturating_add(ttl_secs),
            iss: self.issuer.clone(),
            jti: Uuid::new_v4(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AccountsError::Internal(format!("signing access token: {e}")))?;
        Ok((token, claims))
    }

    /// Checks signature, algorithm, issuer and expiry (at `now`). Does not look at revocations.
    pub(crate) fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Claims, AccountsError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(AccountsError::unauthorized("invalid_token"));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AccountsError::unauthorized("token_expired"),
                _ => AccountsError::unauthorized("invalid_token"),
            })?;
        let claims = data.claims;
        if data.header.alg != Algorithm::HS256 || claims.iss != self.issuer {
            return Err(AccountsError::unauthorized("invalid_token"));
        }
        if now.timestamp() >= claims.exp {
            return Err(AccountsError::unauthorized("token_expired"));
        }
        Ok(claims)
    }
}

/// A fresh refresh token: 32 random bytes, base64url without padding.
pub(crate) fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a refresh token: lowercase hex SHA-256 of its text.
pub(crate) fn refresh_token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        hex.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn keys() -> JwtKeys {
        JwtKeys::new(SECRET, "philo")
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    fn issue_at(now: DateTime<Utc>) -> (String, Claims) {
        keys()
            .issue(Uuid::now_v7(), Role::Procurer, Uuid::now_v7(), now, 900)
            .unwrap()
    }

    fn code(r: Result<Claims, AccountsError>) -> &'static str {
        match r {
            Ok(_) => "ok",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn round_trip() {
        let now = Utc::now();
        let (token, claims) = issue_at(now);
        let back = keys().verify(&token, now).unwrap();
        assert_eq!(back, claims);
        assert_eq!(back.role, Role::Procurer);
        assert_eq!(back.exp - back.iat, 900);
        assert_eq!(back.iss, "philo");
    }

    #[test]
    fn expiry_uses_the_given_clock_with_zero_leeway() {
        let (token, _) = issue_at(at(1_000_000));
        assert_eq!(code(keys().verify(&token, at(1_000_899))), "ok");
        assert_eq!(code(keys().verify(&token, at(1_000_900))), "token_expired");
        // Issued by a clock in the past, checked now.
        assert_eq!(code(keys().verify(&token, Utc::now())), "token_expired");
    }

    #[test]
    fn tampered_signature_and_payload_are_refused() {
        let now = Utc::now();
        let (token, _) = issue_at(now);
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        assert_eq!(parts.len(), 3);

        let mut sig = parts[2].clone().into_bytes();
        sig[0] = if sig[0] == b'A' { b'B' } else { b'A' };
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            String::from_utf8(sig).unwrap()
        );
        assert_eq!(code(keys().verify(&forged, now)), "invalid_token");

        // Swap in a payload claiming admin, keep the old signature.
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        claims["role"] = "admin".into();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        assert_eq!(code(keys().verify(&parts.join("."), now)), "invalid_token");
    }

    #[test]
    fn alg_none_is_refused() {
        let now = Utc::now();
        let (token, _) = issue_at(now);
        let payload = token.split('.').nth(1).unwrap();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        for forged in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}"),
            format!("{header}.{payload}.AAAA"),
        ] {
            assert_eq!(
                code(keys().verify(&forged, now)),
                "invalid_token",
                "{forged}"
            );
        }
    }

    #[test]
    fn wrong_key_other_algorithm_and_wrong_issuer_are_refused() {
        let now = Utc::now();
        let (token, claims) = issue_at(now);
        let other = JwtKeys::new(b"another-secret-another-secret-0000", "philo");
        assert_eq!(code(other.verify(&token, now)), "invalid_token");

        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(code(keys().verify(&hs512, now)), "invalid_token");

        let elsewhere = JwtKeys::new(SECRET, "not-philo");
        let (foreign, _) = elsewhere
            .issue(claims.sub, Role::User, claims.sid, now, 900)
            .unwrap();
        assert_eq!(code(keys().verify(&foreign, now)), "invalid_token");
    }

    #[test]
    fn missing_claims_and_garbage_are_refused() {
        let now = Utc::now();
        let no_exp = serde_json::json!({
            "sub": Uuid::now_v7(), "role": "user", "sid": Uuid::now_v7(),
            "iat": now.timestamp(), "iss": "philo", "jti": Uuid::new_v4(),
        });
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &no_exp,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(code(keys().verify(&token, now)), "invalid_token");
        for garbage in [
            "",
            "a.b.c",
            "not a token",
            "....",
            &"x".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert_eq!(code(keys().verify(garbage, now)), "invalid_token");
        }
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let a = new_refresh_token();
        let b = new_refresh_token();
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        let h = refresh_token_hash(&a);
        assert_eq!(h.len(), 64);
        assert!(
            h.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(h, refresh_token_hash(&a));
        assert_ne!(h, refresh_token_hash(&b));
        // SHA-256("abc")
        assert_eq!(
            refresh_token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
