//! Input validation for registrations. Pure functions; every refusal is an
//! [`AccountsError::Invalid`] naming the field.

use crate::AccountsError;

pub(crate) const USERNAME_MIN: usize = 3;
pub(crate) const USERNAME_MAX: usize = 32;
pub(crate) const EMAIL_MAX: usize = 254;
pub(crate) const PASSWORD_MIN: usize = 10;
pub(crate) const PASSWORD_MAX: usize = 256;

/// 3–32 ASCII letters, digits or `_`, starting with a letter.
pub(crate) fn username(s: &str) -> Result<(), AccountsError> {
    let len = s.chars().count();
    let ok = (USERNAME_MIN..=USERNAME_MAX).contains(&len)
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(AccountsError::invalid(
            "invalid_username",
            "username",
            format!(
                "username must be {USERNAME_MIN}-{USERNAME_MAX} characters of letters, digits or \
                 '_', starting with a letter"
            ),
        ))
    }
}

/// A sane address: one `@`, a non-empty local part, a dotted domain of non-empty labels, no
/// whitespace or control characters, at most 254 bytes.
pub(crate) fn email(s: &str) -> Result<(), AccountsError> {
    let bad = || AccountsError::invalid("invalid_email", "email", "email address is not valid");
    if s.is_empty() || s.len() > EMAIL_MAX {
        return Err(bad());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let Some((local, domain)) = s.split_once('@') else {
        return Err(bad());
    };
    if local.is_empty() || local.len() > 64 || domain.contains('@') {
        return Err(bad());
    }
    if !domain.contains('.') || domain.split('.').any(str::is_empty) {
        return Err(bad());
    }
    Ok(())
}

/// 10–256 characters.
pub(crate) fn password(s: &str) -> Result<(), AccountsError> {
    let len = s.chars().count();
    if len < PASSWORD_MIN {
        Err(AccountsError::invalid(
            "password_too_short",
            "password",
            format!("password must be at least {PASSWORD_MIN} characters"),
        ))
    } else if len > PASSWORD_MAX {
        Err(AccountsError::invalid(
            "password_too_long",
            "password",
            format!("password must be at most {PASSWORD_MAX} characters"),
        ))
    } else {
        Ok(())
    }
}

/// The case-insensitive uniqueness key of a username or email.
pub(crate) fn key(s: &str) -> String {
    s.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<(), AccountsError>) -> &'static str {
        match r {
            Ok(()) => "ok",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn usernames() {
        for ok in ["abc", "Alice_01", "a_________________________bcdef", "Z99"] {
            assert_eq!(code(username(ok)), "ok", "{ok}");
        }
        let too_long = "a".repeat(33);
        for bad in [
            "",
            "ab",
            "1abc",
            "_abc",
            "ab-c",
            "ab c",
            "abç",
            "ab@c",
            too_long.as_str(),
        ] {
            assert_eq!(code(username(bad)), "invalid_username", "{bad}");
        }
        assert_eq!(code(username(&"a".repeat(32))), "ok");
    }

    #[test]
    fn emails() {
        for ok in ["a@b.co", "first.last+tag@example.org", "X@Sub.Example.COM"] {
            assert_eq!(code(email(ok)), "ok", "{ok}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a@b@c.com",
            "a b@c.com",
            "a@c.com ",
            "a@.com",
            "a@c.",
            "a@c..com",
            "a\n@c.com",
            long.as_str(),
        ] {
            assert_eq!(code(email(bad)), "invalid_email", "{bad:?}");
        }
    }

    #[test]
    fn passwords() {
        assert_eq!(code(password("123456789")), "password_too_short");
        assert_eq!(code(password("1234567890")), "ok");
        assert_eq!(code(password(&"é".repeat(256))), "ok");
        assert_eq!(code(password(&"x".repeat(257))), "password_too_long");
    }

    #[test]
    fn keys_fold_case() {
        assert_eq!(key("Alice_01"), "alice_01");
        assert_eq!(key("A@Example.COM"), "a@example.com");
    }
}
