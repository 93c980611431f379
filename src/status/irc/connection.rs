//! The bot's IRC connection (Buildbot's `irc.py`): one task that connects (TLS when asked),
//! logs in (SASL PLAIN, or NickServ's IDENTIFY), joins the channels with their keys,
//! answers PING, paces what it sends so that the server does not kick the bot for
//! flooding, and reconnects after `lostDelay` when the connection drops or `failedDelay`
//! when it could not be made. It knows nothing of builds: lines addressed to the bot go to
//! the chat logic as [`Incoming`], and lines to send come in through a [`Link`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures_util::StreamExt;
use irc_proto::{Command, IrcCodec, Message, Response};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::config::status::{IrcChannel, IrcConfig};

/// The longest wait for connecting, the TLS handshake and the server's welcome.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection silent this long is asked for a PING; silent as long again, it is dead
/// (a server that vanished without closing the connection).
const IDLE: Duration = Duration::from_secs(120);

/// Lines sent at once before pacing starts, and the pace after (ngircd and ergo both
/// penalise about one line a second beyond a short burst).
const BURST: f64 = 5.0;
const LINES_PER_SECOND: f64 = 2.0;

/// The longest text in one PRIVMSG: a line is 512 bytes with the server's prefix
/// (`:nick!user@host`, up to about 100 bytes) and the command.
pub const MAX_TEXT: usize = 400;

/// What the connection needs from the config; a change of anything but `channels`
/// reconnects.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub use_ssl: bool,
    pub nick: String,
    pub password: Option<String>,
    pub use_sasl: bool,
    pub channels: Vec<IrcChannel>,
    pub lost_delay: Option<f64>,
    pub failed_delay: Option<f64>,
}

impl Settings {
    pub fn new(config: &IrcConfig) -> Settings {
        Settings {
            host: config.host.clone(),
            port: config.port,
            use_ssl: config.use_ssl,
            nick: config.nick.clone(),
            password: config.password.clone(),
            use_sasl: config.use_sasl,
            channels: config.channels.clone(),
            lost_delay: config.lost_delay,
            failed_delay: config.failed_delay,
        }
    }

    /// Whether `other` reaches the same server as the same user: only then is the
    /// connection kept through a reconfig.
    fn same_login(&self, other: &Settings) -> bool {
        (&self.host, self.port, self.use_ssl, &self.nick)
            == (&other.host, other.port, other.use_ssl, &other.nick)
            && (&self.password, self.use_sasl) == (&other.password, other.use_sasl)
    }

    fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn lost_delay(&self) -> Duration {
        Duration::from_secs_f64(
            self.lost_delay
                .unwrap_or_else(|| 1.0 + 4.0 * fastrand::f64()),
        )
    }

    fn failed_delay(&self) -> Duration {
        Duration::from_secs_f64(
            self.failed_delay
                .unwrap_or_else(|| 45.0 + 15.0 * fastrand::f64()),
        )
    }
}

/// A line addressed to the bot: in a channel (`nick: command`) or privately.
#[derive(Clone, Debug)]
pub struct Incoming {
    /// The nick that wrote it.
    pub from: String,
    /// The channel it was said in; `None`, a private message.
    pub channel: Option<String>,
    /// The command, without the bot's nick.
    pub text: String,
    /// The connection it came over; replies go over the same one.
    pub generation: u64,
}

/// One line to send, over connection `generation` (`None`: whichever is up); `sent` is
/// answered once it is written, and dropped if that connection is gone.
struct Outgoing {
    line: String,
    generation: Option<u64>,
    sent: Option<oneshot::Sender<()>>,
}

enum Control {
    Reconfigure(Settings),
    Join(IrcChannel),
    Leave(String),
}

/// A handle on the connection for the chat logic and the outbox's transport.
#[derive(Clone)]
pub struct Link {
    /// The generation of the connection that is up and logged in, if one is.
    up: watch::Receiver<Option<u64>>,
    queue: mpsc::UnboundedSender<Outgoing>,
    control: mpsc::UnboundedSender<Control>,
}

