//! Delivering mail over SMTP with lettre: plain, STARTTLS or implicit TLS, with AUTH PLAIN
//! or LOGIN, one connection per batch.

use crate::config::status::MailNotifierConfig;
use crate::db::OutboxMessage;
use crate::status::outbox::Transport;

/// How to reach the relay, built once per config: the TLS settings (system roots, which
/// honour `SSL_CERT_FILE`/`SSL_CERT_DIR`) are loaded here, not per connection.
pub struct SmtpTransport {}

impl SmtpTransport {
    /// The transport a MailNotifier's `relayhost`, `smtpPort`, `useTls`, `useSmtps`,
    /// `smtpUser` and `smtpPassword` describe.
    pub fn new(config: &MailNotifierConfig) -> Result<SmtpTransport, String> {
        todo!("{config:?}")
    }
}

impl Transport for SmtpTransport {
    /// `meta` is `{"from": ADDRESS, "to": [ADDRESS, ...]}` (every recipient, To and Cc; an
    /// address may carry a display name); `body` is the RFC 5322 text.
    async fn deliver(&self, batch: &[OutboxMessage]) -> Vec<Result<(), String>> {
        todo!("{}", batch.len())
    }
}
