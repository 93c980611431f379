//! Delivering mail over SMTP with lettre: plain, STARTTLS or implicit TLS, with AUTH PLAIN
//! or LOGIN, one connection per batch.
//!
//! lettre's low-level connection is driven command by command rather than through its
//! `send`, because `send` drops the connection on any refusal: here a refused message (or
//! recipient) fails alone and the rest of the batch goes on over the same connection.

use std::error::Error as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::Error as SmtpError;
use lettre::Address;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::config::status::MailNotifierConfig;
use crate::db::OutboxMessage;
use crate::status::outbox::Transport;

/// The longest wait for connecting, the TLS handshake or the answer to one command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest wait for the body to be sent and accepted: relays may scan a message before
/// answering (RFC 5321 §4.5.3.2.6 suggests ten minutes).
const DATA_TIMEOUT: Duration = Duration::from_secs(300);

/// The mechanisms offered, in order of preference.
const MECHANISMS: [Mechanism; 2] = [Mechanism::Plain, Mechanism::Login];

/// How the connection is protected.
enum Security {
    Plain,
    /// STARTTLS after the greeting; a relay that does not offer it is an error.
    StartTls(TlsParameters),
    /// TLS from the first byte (SMTPS).
    Implicit(Arc<ClientConfig>),
}

/// How to reach the relay, built once per config: the TLS settings (system roots, which
/// honour `SSL_CERT_FILE`/`SSL_CERT_DIR`) are loaded here, not per connection.
pub struct SmtpTransport {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    hello: ClientId,
}

impl SmtpTransport {
    /// The transport a MailNotifier's `relayhost`, `smtpPort`, `useTls`, `useSmtps`,
    /// `smtpUser` and `smtpPassword` describe.
    pub fn new(config: &MailNotifierConfig) -> Result<SmtpTransport, String> {
        let relay = relay_name(&config.relayhost, config.smtp_port);
        let tls = || {
            TlsParameters::new(config.relayhost.clone())
                .map_err(|e| format!("{relay}: cannot set up TLS: {}", describe(&e)))
        };
        let security = if config.use_smtps {
            Security::Implicit(
                implicit_tls_config().map_err(|e| format!("{relay}: cannot set up TLS: {e}"))?,
            )
        } else if config.use_tls {
            Security::StartTls(tls()?)
        } else {
            Security::Plain
        };
        let credentials = match (&config.smtp_user, &config.smtp_password) {
            (Some(user), Some(password)) => Some(Credentials::new(user.clone(), password.clone())),
            _ => None,
        };
        Ok(SmtpTransport {
            host: config.relayhost.clone(),
            port: config.smtp_port,
            security,
            credentials,
            hello: ClientId::default(),
        })
    }

    fn relay(&self) -> String {
        relay_name(&self.host, self.port)
    }

