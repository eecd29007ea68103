//! Passwords: argon2id hashes (PHC strings) and the one-time passwords `users add` hands out.
//! Hashing costs ~20 MB and tens of milliseconds on purpose, so the async shell runs these on
//! the blocking pool (`spawn_blocking`), never on a runtime thread.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

/// OWASP's argon2id minimum (19 MiB, 2 passes, 1 lane): hard for GPUs, quick enough for a sign-in.
pub const MEMORY_KIB: u32 = 19 * 1024;
pub const PASSES: u32 = 2;
pub const LANES: u32 = 1;

/// Shortest new password staff may set.
pub const MIN_LEN: usize = 12;
/// Longest password accepted at all (argon2 hashes anything; this bounds the work per request).
pub const MAX_LEN: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

fn hasher() -> Result<Argon2<'static>, PasswordError> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None)
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// An argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH`) with a fresh salt.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| PasswordError::Random(e.to_string()))?;
    let phc = hasher()?
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(phc.to_string())
}

/// Whether `password` matches `phc` (with the parameters stored in the hash). A malformed hash
/// never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_LEN {
        return false;
    }
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

/// A hash to verify against when the user name is unknown, so that an unknown name takes as
/// long as a wrong password (no user enumeration by timing).
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash("decoy password that matches nothing").unwrap_or_default())
}

/// A one-time password for a new account: 20 characters from an alphabet without look-alikes
/// (about 110 bits).
pub fn one_time() -> Result<String, PasswordError> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).map_err(|e| PasswordError::Random(e.to_string()))?;
    // 256 % 54 != 0: the bias (a few percent on some letters) costs well under a bit in total.
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect())
}

/// Why a new password is refused, in words for the form; `None` when it is acceptable.
pub fn weakness(new: &str, user_name: &str) -> Option<&'static str> {
    if new.chars().count() < MIN_LEN {
        Some("The new password must be at least 12 characters long.")
    } else if new.len() > MAX_LEN {
        Some("The new password must be at most 256 characters long.")
    } else if new.to_lowercase().contains(&user_name.to_lowercase()) {
        Some("The new password must not contain the user name.")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_the_owasp_parameters() {
        let phc = hash("correct horse battery staple").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse battery staple", &phc));
        assert!(!verify("correct horse battery stapler", &phc));
        assert!(!verify("anything", "not a phc string"));
        let again = hash("correct horse battery staple").unwrap();
        assert_ne!(phc, again, "fresh salt each time");
    }

    #[test]
    fn one_time_passwords_are_long_and_distinct() {
        let a = one_time().unwrap();
        assert_eq!(a.len(), 20);
        assert_ne!(a, one_time().unwrap());
        assert!(weakness(&a, "ann").is_none());
    }

    #[test]
    fn weak_new_passwords_are_named() {
        assert!(weakness("short", "ann").is_some());
        assert!(weakness("my name is ann-and-more", "ann").is_some());
        assert!(weakness("a perfectly long phrase", "ann").is_none());
    }
}
