//! Web sessions: a random id in a cookie, the users logged in by id (in memory: a restart
//! logs everyone out), and CSRF tokens derived from the id with an HMAC under a key made at
//! the first form, so a visitor who is not logged in costs the server nothing to remember.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// The cookie that carries the session id.
pub const COOKIE: &str = "moonbot_session";

/// How long a login lasts.
const LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// Logins kept at most; past it the oldest goes first.
const MAX_LOGINS: usize = 10_000;

struct Login {
    user: String,
    since: Instant,
}

pub struct Sessions {
    random: SystemRandom,
    /// Made when first needed: making it at start set up the crypto library's CPU features
    /// (slow under a hypervisor) before the first request, for a master that may never
    /// serve a form.
    key: OnceLock<hmac::Key>,
    logins: Mutex<HashMap<String, Login>>,
}

impl Sessions {
    pub fn new() -> Sessions {
        Sessions {
            random: SystemRandom::new(),
            key: OnceLock::new(),
            logins: Mutex::new(HashMap::new()),
        }
    }

    fn key(&self) -> &hmac::Key {
        self.key.get_or_init(|| {
            hmac::Key::generate(hmac::HMAC_SHA256, &self.random)
                .expect("the system has a source of randomness")
        })
    }

    /// A fresh session id: 32 random bytes.
    pub fn new_id(&self) -> String {
        let mut bytes = [0u8; 32];
        self.random
            .fill(&mut bytes)
            .expect("the system has a source of randomness");
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The token a form of this session carries.
    pub fn csrf_token(&self, session: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(self.key(), session.as_bytes()))
    }

    /// Whether `token` is this session's, compared in constant time.
    pub fn csrf_matches(&self, session: &str, token: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        hmac::verify(self.key(), session.as_bytes(), &tag).is_ok()
    }

    /// Logs `user` in under a new session id (never the one the visitor brought, so a
    /// planted cookie cannot be logged in by its victim).
    pub fn log_in(&self, user: &str) -> String {
        let id = self.new_id();
        let mut logins = self.logins.lock().unwrap_or_else(|e| e.into_inner());
        logins.retain(|_, login| login.since.elapsed() < LIFETIME);
        if logins.len() >= MAX_LOGINS {
            let oldest = logins
                .iter()
                .min_by_key(|(_, login)| login.since)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                logins.remove(&oldest);
            }
        }
        logins.insert(
            id.clone(),
            Login {
                user: user.to_string(),
                since: Instant::now(),
            },
        );
        id
    }

    pub fn user(&self, session: &str) -> Option<String> {
        let logins = self.logins.lock().unwrap_or_else(|e| e.into_inner());
        logins
            .get(session)
            .filter(|login| login.since.elapsed() < LIFETIME)
            .map(|login| login.user.clone())
    }

    pub fn log_out(&self, session: &str) {
        let mut logins = self.logins.lock().unwrap_or_else(|e| e.into_inner());
        logins.remove(session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_good_for_its_own_session_only() {
        let sessions = Sessions::new();
        let (a, b) = (sessions.new_id(), sessions.new_id());
        assert_ne!(a, b);
        let token = sessions.csrf_token(&a);
        assert!(sessions.csrf_matches(&a, &token));
        assert!(!sessions.csrf_matches(&b, &token));
        assert!(!sessions.csrf_matches(&a, ""));
        assert!(!sessions.csrf_matches(&a, "!!"));
    }

    #[test]
    fn logging_in_makes_a_new_session_and_logging_out_ends_it() {
        let sessions = Sessions::new();
        let id = sessions.log_in("bob");
        assert_eq!(sessions.user(&id).as_deref(), Some("bob"));
        sessions.log_out(&id);
        assert_eq!(sessions.user(&id), None);
    }
}