impl Link {
    /// The generation of the connection once one is up; `None` when the connection task
    /// has ended.
    pub async fn wait_up(&self) -> Option<u64> {
        let mut up = self.up.clone();
        let generation = *up.wait_for(Option::is_some).await.ok()?;
        generation
    }

    /// Queues `line` (one whole IRC command) for connection `generation`; the answer comes
    /// when it has been written, or never (an error) if that connection broke first.
    pub fn send(&self, generation: Option<u64>, line: String) -> oneshot::Receiver<()> {
        let (sent, written) = oneshot::channel();
        let _ = self.queue.send(Outgoing {
            line,
            generation,
            sent: Some(sent),
        });
        written
    }

    /// Queues PRIVMSG (or NOTICE) lines for `text`, split at the IRC line limit.
    pub fn say(
        &self,
        generation: Option<u64>,
        target: &str,
        text: &str,
        notice: bool,
    ) -> Vec<oneshot::Receiver<()>> {
        let command = if notice { "NOTICE" } else { "PRIVMSG" };
        split_text(text)
            .into_iter()
            .map(|part| self.send(generation, format!("{command} {target} :{part}")))
            .collect()
    }

    pub fn join(&self, channel: IrcChannel) {
        let _ = self.control.send(Control::Join(channel));
    }

    pub fn leave(&self, channel: String) {
        let _ = self.control.send(Control::Leave(channel));
    }

    pub fn reconfigure(&self, settings: Settings) {
        let _ = self.control.send(Control::Reconfigure(settings));
    }
}

/// Splits `text` into lines that fit one IRC message each: at newlines, and at the last
/// space before the limit (or inside a word that is longer).
pub fn split_text(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    for line in text.lines() {
        let mut rest = line.trim_end();
        while rest.len() > MAX_TEXT {
            let mut cut = MAX_TEXT;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let at = rest[..cut].rfind(' ').filter(|&at| at > 0).unwrap_or(cut);
            parts.push(rest[..at].to_string());
            rest = rest[at..].trim_start();
        }
        if !rest.is_empty() {
            parts.push(rest.to_string());
        }
    }
    parts
}

/// The running connection task.
pub struct Connection {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Connection {
    /// Starts connecting; lines addressed to the bot go to `incoming`.
    pub fn spawn(
        name: String,
        settings: Settings,
        incoming: mpsc::UnboundedSender<Incoming>,
    ) -> (Connection, Link) {
        let (up_sender, up) = watch::channel(None);
        let (queue, queue_receiver) = mpsc::unbounded_channel();
        let (control, control_receiver) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let runner = Runner {
            name,
            settings,
            incoming,
            up: up_sender,
            queue: queue_receiver,
            control: control_receiver,
            joined: BTreeMap::new(),
            generation: 0,
            stop: stop.clone(),
        };
        let task = tokio::spawn(runner.run());
        (Connection { stop, task }, Link { up, queue, control })
    }

    /// Says QUIT and ends the task.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

type Reader = FramedRead<Box<dyn AsyncRead + Send + Unpin>, IrcCodec>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// How a session ended.
enum Ended {
    /// The server closed it or it broke: reconnect after `lostDelay`.
    Lost(String),
    /// Logging in failed: reconnect after `failedDelay`.
    Failed(String),
    /// A reconfig changed the server or the login: reconnect now.
    Reconfigured,
    Stopped,
}

struct Runner {
    name: String,
    settings: Settings,
    incoming: mpsc::UnboundedSender<Incoming>,
    up: watch::Sender<Option<u64>>,
    queue: mpsc::UnboundedReceiver<Outgoing>,
    control: mpsc::UnboundedReceiver<Control>,
    /// Channels joined by `join` (lowercase name to channel): rejoined after a reconnect
    /// with the configured ones.
    joined: BTreeMap<String, IrcChannel>,
    generation: u64,
    stop: CancellationToken,
}

impl Runner {
    async fn run(mut self) {
        let name = self.name.clone();
        loop {
            let server = self.settings.server();
            let connected = tokio::select! {
                connected = self.connect() => connected,
                () = self.stop.cancelled() => break,
            };
            let delay = match connected {
                Err(error) => {
                    tracing::warn!("{name}: cannot connect to {server}: {error}");
                    self.settings.failed_delay()
                }
                Ok((reader, writer)) => {
                    self.generation += 1;
                    match self.session(reader, writer).await {
                        Ended::Stopped => break,
                        Ended::Reconfigured => Duration::ZERO,
                        Ended::Lost(why) => {
                            tracing::warn!("{name}: lost the connection to {server}: {why}");
                            self.settings.lost_delay()
                        }
                        Ended::Failed(why) => {
                            tracing::error!("{name}: {server}: {why}");
                            self.settings.failed_delay()
                        }
                    }
                }
            };
            self.up.send_replace(None);
            if !self.wait(delay).await {
                break;
            }
        }
        self.up.send_replace(None);
    }

