//! Delivering mail over SMTP with lettre: plain, STARTTLS or implicit TLS, with AUTH PLAIN
//! or LOGIN, one session per batch, kept a moment for the next.
//!
//! lettre's low-level connection is driven command by command rather than through its
//! `send`, because `send` drops the connection on any refusal and answers for the message
//! as a whole: here each recipient's answer counts (a 450 is retried for that recipient
//! alone, a 550 recorded), and a refused message fails alone while the rest of the batch
//! goes on over the same connection.
//!
//! TLS is rustls with the system's roots (which honour `SSL_CERT_FILE`/`SSL_CERT_DIR`), and,
//! as OpenSSL does, a relay whose certificate is itself in that store is trusted (a
//! self-signed private relay). lettre's STARTTLS takes only its own TLS settings, which
//! cannot carry that rule, so the exchange up to STARTTLS is spoken here.

use std::error::Error as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt, Rset, Starttls};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::Error as SmtpError;
use lettre::Address;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;

use crate::config::status::MailNotifierConfig;
use crate::db::{OutboxMessage, Refusal};
use crate::runtime::tls::tls_config;
use crate::status::outbox::{Outcome, Transport};

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
    StartTls(Arc<ClientConfig>),
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
        let tls = || tls_config().map_err(|e| format!("{relay}: cannot set up TLS: {e}"));
        let security = if config.use_smtps {
            Security::Implicit(tls()?)
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
    async fn connect(&self) -> Result<AsyncSmtpConnection, String> {
        let connect = async {
            // Without TCP_NODELAY the short `.` that ends each message waits for the
            // relay's delayed acknowledgement of the body: 40 ms per mail on Linux.
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| format!("cannot connect: {e}"))?;
            tcp.set_nodelay(true)
                .map_err(|e| format!("cannot connect: {e}"))?;
            let stream: Box<dyn AsyncTokioStream> = match &self.security {
                Security::Plain => Box::new(tcp),
                Security::Implicit(tls) => Box::new(
                    self.handshake(tls, tcp, Vec::new())
                        .await
                        .map_err(|e| format!("cannot connect: {e}"))?,
                ),
                Security::StartTls(tls) => {
                    let (tcp, greeting) = starttls(tcp, &self.hello).await?;
                    Box::new(
                        self.handshake(tls, tcp, greeting)
                            .await
                            .map_err(|e| format!("STARTTLS failed: {e}"))?,
                    )
                }
            };
            AsyncSmtpConnection::connect_with_transport(stream, &self.hello)
                .await
                .map_err(|e| format!("cannot connect: {}", describe(&e)))
        };
        let mut connection = tokio::time::timeout(COMMAND_TIMEOUT, connect)
            .await
            .map_err(|_| "cannot connect: timed out".to_string())??;
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

    /// The TLS handshake, the certificate checked against `relayhost`.
    async fn handshake(
        &self,
        tls: &Arc<ClientConfig>,
        tcp: TcpStream,
        greeting: Vec<u8>,
    ) -> Result<Secured, String> {
        let server = ServerName::try_from(self.host.clone())
            .map_err(|_| format!("'{}' is not a host name", self.host))?;
        let stream = TlsConnector::from(tls.clone())
            .connect(server, tcp)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Secured {
            greeting,
            read: 0,
            stream,
        })
    }

    /// One transaction: MAIL, RCPT for each recipient still to reach, DATA. Each
    /// recipient's answer counts: a 4xx is retried for that recipient alone, a 5xx recorded
    /// and never retried; the message is refused for good when every recipient is. Answers
    /// the recipients refused, each with whether for good.
    async fn transact(
        &self,
        connection: &mut AsyncSmtpConnection,
        message: &OutboxMessage,
    ) -> Result<Vec<(Refusal, bool)>, Failure> {
        let envelope = Envelope::of(message).map_err(Failure::Permanent)?;
        let mut parameters = Vec::new();
        if !message.body.is_ascii() {
            if !connection
                .server_info()
                .supports_feature(Extension::EightBitMime)
            {
                return Err(Failure::Temporary(
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
                return Err(Failure::Temporary(
                    "an address is not ASCII and the relay does not offer SMTPUTF8".into(),
                ));
            }
            parameters.push(MailParameter::SmtpUtfEight);
        }

        let mail = Mail::new(Some(envelope.from.clone()), parameters);
        command(connection, mail).await.map_err(|failure| {
            let failure = match failure {
                // 530, authentication required: the session's setup is wrong, not the
                // message; it goes once credentials are configured.
                Failure::Permanent(why) if why.starts_with("530") => Failure::Temporary(why),
                failure => failure,
            };
            failure.refused(format!("MAIL FROM <{}> refused", envelope.from))
        })?;
        // Each refused recipient, and whether for good.
        let mut refused = Vec::new();
        for (text, recipient) in &envelope.to {
            match command(connection, Rcpt::new(recipient.clone(), vec![])).await {
                Ok(()) => {}
                Err(Failure::Connection(why)) => return Err(Failure::Connection(why)),
                Err(failure) => refused.push((
                    Refusal {
                        recipient: text.clone(),
                        answer: format!("<{recipient}>: {}", failure.text()),
                    },
                    matches!(failure, Failure::Permanent(_)),
                )),
            }
        }
        if refused.len() == envelope.to.len() {
            reset(connection).await?;
            let answers: Vec<&str> = refused.iter().map(|(r, _)| r.answer.as_str()).collect();
            let why = format!("every recipient refused: {}", answers.join("; "));
            let for_good = refused.iter().filter(|(_, permanent)| *permanent).count();
            if for_good == refused.len() {
                return Err(Failure::Permanent(why));
            }
            if for_good == 0 {
                return Err(Failure::Temporary(why));
            }
            // Some for good, some for now: each recipient's answer is the outcome.
            return Ok(refused);
        }
        if let Err(failure) = command(connection, Data).await {
            reset(connection).await?;
            return Err(failure.refused("DATA refused".into()));
        }
        within(DATA_TIMEOUT, connection.message(data_lines(&message.body)))
            .await
            .map_err(Failure::of)
            .map_err(|f| f.refused("message refused".into()))?;
        Ok(refused)
    }
}

impl Transport for SmtpTransport {
    type Session = AsyncSmtpConnection;
    /// The next batch usually comes within moments of the last (each build's end is one),
    /// and a session saves it the connection, the greeting, EHLO and QUIT. Two seconds, as
    /// Postfix's own client caches its connections; a relay that dropped the session
    /// meanwhile costs one failed command, then the message goes over a new one.
    const KEEP_IDLE: Duration = Duration::from_secs(2);

    async fn open(&self) -> Result<AsyncSmtpConnection, String> {
        self.connect()
            .await
            .map_err(|why| one_line(&format!("{}: {why}", self.relay())))
    }

    /// `meta` is `{"from": ADDRESS, "to": [ADDRESS, ...]}` (every recipient, To and Cc; an
    /// address may carry a display name); `body` is the RFC 5322 text.
    async fn send(&self, connection: &mut AsyncSmtpConnection, message: &OutboxMessage) -> Outcome {
        let relay = self.relay();
        let answer = |why: String| one_line(&format!("{relay}: {why}"));
        match self.transact(connection, message).await {
            Ok(refused) if refused.is_empty() => Outcome::Accepted,
            Ok(refused) => {
                let (refused, retry): (Vec<_>, Vec<_>) =
                    refused.into_iter().partition(|(_, permanent)| *permanent);
                let with_relay = |refusals: Vec<(Refusal, bool)>| {
                    refusals
                        .into_iter()
                        .map(|(refusal, _)| Refusal {
                            answer: answer(refusal.answer),
                            ..refusal
                        })
                        .collect()
                };
                Outcome::Partly {
                    retry: with_relay(retry),
                    refused: with_relay(refused),
                }
            }
            Err(Failure::Temporary(why)) => Outcome::Failed(answer(why)),
            Err(Failure::Permanent(why)) => Outcome::Refused(answer(why)),
            Err(Failure::Connection(why)) => Outcome::Broken(answer(why)),
        }
    }

    /// Every message has its answer already; a failed QUIT changes none of them.
    async fn close(&self, mut connection: AsyncSmtpConnection) {
        let _ = within(COMMAND_TIMEOUT, connection.quit()).await;
    }
}

/// The addresses of one message, from its outbox `meta`.
struct Envelope {
    from: Address,
    /// Each recipient as the message names it, and its address.
    to: Vec<(String, Address)>,
}

impl Envelope {
    fn of(message: &OutboxMessage) -> Result<Envelope, String> {
        let from = message.meta["from"]
            .as_str()
            .ok_or("the message has no 'from' address")
            .and_then(|from| address(from).map_err(|_| "the message's 'from' is not an address"))
            .map_err(|why| why.to_string());
        let named: Vec<&serde_json::Value> = match &message.retry_recipients {
            Some(retry) => message.meta["to"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|value| retry.iter().any(|r| value.as_str() == Some(r)))
                .collect(),
            None => message.meta["to"]
                .as_array()
                .into_iter()
                .flatten()
                .collect(),
        };
        let to = match named.is_empty() {
            true => Err("the message has no recipients".to_string()),
            false => named
                .iter()
                .map(|value| match value.as_str() {
                    Some(text) => address(text)
                        .map(|address| (text.to_string(), address))
                        .map_err(|_| format!("recipient '{text}' is not an address")),
                    None => Err(format!("recipient {value} is not an address")),
                })
                .collect::<Result<Vec<_>, _>>(),
        };
        Ok(Envelope {
            from: from?,
            to: to?,
        })
    }

    fn is_ascii(&self) -> bool {
        std::iter::once(&self.from)
            .chain(self.to.iter().map(|(_, address)| address))
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

/// Why a message (or one recipient) was not delivered.
enum Failure {
    /// Refused for now (a 4xx); the connection is still good for the next message.
    Temporary(String),
    /// Refused for good (a 5xx, or a message that can never be sent).
    Permanent(String),
    /// The connection broke or stopped answering: the rest of the batch cannot go over it.
    Connection(String),
}

impl Failure {
    fn of(error: Timed) -> Failure {
        match error {
            // 421: the relay is closing the connection.
            Timed::Failed(error) if error.status().is_some_and(|c| c.to_string() == "421") => {
                Failure::Connection(format!("connection lost: {}", describe(&error)))
            }
            Timed::Failed(error) if error.is_permanent() => Failure::Permanent(describe(&error)),
            Timed::Failed(error) if error.is_transient() => Failure::Temporary(describe(&error)),
            Timed::Failed(error) => {
                Failure::Connection(format!("connection lost: {}", describe(&error)))
            }
            timed_out => Failure::Connection(timed_out.to_string()),
        }
    }

    fn text(&self) -> &str {
        match self {
            Failure::Temporary(why) | Failure::Permanent(why) | Failure::Connection(why) => why,
        }
    }

    /// Says what was refused, when the relay refused it.
    fn refused(self, what: String) -> Failure {
        match self {
            Failure::Temporary(why) => Failure::Temporary(format!("{what}: {why}")),
            Failure::Permanent(why) => Failure::Permanent(format!("{what}: {why}")),
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

/// A TLS connection, in the shape lettre takes an existing stream in. After STARTTLS the
/// relay sends no new greeting, but lettre reads one before its EHLO: the first greeting is
/// read to it again.
#[derive(Debug)]
struct Secured {
    greeting: Vec<u8>,
    /// How much of `greeting` lettre has read.
    read: usize,
    stream: TlsStream<TcpStream>,
}

impl AsyncTokioStream for Secured {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.stream.get_ref().0.peer_addr()
    }
}

impl AsyncRead for Secured {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.read < this.greeting.len() {
            let rest = &this.greeting[this.read..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.read += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Secured {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The exchange before TLS: greeting, EHLO, STARTTLS. Answers the connection, ready for the
/// handshake, and the greeting.
async fn starttls(tcp: TcpStream, hello: &ClientId) -> Result<(TcpStream, Vec<u8>), String> {
    let mut relay = BufReader::new(tcp);
    let greeting = reply(&mut relay)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    if !greeting.starts_with(b"220") {
        return Err(format!(
            "cannot connect: {}",
            String::from_utf8_lossy(&greeting).trim_end()
        ));
    }
    let failed = |e: String| format!("STARTTLS failed: {e}");
    let ehlo = Ehlo::new(hello.clone()).to_string();
    relay
        .get_mut()
        .write_all(ehlo.as_bytes())
        .await
        .map_err(|e| failed(e.to_string()))?;
    let extensions =
        String::from_utf8_lossy(&reply(&mut relay).await.map_err(failed)?).into_owned();
    let offered = extensions.lines().any(|line| {
        line.get(4..)
            .is_some_and(|keyword| keyword.trim().eq_ignore_ascii_case("STARTTLS"))
    });
    if !extensions.starts_with("250") || !offered {
        return Err("STARTTLS is not offered, and useTls requires it".into());
    }
    relay
        .get_mut()
        .write_all(Starttls.to_string().as_bytes())
        .await
        .map_err(|e| failed(e.to_string()))?;
    let ready = reply(&mut relay).await.map_err(failed)?;
    if !ready.starts_with(b"220") {
        return Err(failed(
            String::from_utf8_lossy(&ready).trim_end().to_string(),
        ));
    }
    // Anything sent before the handshake would be read as if it came encrypted.
    if !relay.buffer().is_empty() {
        return Err(failed(
            "the relay sent data before the TLS handshake".into(),
        ));
    }
    Ok((relay.into_inner(), greeting))
}

/// One reply, every line of it (`250-...` lines continue, `250 ...` ends).
async fn reply(relay: &mut BufReader<TcpStream>) -> Result<Vec<u8>, String> {
    let mut text = Vec::new();
    loop {
        let start = text.len();
        let read = relay
            .read_until(b'\n', &mut text)
            .await
            .map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("the relay closed the connection".into());
        }
        if text.len() > 64 * 1024 {
            return Err("the relay's reply is too long".into());
        }
        if text.get(start + 3) != Some(&b'-') {
            return Ok(text);
        }
    }
}
