//! A real SMTP server for tests: `tests/support/smtp_server.py` on aiosmtpd
//! (Debian's `python3-aiosmtpd`, which `scripts/test` installs), keeping
//! what it accepts in a Maildir.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct SmtpServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    _keep: Option<tempfile::TempDir>,
}

/// A free loopback port (the server binds it a moment later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl SmtpServer {
    /// Starts a server on a free port with a fresh Maildir.
    pub fn start() -> SmtpServer {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SmtpServer::start_at(free_port(), dir.path());
        s._keep = Some(dir);
        s
    }

    /// Starts a server on `port` keeping mail in `dir` (a restart after
    /// [`SmtpServer::stop`] keeps what it had).
    pub fn start_at(port: u16, dir: &Path) -> SmtpServer {
        SmtpServer::spawn(port, dir, &[])
    }

    /// Starts a server that requires STARTTLS (with `cert` and `key`) and
    /// then AUTH as `user` with `password`.
    pub fn start_secure(cert: &Path, key: &Path, user: &str, password: &str) -> SmtpServer {
        let dir = tempfile::tempdir().unwrap();
        let args = [
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
            user,
            password,
        ];
        let mut s = SmtpServer::spawn(free_port(), dir.path(), &args);
        s._keep = Some(dir);
        s
    }

    fn spawn(port: u16, dir: &Path, extra: &[&str]) -> SmtpServer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .arg(port.to_string())
            .arg(dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("/usr/bin/python3: run scripts/test, which installs python3-aiosmtpd");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "the test SMTP server did not start (python3-aiosmtpd missing? run scripts/test)"
        );
        SmtpServer {
            child: Some(child),
            port,
            dir: dir.to_path_buf(),
            _keep: None,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every message accepted so far, as stored (a `Return-Path` first).
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let mut files = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(self.dir.join(sub)) {
                files.extend(rd.map(|e| e.unwrap().path()));
            }
        }
        files.sort();
        files.iter().map(|f| std::fs::read(f).unwrap()).collect()
    }

    /// Every RCPT the server answered: the address and the reply code.
    pub fn rcpts(&self) -> Vec<(String, u16)> {
        std::fs::read_to_string(self.dir.join("rcpt.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let (a, c) = l.rsplit_once(' ').unwrap();
                (a.to_string(), c.parse().unwrap())
            })
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}