    /// Waits `delay` before the next attempt, taking reconfigs meanwhile; `false` when
    /// stopped.
    async fn wait(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return false,
                () = tokio::time::sleep_until(until) => return true,
                control = self.control.recv() => match control {
                    Some(Control::Reconfigure(settings)) => self.settings = settings,
                    Some(Control::Join(channel)) => {
                        self.joined.insert(channel.channel.to_lowercase(), channel);
                    }
                    Some(Control::Leave(channel)) => {
                        self.joined.remove(&channel.to_lowercase());
                    }
                    None => return false,
                },
                // Lines for a connection that is not up are dropped: their senders learn
                // it, and the outbox tries again after reconnecting.
                line = self.queue.recv() => if line.is_none() { return false },
            }
        }
    }

    async fn connect(&self) -> Result<(Reader, Writer), String> {
        let settings = &self.settings;
        let connect = async {
            let tcp = TcpStream::connect((settings.host.as_str(), settings.port))
                .await
                .map_err(|e| e.to_string())?;
            let _ = tcp.set_nodelay(true);
            let (read, write): (Box<dyn AsyncRead + Send + Unpin>, Writer) = match settings.use_ssl
            {
                false => {
                    let (read, write) = tokio::io::split(tcp);
                    (Box::new(read), Box::new(write))
                }
                true => {
                    let config = crate::runtime::tls::tls_config()?;
                    let name = ServerName::try_from(settings.host.clone())
                        .map_err(|e| format!("'{}' is not a server name: {e}", settings.host))?;
                    let tls = TlsConnector::from(config)
                        .connect(name, tcp)
                        .await
                        .map_err(|e| format!("TLS: {e}"))?;
                    let (read, write) = tokio::io::split(tls);
                    (Box::new(read), Box::new(write))
                }
            };
            let codec = IrcCodec::new("utf-8").map_err(|e| e.to_string())?;
            Ok::<_, String>((FramedRead::new(read, codec), write))
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| "timed out".to_string())?
    }