    /// Connects, secures and authenticates: the session every message of a batch goes over.
    async fn open(&self) -> Result<AsyncSmtpConnection, String> {
        let connect = async {
            // Without TCP_NODELAY the short `.` that ends each message waits for the
            // relay's delayed acknowledgement of the body: 40 ms per mail on Linux.
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| e.to_string())?;
            tcp.set_nodelay(true).map_err(|e| e.to_string())?;
            let stream: Box<dyn AsyncTokioStream> = match &self.security {
                Security::Implicit(tls) => {
                    let server = ServerName::try_from(self.host.clone())
                        .map_err(|_| format!("'{}' is not a host name", self.host))?;
                    let stream = TlsConnector::from(tls.clone())
                        .connect(server, tcp)
                        .await
                        .map_err(|e| e.to_string())?;
                    Box::new(ImplicitTls(stream))
                }
                _ => Box::new(tcp),
            };
            AsyncSmtpConnection::connect_with_transport(stream, &self.hello)
                .await
                .map_err(|e| describe(&e))
        };
        let mut connection = tokio::time::timeout(COMMAND_TIMEOUT, connect)
            .await
            .map_err(|_| "cannot connect: timed out".to_string())?
            .map_err(|why| format!("cannot connect: {why}"))?;
        if let Security::StartTls(tls) = &self.security {
            if !connection.can_starttls() {
                connection.abort().await;
                return Err("STARTTLS is not offered, and useTls requires it".into());
            }
            within(
                COMMAND_TIMEOUT,
                connection.starttls(tls.clone(), &self.hello),
            )
            .await
            .map_err(|why| format!("STARTTLS failed: {why}"))?;
        }
        if let Some(credentials) = &self.credentials {
            if connection
                .server_info()
                .get_auth_mechanism(&MECHANISMS)
                .is_none()
            {
                connection.abort().await;
                return Err("AUTH failed: the relay offers neither PLAIN nor LOGIN".into());
            }
            if let Err(why) =
                within(COMMAND_TIMEOUT, connection.auth(&MECHANISMS, credentials)).await
            {
                connection.abort().await;
                return Err(format!("AUTH failed: {why}"));
            }
        }
        Ok(connection)
    }

    /// One transaction: MAIL, RCPT for each recipient, DATA. Recipients the relay refuses
    /// are logged and skipped, as Buildbot does; the message fails only when all are refused.
    async fn send(
        &self,
        connection: &mut AsyncSmtpConnection,
        message: &OutboxMessage,
    ) -> Result<(), Failure> {
        let envelope = Envelope::of(message).map_err(Failure::Message)?;
        let mut parameters = Vec::new();
        if !message.body.is_ascii() {
            if !connection
                .server_info()
                .supports_feature(Extension::EightBitMime)
            {
                return Err(Failure::Message(
                    "the message is not ASCII and the relay does not offer 8BITMIME".into(),
                ));
            }
            parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        if !envelope.is_ascii() {
            if !connection
                .server_info()
                .supports_feature(Extension::SmtpUtfEight)
            {
                return Err(Failure::Message(
                    "an address is not ASCII and the relay does not offer SMTPUTF8".into(),
                ));
            }
            parameters.push(MailParameter::SmtpUtfEight);
        }

        let mail = Mail::new(Some(envelope.from.clone()), parameters);
        command(connection, mail)
            .await
            .map_err(|f| f.refused(format!("MAIL FROM <{}> refused", envelope.from)))?;
        let mut refused = Vec::new();
        for recipient in &envelope.to {
            match command(connection, Rcpt::new(recipient.clone(), vec![])).await {
                Ok(()) => {}
                Err(Failure::Message(why)) => refused.push(format!("<{recipient}>: {why}")),
                Err(broken) => return Err(broken),
            }
        }
        if refused.len() == envelope.to.len() {
            reset(connection).await?;
            return Err(Failure::Message(format!(
                "every recipient refused: {}",
                refused.join("; ")
            )));
        }
        if let Err(failure) = command(connection, Data).await {
            reset(connection).await?;
            return Err(failure.refused("DATA refused".into()));
        }
        within(DATA_TIMEOUT, connection.message(data_lines(&message.body)))
            .await
            .map_err(Failure::of)
            .map_err(|f| f.refused("message refused".into()))?;
        if !refused.is_empty() {
            tracing::warn!(
                "{}: outbox message {} delivered except to refused recipients: {}",
                self.relay(),
                message.id,
                refused.join("; ")
            );
        }
        Ok(())
    }
}

impl Transport for SmtpTransport {
    /// `meta` is `{"from": ADDRESS, "to": [ADDRESS, ...]}` (every recipient, To and Cc; an
    /// address may carry a display name); `body` is the RFC 5322 text.
    async fn deliver(&self, batch: &[OutboxMessage]) -> Vec<Result<(), String>> {
        let relay = self.relay();
        let mut connection = match self.open().await {
            Ok(connection) => connection,
            Err(why) => {
                let error = one_line(&format!("{relay}: {why}"));
                return batch.iter().map(|_| Err(error.clone())).collect();
            }
        };
        let mut broken: Option<String> = None;
        let mut results = Vec::with_capacity(batch.len());
        for message in batch {
            if let Some(why) = &broken {
                results.push(Err(one_line(&format!(
                    "{relay}: not sent, the connection broke: {why}"
                ))));
                continue;
            }
            results.push(match self.send(&mut connection, message).await {
                Ok(()) => Ok(()),
                Err(Failure::Message(why)) => Err(one_line(&format!("{relay}: {why}"))),
                Err(Failure::Connection(why)) => {
                    let error = one_line(&format!("{relay}: {why}"));
                    broken = Some(why);
                    Err(error)
                }
            });
        }
        if broken.is_none() {
            // Every message has its answer already; a failed QUIT changes none of them.
            let _ = within(COMMAND_TIMEOUT, connection.quit()).await;
        }
        results
    }
}

/// The addresses of one message, from its outbox `meta`.
struct Envelope {
    from: Address,
    to: Vec<Address>,
}

impl Envelope {
    fn of(message: &OutboxMessage) -> Result<Envelope, String> {
        let from = message.meta["from"]
            .as_str()
            .ok_or("the message has no 'from' address")
            .and_then(|from| address(from).map_err(|_| "the message's 'from' is not an address"))
            .map_err(|why| why.to_string());
        let to = match message.meta["to"].as_array() {
            Some(to) if !to.is_empty() => {
                to.iter()
                    .map(|value| match value.as_str() {
                        Some(text) => address(text)
                            .map_err(|_| format!("recipient '{text}' is not an address")),
                        None => Err(format!("recipient {value} is not an address")),
                    })
                    .collect::<Result<Vec<_>, _>>()
            }
            _ => Err("the message has no recipients".into()),
        };
        Ok(Envelope {
            from: from?,
            to: to?,
        })
    }

