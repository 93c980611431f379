//! A real OpenSSH server on loopback standing in for Gerrit's ssh port: its own host key,
//! one authorized client key, and a forced command that answers `gerrit version` and
//! records every other command line it is asked to run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Sshd {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Sshd {
    /// Starts sshd on a free port; `gerrit version` answers `version`.
    pub fn start(version: &str) -> Sshd {
        std::fs::create_dir_all("/run/sshd").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        for key in ["host_key", "client_key"] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path.join(key))
                .status()
                .unwrap();
            assert!(status.success(), "ssh-keygen");
        }
        std::fs::copy(path.join("client_key.pub"), path.join("authorized_keys")).unwrap();
        std::fs::write(path.join("version"), version).unwrap();
        let script = format!(
            "#!/bin/sh\n\
             if [ \"$SSH_ORIGINAL_COMMAND\" = 'gerrit version' ]; then\n\
               echo \"gerrit version $(cat {dir}/version)\"; exit 0\n\
             fi\n\
             printf '%s\\0' \"$SSH_ORIGINAL_COMMAND\" >> {dir}/commands\n",
            dir = path.display()
        );
        std::fs::write(path.join("command.sh"), script).unwrap();
        Command::new("chmod")
            .arg("755")
            .arg(path.join("command.sh"))
            .status()
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nPidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\nStrictModes no\nPermitRootLogin yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             ForceCommand {dir}/command.sh\n",
            dir = path.display()
        );
        std::fs::write(path.join("sshd_config"), config).unwrap();
        let mut sshd = Sshd {
            dir,
            port,
            child: None,
        };
        sshd.resume();
        sshd
    }

    /// Starts (again) on the same port and keys.
    pub fn resume(&mut self) {
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(self.dir.path().join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd runs (openssh-server, installed by scripts/test)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "sshd listens on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops listening: connections are refused until [`Sshd::resume`].
    pub fn pause(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn identity_file(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// The server's host key as a known_hosts line.
    pub fn known_hosts(&self) -> String {
        let key = std::fs::read_to_string(self.dir.path().join("host_key.pub")).unwrap();
        let mut fields = key.split_whitespace();
        let (kind, blob) = (fields.next().unwrap(), fields.next().unwrap());
        format!("[127.0.0.1]:{} {kind} {blob}", self.port)
    }

    /// Every command recorded so far, each split into words by a POSIX shell as a remote
    /// shell would.
    pub fn commands(&self) -> Vec<Vec<String>> {
        let raw = std::fs::read(self.dir.path().join("commands")).unwrap_or_default();
        raw.split(|b| *b == 0)
            .filter(|line| !line.is_empty())
            .map(|line| words(Path::new("sh"), &String::from_utf8_lossy(line)))
            .collect()
    }

    /// Waits until `n` commands were recorded (failing after a while); answers them all.
    pub fn wait_for(&self, n: usize) -> Vec<Vec<String>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let commands = self.commands();
            if commands.len() >= n {
                return commands;
            }
            assert!(
                Instant::now() < deadline,
                "{n} commands arrive; got {commands:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.pause();
    }
}

/// `line` split into words by `shell`, as the remote side reads a command line.
fn words(shell: &Path, line: &str) -> Vec<String> {
    let out = Command::new(shell)
        .args([
            "-c",
            "eval \"set -- $1\"; printf '%s\\0' \"$@\"",
            "sh",
            line,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{line} is a shell command line");
    out.stdout
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect()
}