    /// One connection, from login until it ends.
    async fn session(&mut self, mut reader: Reader, mut writer: Writer) -> Ended {
        let generation = self.generation;
        let mut login = Login::new(&self.settings);
        for line in login.start() {
            if let Err(error) = write_line(&mut writer, &line).await {
                return Ended::Lost(error);
            }
        }
        let welcome_by = Instant::now() + CONNECT_TIMEOUT;
        let mut heard_at = Instant::now();
        let mut pinged = false;
        let mut tokens = BURST;
        let mut refilled = Instant::now();
        let mut next: Option<Outgoing> = None;
        loop {
            let ready_at = if tokens >= 1.0 {
                Instant::now()
            } else {
                refilled + Duration::from_secs_f64((1.0 - tokens) / LINES_PER_SECOND)
            };
            let registered = login.registered;
            tokio::select! {
                biased;
                () = self.stop.cancelled() => {
                    let _ = write_line(&mut writer, "QUIT :shutting down").await;
                    let _ = writer.shutdown().await;
                    return Ended::Stopped;
                }
                () = tokio::time::sleep_until(welcome_by), if !registered => {
                    return Ended::Failed("the server did not welcome the bot in time".into());
                }
                () = tokio::time::sleep_until(heard_at + IDLE) => {
                    if pinged {
                        return Ended::Lost(format!("no answer from the server for {} s", 2 * IDLE.as_secs()));
                    }
                    pinged = true;
                    heard_at = Instant::now();
                    if let Err(error) = write_line(&mut writer, "PING :moonbot").await {
                        return Ended::Lost(error);
                    }
                }
                message = reader.next() => {
                    heard_at = Instant::now();
                    pinged = false;
                    let message = match message {
                        Some(Ok(message)) => message,
                        Some(Err(error)) => return Ended::Lost(error.to_string()),
                        None => return Ended::Lost("the server closed the connection".into()),
                    };
                    let answer = match self.handle(&mut login, message, generation) {
                        Ok(lines) => lines,
                        Err(why) => return Ended::Failed(why),
                    };
                    for line in answer {
                        if let Err(error) = write_line(&mut writer, &line).await {
                            return Ended::Lost(error);
                        }
                    }
                    if !registered && login.registered {
                        let welcome = self.after_welcome(&login);
                        for line in welcome {
                            if let Err(error) = write_line(&mut writer, &line).await {
                                return Ended::Lost(error);
                            }
                        }
                        tracing::info!("{}: connected to {} as {}", self.name, self.settings.server(), login.nick);
                        self.up.send_replace(Some(generation));
                    }
                }
                control = self.control.recv() => {
                    let Some(control) = control else { return Ended::Stopped };
                    let lines = match control {
                        Control::Reconfigure(settings) => {
                            if !self.settings.same_login(&settings) {
                                let _ = write_line(&mut writer, "QUIT :reconfigured").await;
                                self.settings = settings;
                                return Ended::Reconfigured;
                            }
                            let lines = channel_changes(&self.settings.channels, &settings.channels);
                            self.settings = settings;
                            lines
                        }
                        Control::Join(channel) => {
                            let line = join_line(&channel);
                            self.joined.insert(channel.channel.to_lowercase(), channel);
                            vec![line]
                        }
                        Control::Leave(channel) => {
                            self.joined.remove(&channel.to_lowercase());
                            vec![format!("PART {channel}")]
                        }
                    };
                    if registered {
                        for line in lines {
                            if let Err(error) = write_line(&mut writer, &line).await {
                                return Ended::Lost(error);
                            }
                        }
                    }
                }
                () = tokio::time::sleep_until(ready_at), if next.is_some() && registered => {
                    let Some(outgoing) = next.take() else { continue };
                    let now = Instant::now();
                    tokens = (tokens + now.duration_since(refilled).as_secs_f64() * LINES_PER_SECOND).min(BURST) - 1.0;
                    refilled = now;
                    if let Err(error) = write_line(&mut writer, &outgoing.line).await {
                        return Ended::Lost(error);
                    }
                    if let Some(sent) = outgoing.sent {
                        let _ = sent.send(());
                    }
                }
                outgoing = self.queue.recv(), if next.is_none() && registered => {
                    let Some(outgoing) = outgoing else { return Ended::Stopped };
                    // A line meant for an earlier connection is dropped: its sender learns
                    // that connection broke.
                    if outgoing.generation.is_none_or(|g| g == generation) {
                        let now = Instant::now();
                        tokens = (tokens + now.duration_since(refilled).as_secs_f64() * LINES_PER_SECOND).min(BURST);
                        refilled = now;
                        next = Some(outgoing);
                    }
                }
            }
        }
    }