    fn is_ascii(&self) -> bool {
        std::iter::once(&self.from)
            .chain(&self.to)
            .all(|address: &Address| AsRef::<str>::as_ref(address).is_ascii())
    }
}

/// The body without its final line end: lettre ends the data with `CRLF . CRLF`, whose
/// first CRLF is meant to end the last line, so a body's own would add an empty line.
fn data_lines(body: &[u8]) -> &[u8] {
    body.strip_suffix(b"\r\n")
        .or_else(|| body.strip_suffix(b"\n"))
        .unwrap_or(body)
}

/// The address part of `Name <user@host>` or of a bare address.
fn address(text: &str) -> Result<Address, lettre::address::AddressError> {
    text.parse::<Mailbox>().map(|mailbox| mailbox.email)
}

/// Why a message was not delivered.
enum Failure {
    /// The relay refused this message; the connection is still good for the next one.
    Message(String),
    /// The connection broke or stopped answering: the rest of the batch cannot go over it.
    Connection(String),
}

impl Failure {
    fn of(error: Timed) -> Failure {
        match error {
            // 421: the relay is closing the connection.
            Timed::Failed(error)
                if error.status().is_some_and(|code| code.to_string() != "421") =>
            {
                Failure::Message(describe(&error))
            }
            Timed::Failed(error) => {
                Failure::Connection(format!("connection lost: {}", describe(&error)))
            }
            timed_out => Failure::Connection(timed_out.to_string()),
        }
    }

    /// Says what was refused, when the relay refused it.
    fn refused(self, what: String) -> Failure {
        match self {
            Failure::Message(why) => Failure::Message(format!("{what}: {why}")),
            broken => broken,
        }
    }
}

async fn command<C: std::fmt::Display>(
    connection: &mut AsyncSmtpConnection,
    command: C,
) -> Result<(), Failure> {
    within(COMMAND_TIMEOUT, connection.command(command))
        .await
        .map(drop)
        .map_err(Failure::of)
}

/// Ends a refused transaction so the next message starts clean; if that fails, the
/// connection is no longer usable.
async fn reset(connection: &mut AsyncSmtpConnection) -> Result<(), Failure> {
    within(COMMAND_TIMEOUT, connection.command(Rset))
        .await
        .map(drop)
        .map_err(|error| Failure::Connection(format!("RSET failed: {error}")))
}

/// A lettre step that failed or did not finish in time.
enum Timed {
    Failed(SmtpError),
    TimedOut(Duration),
}

impl std::fmt::Display for Timed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Timed::Failed(error) => f.write_str(&describe(error)),
            Timed::TimedOut(limit) => write!(f, "no answer within {} s", limit.as_secs()),
        }
    }
}

async fn within<T>(
    limit: Duration,
    step: impl Future<Output = Result<T, SmtpError>>,
) -> Result<T, Timed> {
    match tokio::time::timeout(limit, step).await {
        Ok(result) => result.map_err(Timed::Failed),
        Err(_) => Err(Timed::TimedOut(limit)),
    }
}

fn relay_name(host: &str, port: u16) -> String {
    format!("smtp relay {host}:{port}")
}

/// The relay's answer as it gave it (`535 5.7.8 Authentication credentials invalid`), or
/// the local failure's causes (`invalid peer certificate: UnknownIssuer`) without lettre's
/// label for its kind, which the caller's context says better.
fn describe(error: &SmtpError) -> String {
    if let Some(code) = error.status() {
        let text = error.source().map(|s| s.to_string()).unwrap_or_default();
        return one_line(format!("{code} {text}").trim_end());
    }
    // lettre wraps its own errors in places (a failed TLS upgrade): describe the inner one.
    if let Some(inner) = error.source().and_then(|s| s.downcast_ref::<SmtpError>()) {
        return describe(inner);
    }
    let mut causes: Vec<String> = Vec::new();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !causes.iter().any(|known| known.contains(&text)) {
            causes.push(text);
        }
        cause = inner.source();
    }
    if causes.is_empty() {
        causes.push(error.to_string());
    }
    one_line(&causes.join(": "))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An SMTPS connection, in the shape lettre takes an existing stream in.
#[derive(Debug)]
struct ImplicitTls(TlsStream<TcpStream>);

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

/// TLS for SMTPS, verified against the system's roots (which honour `SSL_CERT_FILE` and
/// `SSL_CERT_DIR`), as lettre's own TLS for STARTTLS is.
fn implicit_tls_config() -> Result<Arc<ClientConfig>, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(format!(
            "no trusted certificate found in the system store ({})",
            errors.join("; ")
        ));
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
