//! A real IRC server for the IRC bot's tests (ngircd) on a free loopback
//! port, configured by a file the test writes, and a raw IRC client that joins channels,
//! talks to the bot and waits for what it says.
// Each test file uses part of this module.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// The longest wait for a line from the server.
pub const LINE_WAIT: Duration = Duration::from_secs(20);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An IRC server process; killed when dropped.
pub struct IrcServer {
    pub port: u16,
    /// The TLS port, when started with a certificate.
    pub tls_port: Option<u16>,
    child: Child,
    config: PathBuf,
}

/// A channel the server defines at start, with its key.
pub struct KeyedChannel<'a> {
    pub name: &'a str,
    pub key: &'a str,
}

impl IrcServer {
    /// ngircd on a free port in the foreground, its files in `dir`; with `tls`
    /// (certificate, key) also a TLS port; `channels` predefined with their keys.
    pub async fn ngircd(
        dir: &Path,
        tls: Option<(&Path, &Path)>,
        channels: &[KeyedChannel<'_>],
    ) -> IrcServer {
        IrcServer::ngircd_on(dir, free_port(), tls.map(|t| (free_port(), t)), channels).await
    }

    async fn ngircd_on(
        dir: &Path,
        port: u16,
        tls: Option<(u16, (&Path, &Path))>,
        channels: &[KeyedChannel<'_>],
    ) -> IrcServer {
        let mut text = format!(
            "[Global]\nName = irc.test\nInfo = test server\nListen = 127.0.0.1\nPorts = {port}\n\
             MotdPhrase = test\nPidFile = {pid}\n\
             [Limits]\nMaxNickLength = 30\nPingTimeout = 120\nPongTimeout = 20\n\
             [Options]\nDNS = no\nIdent = no\nPAM = no\n\
             MorePrivacy = no\nRequireAuthPing = no\n",
            pid = dir.join("ngircd.pid").display(),
        );
        if let Some((tls_port, (cert, key))) = tls {
            text.push_str(&format!(
                "[SSL]\nCertFile = {}\nKeyFile = {}\nPorts = {tls_port}\n",
                cert.display(),
                key.display()
            ));
        }
        for channel in channels {
            text.push_str(&format!(
                "[Channel]\nName = {}\nModes = +k {}\n",
                channel.name, channel.key
            ));
        }
        let config = dir.join("ngircd.conf");
        std::fs::write(&config, text).unwrap();
        let child = Command::new("ngircd")
            .args(["--nodaemon", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ngircd runs (scripts/test installs it)");
        let server = IrcServer {
            port,
            tls_port: tls.map(|(p, _)| p),
            child,
            config,
        };
        server.wait_listening().await;
        server
    }

    async fn wait_listening(&self) {
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("ngircd did not start listening on {}", self.port);
    }

    /// Stops the server (its connections drop).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts ngircd again on the same ports with the same config.
    pub async fn restart(&mut self) {
        self.kill();
        let child = Command::new("ngircd")
            .args(["--nodaemon", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = child;
        self.wait_listening().await;
    }
}

impl Drop for IrcServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One line from the server, split: `:nick!user@host COMMAND target :text`.
#[derive(Clone, Debug)]
pub struct Line {
    pub raw: String,
    pub from: String,
    pub command: String,
    pub params: Vec<String>,
    /// The last parameter.
    pub text: String,
}

impl Line {
    fn parse(raw: &str) -> Line {
        let mut rest = raw;
        let mut from = String::new();
        if let Some(stripped) = rest.strip_prefix(':') {
            let (prefix, tail) = stripped.split_once(' ').unwrap_or((stripped, ""));
            from = prefix.split('!').next().unwrap_or_default().to_string();
            rest = tail;
        }
        let (head, trailing) = match rest.split_once(" :") {
            Some((head, trailing)) => (head, Some(trailing)),
            None => (rest, None),
        };
        let mut words = head.split_whitespace().map(String::from);
        let command = words.next().unwrap_or_default();
        let mut params: Vec<String> = words.collect();
        params.extend(trailing.map(String::from));
        let text = params.last().cloned().unwrap_or_default();
        Line {
            raw: raw.to_string(),
            from,
            command,
            params,
            text,
        }
    }

    /// A PRIVMSG or NOTICE from `nick` to `target` (case-insensitive).
    pub fn is_message(&self, nick: &str, target: &str) -> bool {
        matches!(self.command.as_str(), "PRIVMSG" | "NOTICE")
            && self.from.eq_ignore_ascii_case(nick)
            && self
                .params
                .first()
                .is_some_and(|t| t.eq_ignore_ascii_case(target))
    }
}

/// A plain IRC client, as a person in the channel would use.
pub struct Client {
    pub nick: String,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// Every line read, for failure messages.
    pub seen: Vec<String>,
}

impl Client {
    /// Connects and registers as `nick`.
    pub async fn connect(port: u16, nick: &str) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (read, writer) = stream.into_split();
        let mut client = Client {
            nick: nick.to_string(),
            reader: BufReader::new(read),
            writer,
            seen: Vec::new(),
        };
        client.send(&format!("NICK {nick}")).await;
        client.send(&format!("USER {nick} 0 * :{nick}")).await;
        client.expect(|l| l.command == "001").await;
        client
    }

    pub async fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
    }

    /// Joins `channel` and waits until the server confirms.
    pub async fn join(&mut self, channel: &str) {
        self.send(&format!("JOIN {channel}")).await;
        self.expect(|l| l.command == "366").await;
    }

    pub async fn say(&mut self, target: &str, text: &str) {
        self.send(&format!("PRIVMSG {target} :{text}")).await;
    }

    pub async fn quit(mut self) {
        self.send("QUIT :bye").await;
    }

    /// Quits and waits until the server has closed the connection (the nick is free).
    pub async fn quit_and_wait(mut self) {
        self.send("QUIT :bye").await;
        let mut rest = String::new();
        let _ = tokio::time::timeout(LINE_WAIT, self.reader.read_to_string(&mut rest)).await;
    }

    /// The next line, answering PINGs; `None` when `wait` passes first.
    pub async fn next_line(&mut self, wait: Duration) -> Option<Line> {
        loop {
            let mut raw = String::new();
            let read = tokio::time::timeout(wait, self.reader.read_line(&mut raw))
                .await
                .ok()?
                .unwrap();
            assert!(
                read > 0,
                "the server closed the connection; seen:\n{}",
                self.seen.join("\n")
            );
            let line = Line::parse(raw.trim_end());
            self.seen.push(line.raw.clone());
            if line.command == "PING" {
                self.send(&format!("PONG :{}", line.text)).await;
                continue;
            }
            return Some(line);
        }
    }

    /// Reads until a line satisfies `wanted` and answers it; fails the test with every
    /// line seen if none comes within [`LINE_WAIT`].
    pub async fn expect(&mut self, wanted: impl Fn(&Line) -> bool) -> Line {
        let deadline = tokio::time::Instant::now() + LINE_WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_line(left).await {
                Some(line) if wanted(&line) => return line,
                Some(_) => {}
                None => panic!(
                    "{}: the line waited for did not come; seen:\n{}",
                    self.nick,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The text of the next message `from` says to `target`.
    pub async fn message_from(&mut self, from: &str, target: &str) -> String {
        self.expect(|l| l.is_message(from, target)).await.text
    }

    /// Asks the bot `command` in `channel` (`bot: command`) and answers its reply there.
    pub async fn ask(&mut self, bot: &str, channel: &str, command: &str) -> String {
        self.say(channel, &format!("{bot}: {command}")).await;
        self.message_from(bot, channel).await
    }

    /// Lines that come within `wait`, none awaited: what the bot said unasked.
    pub async fn lines_within(&mut self, wait: Duration) -> Vec<Line> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return lines;
            }
            match self.next_line(left).await {
                Some(line) => lines.push(line),
                None => return lines,
            }
        }
    }

    /// Waits until `nick` is in `channel` (its JOIN seen).
    pub async fn wait_join(&mut self, nick: &str, channel: &str) {
        self.expect(|l| {
            l.command == "JOIN"
                && l.from.eq_ignore_ascii_case(nick)
                && l.params
                    .first()
                    .is_some_and(|c| c.eq_ignore_ascii_case(channel))
        })
        .await;
    }
}

/// A small network with services: InspIRCd (cap, sasl, services_account, spanningtree)
/// linked on loopback to Atheme (NickServ, SaslServ with PLAIN), its files in a directory
/// of the test's; both killed when dropped.
pub struct ServicesNetwork {
    pub port: u16,
    pub dir: PathBuf,
    inspircd: Child,
    atheme: Child,
}

impl ServicesNetwork {
    pub async fn start(dir: &Path) -> ServicesNetwork {
        let (port, link_port) = (free_port(), free_port());
        let d = dir.display();
        let inspircd_conf = dir.join("inspircd.conf");
        std::fs::write(
            &inspircd_conf,
            format!(
                r#"<server name="irc.test" description="test server" network="Test">
<admin name="admin" nick="admin" email="admin@irc.test">
<bind address="127.0.0.1" port="{port}" type="clients">
<bind address="127.0.0.1" port="{link_port}" type="servers">
<pid file="{d}/inspircd.pid">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="{d}/inspircd.log">
<connect allow="*" timeout="60" pingfreq="120" recvq="8192" sendq="262144" localmax="100" globalmax="100" useident="no">
<performance nouserdns="yes" clonesonconnect="no">
<module name="cap">
<module name="sasl">
<module name="services_account">
<module name="spanningtree">
<link name="services.test" ipaddr="127.0.0.1" port="{link_port}" sendpass="linkpass" recvpass="linkpass">
<uline server="services.test" silent="yes">
<sasl target="services.test">
"#
            ),
        )
        .unwrap();
        let atheme_conf = dir.join("atheme.conf");
        std::fs::write(
            &atheme_conf,
            format!(
                r#"loadmodule "modules/protocol/inspircd";
loadmodule "modules/backend/opensex";
loadmodule "modules/crypto/posix";
loadmodule "modules/nickserv/main";
loadmodule "modules/nickserv/identify";
loadmodule "modules/nickserv/register";
loadmodule "modules/saslserv/main";
loadmodule "modules/saslserv/plain";
serverinfo {{
    name = "services.test"; desc = "Atheme IRC Services"; numeric = "00A";
    recontime = 1; netname = "Test"; hidehostsuffix = "users.test";
    adminname = "admin"; adminemail = "admin@irc.test"; registeremail = "noreply@irc.test";
    loglevel = {{ error; info; admin; network; }};
    maxlogins = 5; maxusers = 5; mdlimit = 30; emaillimit = 10; emailtime = 300;
    auth = none; casemapping = rfc1459;
}};
uplink "irc.test" {{
    host = "127.0.0.1"; port = {link_port};
    send_password = "linkpass"; receive_password = "linkpass";
}};
general {{
    flood_msgs = 0; flood_time = 10; ratelimit_uses = 0; ratelimit_period = 60;
    kline_time = 7; clone_time = 0; commit_interval = 5;
    default_clone_allowed = 5; default_clone_warn = 4;
    uplink_sendq_limit = 1048576; language = "en"; immune_level = immune;
}};
nickserv {{ nick = "NickServ"; user = "NickServ"; host = "services.test"; real = "Nickname Services"; maxnicks = 5; expire = 30; }};
saslserv {{ nick = "SaslServ"; user = "SaslServ"; host = "services.test"; real = "SASL Authentication Agent"; }};
logfile "{d}/atheme-sasl.log" {{ all; }};
"#
            ),
        )
        .unwrap();
        let output = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
        let inspircd = Command::new("inspircd")
            .args(["--nofork", "--runasroot", "--config"])
            .arg(&inspircd_conf)
            .stdout(output("inspircd.out"))
            .stderr(Stdio::null())
            .spawn()
            .expect("inspircd runs (scripts/test installs it)");
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let atheme = Command::new("atheme-services")
            .arg("-n")
            .arg("-c")
            .arg(&atheme_conf)
            .arg("-D")
            .arg(dir)
            .arg("-l")
            .arg(dir.join("atheme.log"))
            .arg("-p")
            .arg(dir.join("atheme.pid"))
            .stdout(output("atheme.out"))
            .stderr(Stdio::null())
            .spawn()
            .expect("atheme-services runs (scripts/test installs it)");
        let network = ServicesNetwork {
            port,
            dir: dir.to_path_buf(),
            inspircd,
            atheme,
        };
        network.wait_services().await;
        network
    }

    /// Waits until SaslServ is on the network: the services linked and burst.
    async fn wait_services(&self) {
        let mut probe = Client::connect(self.port, "probe").await;
        for _ in 0..100 {
            probe.send("WHOIS SaslServ").await;
            let answer = probe
                .expect(|l| l.command == "311" || l.command == "401")
                .await;
            if answer.command == "311" {
                probe.quit().await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("atheme did not link; see {}", self.dir.display());
    }

    /// Registers the account `nick` with `password` through NickServ, as a person would,
    /// and leaves the nick free again.
    pub async fn register(&self, nick: &str, password: &str) {
        let mut client = Client::connect(self.port, nick).await;
        client
            .say(
                "NickServ",
                &format!("REGISTER {password} {nick}@example.org"),
            )
            .await;
        let answer = client
            .expect(|l| l.from == "NickServ" && l.command == "NOTICE")
            .await;
        assert!(answer.text.contains("is now registered"), "{answer:?}");
        client.quit_and_wait().await;
    }
}

impl Drop for ServicesNetwork {
    fn drop(&mut self) {
        for child in [&mut self.atheme, &mut self.inspircd] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