    /// Answers the server; an `Err` ends the connection as failed (a refused login).
    fn handle(
        &self,
        login: &mut Login,
        message: Message,
        generation: u64,
    ) -> Result<Vec<String>, String> {
        let from = message.source_nickname().map(str::to_string);
        match message.command {
            Command::PING(server, _) => Ok(vec![format!("PONG :{server}")]),
            Command::PRIVMSG(target, text) if login.registered => {
                let Some(from) = from else {
                    return Ok(Vec::new());
                };
                if let Some(incoming) = addressed(&login.nick, &from, &target, &text, generation) {
                    let _ = self.incoming.send(incoming);
                }
                Ok(Vec::new())
            }
            Command::Response(Response::ERR_BADCHANNELKEY, args) => {
                tracing::warn!(
                    "{}: cannot join {}: wrong channel key",
                    self.name,
                    args.get(1).map_or("", |s| s.as_str())
                );
                Ok(Vec::new())
            }
            command => login.answer(command),
        }
    }

    /// What follows the welcome: NickServ's IDENTIFY unless SASL logged in, then the
    /// channels, configured and joined by command.
    fn after_welcome(&self, login: &Login) -> Vec<String> {
        let mut lines = Vec::new();
        if let (Some(password), false) = (&self.settings.password, login.sasl_done) {
            lines.push(format!("PRIVMSG NickServ :IDENTIFY {password}"));
        }
        let mut seen = BTreeSet::new();
        for channel in self.settings.channels.iter().chain(self.joined.values()) {
            if seen.insert(channel.channel.to_lowercase()) {
                lines.push(join_line(channel));
            }
        }
        lines
    }
}

/// The command in a line someone sent: all of a private message, or a channel message that
/// starts with `nick:` or `nick,`.
fn addressed(
    nick: &str,
    from: &str,
    target: &str,
    text: &str,
    generation: u64,
) -> Option<Incoming> {
    // CTCP requests (VERSION, ACTION, ...) are not commands.
    if text.starts_with('\x01') {
        return None;
    }
    let is_channel = target.starts_with(['#', '&', '+', '!']);
    let text = match is_channel {
        false => text.trim(),
        true => {
            let head = text.get(..nick.len())?;
            if !head.eq_ignore_ascii_case(nick) {
                return None;
            }
            text[nick.len()..].strip_prefix([':', ','])?.trim()
        }
    };
    Some(Incoming {
        from: from.to_string(),
        channel: is_channel.then(|| target.to_string()),
        text: text.to_string(),
        generation,
    })
}

fn join_line(channel: &IrcChannel) -> String {
    match &channel.password {
        Some(key) => format!("JOIN {} {key}", channel.channel),
        None => format!("JOIN {}", channel.channel),
    }
}

/// JOIN and PART lines that take the bot from channels `old` to `new`.
fn channel_changes(old: &[IrcChannel], new: &[IrcChannel]) -> Vec<String> {
    let names = |list: &[IrcChannel]| -> BTreeSet<String> {
        list.iter().map(|c| c.channel.to_lowercase()).collect()
    };
    let (old_names, new_names) = (names(old), names(new));
    let mut lines: Vec<String> = old
        .iter()
        .filter(|c| !new_names.contains(&c.channel.to_lowercase()))
        .map(|c| format!("PART {}", c.channel))
        .collect();
    lines.extend(
        new.iter()
            .filter(|c| !old_names.contains(&c.channel.to_lowercase()))
            .map(join_line),
    );
    lines
}

