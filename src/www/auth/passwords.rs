//! Password checks for the config's login method: `util.BasicAuth`'s list, or an Apache
//! `.htpasswd` file in any form `htpasswd` writes: crypt (DES), bcrypt (`$2y$`, `$2b$`,
//! `$2a$`), Apache's MD5 (`$apr1$`), SHA1 (`{SHA}`), and glibc's `$1$`, `$5$`, `$6$`.
//!
//! A wrong user costs what a wrong password does: an unknown user's password is still
//! checked, against a hash of the same kind, and the answer thrown away.

use std::path::Path;

use base64::Engine as _;
use md5::{Digest as _, Md5};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use crate::config::status::AuthConfig;
use crate::runtime::secrets::same_secret;

/// Whether `password` is `user`'s. An htpasswd file that cannot be read lets nobody in
/// (and says why in the log).
pub async fn check(auth: &AuthConfig, basedir: &Path, user: &str, password: &str) -> bool {
    match auth {
        AuthConfig::Basic(users) => {
            let known = users.iter().find(|(name, _)| name == user);
            // The same comparison for an unknown user, against the first user's password.
            let expected = known.or(users.first()).map(|(_, p)| p.as_str());
            let same = expected
                .is_some_and(|expected| same_secret(password.as_bytes(), expected.as_bytes()));
            known.is_some() && same
        }
        AuthConfig::HtPasswd(file) | AuthConfig::HtPasswdApr(file) => {
            let path = basedir.join(file);
            let text = match tokio::fs::read_to_string(&path).await {
                Ok(text) => text,
                Err(error) => {
                    tracing::error!("cannot read the htpasswd file {}: {error}", path.display());
                    return false;
                }
            };
            let entries = parse_htpasswd(&text);
            let known = entries.iter().find(|(name, _)| *name == user);
            let Some((_, hash)) = known.or(entries.first()) else {
                return false;
            };
            let (hash, password) = (hash.to_string(), password.to_string());
            // bcrypt takes tens of milliseconds: off the async threads.
            let matches = tokio::task::spawn_blocking(move || verify(&password, &hash))
                .await
                .unwrap_or(false);
            known.is_some() && matches
        }
    }
}

/// The `user:hash` lines of an htpasswd file; blank lines and `#` comments are skipped.
fn parse_htpasswd(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(user, hash)| (user, hash.split(':').next().unwrap_or_default()))
        .collect()
}

/// Whether `password` matches an htpasswd hash, whatever its form.
pub fn verify(password: &str, hash: &str) -> bool {
    if let Some(encoded) = hash.strip_prefix("{SHA}") {
        let digest = Sha1::digest(password.as_bytes());
        let expected = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap_or_default();
        return expected.ct_eq(digest.as_slice()).into();
    }
    if let Some(rest) = hash.strip_prefix("$apr1$") {
        let Some(salt) = rest.split('$').next() else {
            return false;
        };
        let computed = md5_crypt(password.as_bytes(), salt.as_bytes(), b"$apr1$");
        return computed.as_bytes().ct_eq(hash.as_bytes()).into();
    }
    // Plain text is never taken: Apache reads it only on Windows and NetWare.
    pwhash::unix::verify(password, hash)
}

/// The crypt alphabet of MD5-based hashes.
const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Poul-Henning Kamp's MD5 crypt, which Apache's `$apr1$` is with its own magic string.
fn md5_crypt(password: &[u8], salt: &[u8], magic: &[u8]) -> String {
    let salt = &salt[..salt.len().min(8)];
    let mut alternate = Md5::new();
    alternate.update(password);
    alternate.update(salt);
    alternate.update(password);
    let alternate = alternate.finalize();
    let mut context = Md5::new();
    context.update(password);
    context.update(magic);
    context.update(salt);
    let mut left = password.len();
    while left > 0 {
        context.update(&alternate[..left.min(16)]);
        left = left.saturating_sub(16);
    }
    let mut bits = password.len();
    while bits != 0 {
        if bits & 1 != 0 {
            context.update([0u8]);
        } else {
            context.update(&password[..1]);
        }
        bits >>= 1;
    }
    let mut digest = context.finalize();
    for round in 0..1000 {
        let mut context = Md5::new();
        if round & 1 != 0 {
            context.update(password);
        } else {
            context.update(digest);
        }
        if round % 3 != 0 {
            context.update(salt);
        }
        if round % 7 != 0 {
            context.update(password);
        }
        if round & 1 != 0 {
            context.update(digest);
        } else {
            context.update(password);
        }
        digest = context.finalize();
    }
    let mut out = String::with_capacity(magic.len() + salt.len() + 23);
    out.push_str(&String::from_utf8_lossy(magic));
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let mut push = |value: u32, count: usize| {
        let mut value = value;
        for _ in 0..count {
            out.push(ITOA64[(value & 0x3f) as usize] as char);
            value >>= 6;
        }
    };
    let d = |i: usize| u32::from(digest[i]);
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        push((d(a) << 16) | (d(b) << 8) | d(c), 4);
    }
    push(d(11), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hash_form_matches_its_password_only() {
        // Made by Apache's htpasswd (-m, -s, -d, -B, -2, -5) and passlib (md5_crypt).
        let cases = [
            "$apr1$5LBmSn1Q$y0VPqbW4Oj0UM5.lioO3m/",
            "{SHA}VBPuJHI7uixaa6LQGWx4s+5GKNE=",
            "jMG7GohDybgVs",
            "$2y$05$KbqkJC4sSpHOjUaWzbSdvO7YhM5Dkwtd4/O1dNcMnv.ZzvETvDKy6",
            "$5$dCHyepveDsY7qBFh$S8vovbJpNy2hCFAaHdibl.86K3uGrDG1JN80DsWuAR1",
            "$1$PhjALLyv$.p8KfwTKUezWKmpV1ZRJ31",
        ];
        for hash in cases {
            assert!(
                verify("myPassword", hash),
                "{hash} should take its password"
            );
            assert!(
                !verify("wrong", hash),
                "{hash} should refuse a wrong password"
            );
        }
    }

    #[test]
    fn plain_text_and_empty_hashes_let_nobody_in() {
        assert!(!verify("secret", "secret"));
        assert!(!verify("", ""));
        assert!(!verify("x", "$apr1$"));
        assert!(!verify("x", "{SHA}not base64"));
    }

    #[test]
    fn htpasswd_lines_skip_comments_and_blanks() {
        let text = "# users\nbob:$apr1$x$y\n\r\njill:{SHA}abc:extra\n";
        assert_eq!(
            parse_htpasswd(text),
            vec![("bob", "$apr1$x$y"), ("jill", "{SHA}abc")]
        );
    }
}
