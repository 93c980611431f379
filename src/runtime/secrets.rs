//! Secrets compared without telling, by how long it takes, how much of a guess was right:
//! the one comparison behind every password, token and worker login, and the HTTP Basic
//! credentials they come in.

use axum::http::{header, HeaderMap};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// Whether two secrets are equal, in a time that depends on neither: their digests are
/// compared, so neither the content nor the length of a guess shows.
pub fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    Sha256::digest(given)
        .ct_eq(&Sha256::digest(expected))
        .into()
}

/// The user name and password of an `Authorization: Basic` header.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_only_when_every_byte_and_the_length_match() {
        assert!(same_secret(b"secret", b"secret"));
        assert!(!same_secret(b"secreT", b"secret"));
        assert!(!same_secret(b"secret", b"secret2"));
        assert!(!same_secret(b"secre", b"secret"));
        assert!(!same_secret(b"", b"x"));
        assert!(same_secret(b"", b""));
    }

    #[test]
    fn basic_credentials_are_read_whatever_the_scheme_case() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "basic Ym9iOnA6dw==".parse().unwrap());
        assert_eq!(
            basic_credentials(&headers),
            Some(("bob".into(), "p:w".into()))
        );
        headers.insert(header::AUTHORIZATION, "Bearer Ym9iOnB3".parse().unwrap());
        assert_eq!(basic_credentials(&headers), None);
    }
}