async fn write_line(writer: &mut Writer, line: &str) -> Result<(), String> {
    let line = format!("{}\r\n", line.replace(['\r', '\n'], " "));
    writer
        .write_all(line.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    writer.flush().await.map_err(|e| e.to_string())
}

/// Registration: CAP negotiation for SASL PLAIN when there is a password, NICK and USER,
/// another nick while the one asked for is taken.
struct Login {
    nick: String,
    password: Option<Arc<str>>,
    use_sasl: bool,
    /// Registration is complete (the server's 001).
    registered: bool,
    /// SASL logged the bot in.
    sasl_done: bool,
    /// CAP negotiation is still open.
    negotiating: bool,
}

impl Login {
    fn new(settings: &Settings) -> Login {
        Login {
            nick: settings.nick.clone(),
            password: settings.password.as_deref().map(Arc::from),
            use_sasl: settings.use_sasl,
            registered: false,
            sasl_done: false,
            negotiating: settings.password.is_some(),
        }
    }

    fn start(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.negotiating {
            lines.push("CAP LS 302".to_string());
        }
        lines.push(format!("NICK {}", self.nick));
        lines.push(format!("USER {} 0 * :moonbot", self.nick));
        lines
    }

    fn answer(&mut self, command: Command) -> Result<Vec<String>, String> {
        let refused = |why: &str| Err(format!("SASL login refused: {why}"));
        match command {
            Command::Response(Response::RPL_WELCOME, args) => {
                if let Some(nick) = args.first() {
                    self.nick = nick.clone();
                }
                if self.use_sasl && !self.sasl_done {
                    return refused("the server does not offer SASL");
                }
                self.registered = true;
                Ok(Vec::new())
            }
            Command::Response(Response::ERR_NICKNAMEINUSE, _) if !self.registered => {
                self.nick.push('_');
                Ok(vec![format!("NICK {}", self.nick)])
            }
            Command::CAP(..) if self.negotiating => {
                let text = String::from(&command);
                let words: Vec<&str> = text.split([' ', ':']).collect();
                let offers_sasl = words.iter().any(|w| *w == "sasl" || w.starts_with("sasl="));
                if words.contains(&"LS") {
                    // A multi-line LS has `*` before its last parameter until the last line.
                    let more = text.contains(" LS * ");
                    if offers_sasl {
                        return Ok(vec!["CAP REQ :sasl".into()]);
                    }
                    if more {
                        return Ok(Vec::new());
                    }
                    if self.use_sasl {
                        return refused("the server does not offer SASL");
                    }
                    self.negotiating = false;
                    return Ok(vec!["CAP END".into()]);
                }
                if words.contains(&"ACK") && offers_sasl {
                    return Ok(vec!["AUTHENTICATE PLAIN".into()]);
                }
                if words.contains(&"NAK") {
                    if self.use_sasl {
                        return refused("the server would not enable SASL");
                    }
                    self.negotiating = false;
                    return Ok(vec!["CAP END".into()]);
                }
                Ok(Vec::new())
            }
            Command::AUTHENTICATE(challenge) if challenge == "+" => {
                let password = self.password.as_deref().unwrap_or_default();
                let plain = format!("{0}\0{0}\0{password}", self.nick);
                let encoded = base64::engine::general_purpose::STANDARD.encode(plain);
                Ok(vec![format!("AUTHENTICATE {encoded}")])
            }
            Command::Response(Response::RPL_SASLSUCCESS, _) => {
                self.sasl_done = true;
                self.negotiating = false;
                Ok(vec!["CAP END".into()])
            }
            Command::Response(
                Response::ERR_SASLFAIL | Response::ERR_SASLTOOLONG | Response::ERR_SASLABORT,
                args,
            ) => {
                let why = args.last().cloned().unwrap_or_default();
                if self.use_sasl {
                    return refused(&why);
                }
                tracing::warn!("SASL login refused ({why}); identifying with NickServ instead");
                self.negotiating = false;
                Ok(vec!["CAP END".into()])
            }
            _ => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_split_at_spaces_within_the_line_limit() {
        let text = format!("{} tail\nsecond", "word ".repeat(100));
        let parts = split_text(&text);
        assert!(parts.iter().all(|p| p.len() <= MAX_TEXT), "{parts:?}");
        assert_eq!(parts.join(" ").split(' ').count(), 103);
        assert_eq!(parts.last().unwrap(), "second");
        let unbroken = "x".repeat(900);
        assert_eq!(split_text(&unbroken).concat(), unbroken);
    }

    #[test]
    fn channel_lines_address_the_bot_by_nick_and_private_ones_whole() {
        let said = |target: &str, text: &str| {
            addressed("bb", "alice", target, text, 1).map(|i| (i.channel, i.text))
        };
        assert_eq!(
            said("#c", "BB: status all"),
            Some((Some("#c".into()), "status all".into()))
        );
        assert_eq!(said("#c", "bb, version").unwrap().1, "version");
        assert_eq!(said("#c", "bbx: version"), None);
        assert_eq!(said("#c", "hello bb"), None);
        assert_eq!(said("bb", "\x01VERSION\x01"), None);
        assert_eq!(
            said("bb", "list builders"),
            Some((None, "list builders".into()))
        );
    }

    #[test]
    fn a_reconfig_joins_new_channels_with_their_keys_and_leaves_dropped_ones() {
        let channel = |name: &str, key: Option<&str>| IrcChannel {
            channel: name.into(),
            password: key.map(String::from),
        };
        let lines = channel_changes(
            &[channel("#a", None), channel("#b", None)],
            &[channel("#A", None), channel("#k", Some("key"))],
        );
        assert_eq!(lines, ["PART #b", "JOIN #k key"]);
    }

    fn settings(password: Option<&str>, use_sasl: bool) -> Settings {
        Settings {
            host: "irc.test".into(),
            port: 6667,
            use_ssl: false,
            nick: "bb".into(),
            password: password.map(String::from),
            use_sasl,
            channels: Vec::new(),
            lost_delay: None,
            failed_delay: None,
        }
    }

    /// Feeds the server's `lines` to a login; answers what the bot said to each.
    fn converse(login: &mut Login, lines: &[&str]) -> Result<Vec<String>, String> {
        let mut said = Vec::new();
        for line in lines {
            let message: Message = line.parse().unwrap();
            said.extend(login.answer(message.command)?);
        }
        Ok(said)
    }

    #[test]
    fn sasl_plain_logs_in_when_the_server_offers_it() {
        let mut login = Login::new(&settings(Some("hunter22"), false));
        assert_eq!(
            login.start(),
            ["CAP LS 302", "NICK bb", "USER bb 0 * :moonbot"]
        );
        let said = converse(
            &mut login,
            &[
                ":irc.test CAP * LS :multi-prefix sasl=PLAIN,EXTERNAL",
                ":irc.test CAP bb ACK :sasl",
                "AUTHENTICATE +",
                ":irc.test 903 bb :SASL authentication successful",
                ":irc.test 001 bb :Welcome",
            ],
        )
        .unwrap();
        assert_eq!(
            said,
            [
                "CAP REQ :sasl",
                "AUTHENTICATE PLAIN",
                "AUTHENTICATE YmIAYmIAaHVudGVyMjI=",
                "CAP END"
            ]
        );
        assert!(login.registered && login.sasl_done);
    }

    #[test]
    fn without_sasl_on_offer_the_password_goes_to_nickserv_unless_sasl_is_required() {
        let mut login = Login::new(&settings(Some("pw"), false));
        let said = converse(
            &mut login,
            &[":irc.test CAP * LS :multi-prefix", ":irc.test 001 bb :hi"],
        );
        assert_eq!(said.unwrap(), ["CAP END"]);
        assert!(login.registered && !login.sasl_done);

        let mut login = Login::new(&settings(Some("pw"), true));
        let refused = converse(&mut login, &[":irc.test CAP * LS :multi-prefix"]);
        assert_eq!(
            refused.unwrap_err(),
            "SASL login refused: the server does not offer SASL"
        );
    }

    #[test]
    fn a_refused_sasl_login_fails_the_connection_only_when_sasl_is_required() {
        let exchange = [
            ":irc.test CAP * LS :sasl",
            ":irc.test CAP bb ACK :sasl",
            "AUTHENTICATE +",
            ":irc.test 904 bb :SASL authentication failed",
        ];
        let mut login = Login::new(&settings(Some("wrong"), true));
        assert_eq!(
            converse(&mut login, &exchange).unwrap_err(),
            "SASL login refused: SASL authentication failed"
        );
        let mut login = Login::new(&settings(Some("wrong"), false));
        assert_eq!(
            converse(&mut login, &exchange).unwrap().last().unwrap(),
            "CAP END"
        );
        assert!(!login.sasl_done);
    }
}
