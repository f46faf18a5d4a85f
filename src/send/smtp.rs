//! Delivery over SMTP: lettre's pooled async transport, and what a server's
//! reply means for the row (sent, retried, failed, the recipient refused, or
//! the server unavailable).
//!
//! `AFTERCARE_SMTP_URL`:
//! - `smtp://host:port`: plain SMTP, for a relay on the same host or network;
//! - `smtp://user:pass@host:587`: STARTTLS required (a password never goes
//!   in clear), then AUTH;
//! - `smtps://[user:pass@]host:465`: TLS from the first byte.
//!
//! `?tls=required` asks for STARTTLS without credentials too.

use std::time::Duration;

use std::sync::{Arc, Mutex};

use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Code;
use tokio::sync::Semaphore;

use super::transport::{Error, Outgoing, Transport};

/// How to talk to the relay, as read from `AFTERCARE_SMTP_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// User and password, percent-decoded.
    pub credentials: Option<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    Plain,
    StartTls,
    Tls,
}

impl Endpoint {
    /// Reads an `smtp://` or `smtps://` URL; the error says what is wrong
    /// with it (the password never appears in it).
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let u = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(u.scheme(), "smtp" | "smtps") {
            return Err(format!(
                "scheme {:?}: write smtp://host:port, smtp://user:pass@host:587 \
                 (STARTTLS) or smtps://host:465",
                u.scheme()
            ));
        }
        let host = match u.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return Err("no host: write smtp://host:port".into()),
        };
        let decode = |s: &str, what: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| format!("the {what} is not UTF-8 once percent-decoded"))
        };
        let credentials = match (u.username(), u.password()) {
            ("", None) => None,
            ("", Some(_)) => return Err("a password without a user name".into()),
            (_, None) => return Err("a user name without a password: write user:pass@".into()),
            (user, Some(pass)) => Some((decode(user, "user name")?, decode(pass, "password")?)),
        };
        let mut tls = None;
        for (k, v) in u.query_pairs() {
            match (k.as_ref(), v.as_ref()) {
                ("tls", "required") => tls = Some(Security::StartTls),
                ("tls", other) => {
                    return Err(format!(
                        "tls={other:?}: the only choice is tls=required (STARTTLS); \
                         smtps:// is TLS from the start"
                    ));
                }
                (other, _) => return Err(format!("unknown parameter {other:?}")),
            }
        }
        if u.path().len() > 1 {
            return Err(format!("unexpected path {:?}", u.path()));
        }
        let (security, default_port) = match u.scheme() {
            "smtp" if credentials.is_some() || tls.is_some() => (Security::StartTls, 587),
            "smtp" => (Security::Plain, 25),
            _ => (Security::Tls, 465),
        };
        Ok(Endpoint {
            host,
            port: u.port().unwrap_or(default_port),
            security,
            credentials,
        })
    }
}

/// The SMTP transport's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub endpoint: Endpoint,
    /// Connecting, and each command's reply, must come within this.
    pub timeout: Duration,
    /// Connections kept open to the relay at most.
    pub pool: u32,
    /// A PEM certificate (or several) trusted besides the Web PKI roots:
    /// a relay with a private CA's or its own certificate.
    pub ca: Option<Vec<u8>>,
}

/// Sends through a relay over a pool of connections.
///
/// The pool is aftercare's own, over lettre's SMTP connection: lettre's
/// pooled transport opens its sockets without `TCP_NODELAY`, and lettre
/// writes a message and its closing `.` in two writes, so every message
/// waited for the relay's delayed ACK (40 ms on Linux): 25 messages a
/// second per connection. Here plain and STARTTLS connections are opened
/// with `TCP_NODELAY`; implicit TLS (`smtps://`) goes through lettre's own
/// connect, which does not allow it.
#[derive(Clone)]
pub struct Smtp {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    tls: Option<TlsParameters>,
    credentials: Option<Credentials>,
    hello: ClientId,
    timeout: Duration,
    /// `host:port`, for messages.
    server: String,
    /// At most `pool` connections at once, idle ones kept with the time
    /// they were last used.
    permits: Semaphore,
    idle: Mutex<Vec<(AsyncSmtpConnection, tokio::time::Instant)>>,
}

/// An idle connection older than this is asked `NOOP` before it is used
/// (the relay may have closed it); older than [`IDLE_LIMIT`], it is closed.
const IDLE_CHECK: Duration = Duration::from_secs(5);
const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// Why a connection or a transaction failed: a reply (with its code and
/// text) or anything else (the network, TLS, a timeout).
enum Failure {
    Reply(Code, String),
    Other(String),
}

impl From<lettre::transport::smtp::Error> for Failure {
    fn from(e: lettre::transport::smtp::Error) -> Failure {
        let text = std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_default();
        match e.status() {
            Some(code) => Failure::Reply(code, text),
            None => Failure::Other(e.to_string()),
        }
    }
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp")
            .field("server", &self.inner.server)
            .finish()
    }
}

impl Smtp {
    pub fn new(s: &Settings) -> Result<Smtp, String> {
        let e = &s.endpoint;
        let tls = match e.security {
            Security::Plain => None,
            Security::StartTls | Security::Tls => {
                let mut p = TlsParameters::builder(e.host.clone());
                if let Some(pem) = &s.ca {
                    let cert = Certificate::from_pem(pem)
                        .map_err(|err| format!("AFTERCARE_SMTP_CA_FILE: {err}"))?;
                    p = p.add_root_certificate(cert);
                }
                Some(
                    p.build_rustls()
                        .map_err(|err| format!("TLS settings for {}: {err}", e.host))?,
                )
            }
        };
        Ok(Smtp {
            inner: Arc::new(Inner {
                endpoint: e.clone(),
                tls,
                credentials: e
                    .credentials
                    .as_ref()
                    .map(|(u, p)| Credentials::new(u.clone(), p.clone())),
                hello: ClientId::default(),
                timeout: s.timeout,
                server: format!("{}:{}", e.host, e.port),
                permits: Semaphore::new(s.pool as usize),
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The longest one message's exchange may take, from asking the pool for
    /// a connection to the reply after DATA: connecting is bounded by
    /// `AFTERCARE_SMTP_TIMEOUT`, and the whole exchange by twice that.
    fn exchange(&self) -> Duration {
        self.inner.timeout * 2
    }

    /// A new connection: TCP (no delay), greeting and EHLO, STARTTLS when
    /// asked for, AUTH when there are credentials.
    async fn connect(&self) -> Result<AsyncSmtpConnection, Failure> {
        let i = &self.inner;
        let e = &i.endpoint;
        let mut conn = match e.security {
            Security::Tls => AsyncSmtpConnection::connect_tokio1(
                (e.host.as_str(), e.port),
                Some(i.timeout),
                &i.hello,
                i.tls.clone(),
                None,
            )
            .await
            .map_err(Failure::from)?,
            Security::Plain | Security::StartTls => {
                let tcp = tokio::time::timeout(
                    i.timeout,
                    tokio::net::TcpStream::connect((e.host.as_str(), e.port)),
                )
                .await
                .map_err(|_| Failure::Other(format!("no connection within {:?}", i.timeout)))?
                .map_err(|err| Failure::Other(format!("connecting: {err}")))?;
                tcp.set_nodelay(true)
                    .map_err(|err| Failure::Other(format!("TCP_NODELAY: {err}")))?;
                let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &i.hello)
                    .await
                    .map_err(Failure::from)?;
                if let (Security::StartTls, Some(tls)) = (e.security, &i.tls) {
                    conn.starttls(tls.clone(), &i.hello)
                        .await
                        .map_err(Failure::from)?;
                }
                conn
            }
        };
        if let Some(c) = &i.credentials {
            conn.auth(DEFAULT_MECHANISMS, c)
                .await
                .map_err(Failure::from)?;
        }
        Ok(conn)
    }

    /// An idle connection that still answers, if there is one.
    async fn reuse(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let (mut conn, used) = self
                .inner
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()?;
            let age = used.elapsed();
            if age < IDLE_CHECK {
                return Some(conn);
            }
            if age < IDLE_LIMIT && conn.test_connected().await {
                return Some(conn);
            }
            conn.abort().await;
        }
    }

    fn keep(&self, conn: AsyncSmtpConnection) {
        if !conn.has_broken() {
            self.inner
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((conn, tokio::time::Instant::now()));
        }
    }

    /// One message over a pooled connection (a new one when none is idle,
    /// or when a reused one turns out closed before it got a reply).
    async fn transaction(
        &self,
        envelope: &lettre::address::Envelope,
        bytes: &[u8],
    ) -> Result<String, Failure> {
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| Failure::Other("the pool is closed".into()))?;
        if let Some(mut conn) = self.reuse().await {
            match conn.send(envelope, bytes).await {
                Ok(r) => {
                    self.keep(conn);
                    return Ok(reply(r.code(), &r.message().collect::<Vec<_>>().join(" ")));
                }
                Err(e) => {
                    conn.abort().await;
                    let f = Failure::from(e);
                    if let Failure::Reply(..) = f {
                        return Err(f);
                    }
                    // The relay closed an idle connection: a new one.
                }
            }
        }
        let mut conn = self.connect().await?;
        match conn.send(envelope, bytes).await {
            Ok(r) => {
                self.keep(conn);
                Ok(reply(r.code(), &r.message().collect::<Vec<_>>().join(" ")))
            }
            Err(e) => {
                conn.abort().await;
                Err(Failure::from(e))
            }
        }
    }
}

impl Transport for Smtp {
    /// One message's exchange ([`Smtp::exchange`]) and a probe after it.
    fn deadline(&self) -> Duration {
        self.inner.timeout * 4
    }

    /// A new connection answers (and authenticates); it is kept for use.
    async fn probe(&self) -> bool {
        let probe = async {
            let mut conn = self.connect().await.ok()?;
            conn.test_connected().await.then_some(conn)
        };
        match tokio::time::timeout(self.exchange(), probe).await {
            Ok(Some(conn)) => {
                self.keep(conn);
                true
            }
            _ => false,
        }
    }

    async fn deliver(&self, m: &Outgoing) -> Result<String, Error> {
        let address = |s: &str| {
            super::mailbox(s)
                .map(|mb| mb.email)
                .map_err(|e| Error::Permanent(e.to_string()))
        };
        let envelope =
            lettre::address::Envelope::new(Some(address(&m.from)?), vec![address(&m.to)?])
                .map_err(|e| Error::Permanent(format!("envelope: {e}")))?;
        let server = &self.inner.server;
        let started = std::time::Instant::now();
        let sent = tokio::time::timeout(self.exchange(), self.transaction(&envelope, &m.bytes));
        let sent = sent.await;
        let result = match &sent {
            Ok(Ok(_)) => "ok",
            Ok(Err(_)) => "error",
            Err(_) => "timeout",
        };
        crate::telemetry::smtp(result, started.elapsed());
        let what = match sent {
            Ok(Ok(reply)) => return Ok(reply),
            Ok(Err(Failure::Reply(code, text))) => return Err(classify(code, &text, &m.to)),
            Ok(Err(Failure::Other(e))) => format!("{server}: {e}"),
            // The relay went quiet mid-exchange: whether it took the message
            // is unknown, so it is tried again (the Message-ID lets the
            // receiver drop a copy); the connection is dropped with the call.
            Err(_) => format!(
                "{server}: no reply within {:?} (AFTERCARE_SMTP_TIMEOUT)",
                self.exchange()
            ),
        };
        // No reply to judge: the connection, TLS or a timeout. If the relay
        // answers a fresh connection, the failure was this message's (a retry
        // counts); if not, the relay is down and the message waits for it
        // without using one.
        if self.probe().await {
            Err(Error::Transient(what))
        } else {
            Err(Error::Unavailable(what))
        }
    }
}

/// A reply as the delivery log shows it: `250 2.0.0 Ok: queued as 4F2A`.
fn reply(code: Code, text: &str) -> String {
    let text = text.trim();
    match text.is_empty() {
        true => code.to_string(),
        false => format!("{code} {text}"),
    }
}

/// What a negative reply means: 4xx is tried again; 5xx is final, and when
/// the server says the recipient's address itself is bad (RFC 3463 address
/// status X.1.x, or "mailbox disabled" X.2.1) the address is suppressed.
/// Without an enhanced status code, a 550, 551 or 553 that speaks of the
/// user, mailbox or recipient counts as such; any other 5xx (a policy or
/// content refusal, a message too large) fails this email only.
///
/// lettre does not say which command a reply answered, and a relay may
/// answer a refused envelope sender (the bounce address) at RCPT time: a
/// reply that speaks of the sender never suppresses the recipient, nor does
/// the vague X.1.0 ("other address status") unless it names `recipient`.
/// Suppressing a good address is the worse mistake: it silences a customer
/// for good, where a missed suppression costs one more bounce.
pub fn classify(code: Code, text: &str, recipient: &str) -> Error {
    let line = reply(code, text);
    let basic = code.to_string();
    if matches!(basic.as_str(), "530" | "534" | "535" | "538") {
        // Authentication refused or required: aftercare's settings, not the
        // message, are wrong; every email would fail the same way. The
        // sender pauses and probes (a probe authenticates too) until an
        // operator fixes AFTERCARE_SMTP_URL.
        return Error::Unavailable(format!(
            "{line} (the relay refuses aftercare's credentials: check AFTERCARE_SMTP_URL)"
        ));
    }
    if basic.starts_with('4') {
        return Error::Transient(line);
    }
    if refuses_recipient(&basic, text, recipient) {
        Error::Refused(line)
    } else {
        Error::Permanent(line)
    }
}

fn refuses_recipient(basic: &str, text: &str, recipient: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    if lower.contains("sender") {
        return false;
    }
    if let Some((class, subject, detail)) = enhanced(text) {
        // X.1.7 and X.1.8 are about the sender's address, not the
        // recipient's; X.1.0 is any address's.
        let names_recipient =
            !recipient.is_empty() && lower.contains(&recipient.to_ascii_lowercase());
        return class == 5
            && ((subject == 1 && !matches!(detail, 0 | 7 | 8))
                || ((subject, detail) == (1, 0) && names_recipient)
                || (subject, detail) == (2, 1));
    }
    matches!(basic, "550" | "551" | "553")
        && ["user", "mailbox", "recipient", "no such", "does not exist"]
            .iter()
            .any(|w| lower.contains(w))
}

/// The enhanced status code (RFC 3463) a reply's text starts with.
fn enhanced(text: &str) -> Option<(u8, u16, u16)> {
    let first = text.split_whitespace().next()?;
    let mut parts = first.split('.');
    let class = parts.next()?.parse().ok()?;
    let subject = parts.next()?.parse().ok()?;
    let detail = parts.next()?.parse().ok()?;
    (parts.next().is_none() && matches!(class, 2 | 4 | 5)).then_some((class, subject, detail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::transport::smtp::response::{Category, Detail, Severity};

    fn code(s: &str) -> Code {
        let b = s.as_bytes();
        let severity = match b[0] {
            b'4' => Severity::TransientNegativeCompletion,
            _ => Severity::PermanentNegativeCompletion,
        };
        let category = match b[1] {
            b'5' => Category::MailSystem,
            b'3' => Category::Unspecified3,
            _ => Category::Connections,
        };
        let detail = match b[2] {
            b'0' => Detail::Zero,
            b'1' => Detail::One,
            b'2' => Detail::Two,
            b'3' => Detail::Three,
            _ => Detail::Four,
        };
        Code::new(severity, category, detail)
    }

    fn kind(c: &str, text: &str) -> &'static str {
        match classify(code(c), text, "a@b.example") {
            Error::Transient(_) => "retry",
            Error::Permanent(_) => "failed",
            Error::Refused(_) => "refused",
            Error::Unavailable(_) => "unavailable",
        }
    }

    #[test]
    fn replies_are_sorted_by_what_they_say_about_the_recipient() {
        assert_eq!(kind("451", "4.3.0 try again later"), "retry");
        assert_eq!(kind("421", "4.7.0 too many connections"), "retry");
        assert_eq!(kind("550", "5.1.1 <a@b.example>: user unknown"), "refused");
        assert_eq!(kind("550", "5.1.10 null MX"), "refused");
        assert_eq!(kind("550", "5.2.1 mailbox disabled"), "refused");
        assert_eq!(kind("553", "5.1.3 bad address syntax"), "refused");
        // About the message or the sender, not the recipient.
        assert_eq!(kind("554", "5.7.1 message rejected as spam"), "failed");
        assert_eq!(kind("550", "5.7.1 no, your content"), "failed");
        assert_eq!(kind("552", "5.3.4 message too big"), "failed");
        assert_eq!(kind("553", "5.1.7 bad sender address"), "failed");
        // The bounce address refused, answered at RCPT (Postfix does so):
        // the recipient is not to blame.
        assert_eq!(
            kind(
                "550",
                "5.1.0 <bounces+3f@shop.example>: Sender address rejected: User unknown"
            ),
            "failed"
        );
        assert_eq!(
            kind("550", "5.1.1 <x@y>: Sender address rejected: no such user"),
            "failed"
        );
        // X.1.0 counts only when it names the recipient.
        assert_eq!(
            kind("550", "5.1.0 <a@b.example>: Recipient address rejected"),
            "refused"
        );
        assert_eq!(kind("550", "5.1.0 Address rejected"), "failed");
        // No enhanced code: the words decide.
        assert_eq!(kind("550", "no such user here"), "refused");
        assert_eq!(kind("550", "spam detected"), "failed");
        assert_eq!(kind("554", "user unknown"), "failed");
        // Our credentials, not the message: every email would fail alike.
        assert_eq!(
            kind("535", "5.7.8 Authentication credentials invalid"),
            "unavailable"
        );
        assert_eq!(kind("530", "5.7.0 Authentication required"), "unavailable");
    }

    #[test]
    fn the_reply_keeps_code_and_text() {
        match classify(code("550"), "5.1.1 user unknown", "a@b.example") {
            Error::Refused(s) => assert_eq!(s, "550 5.1.1 user unknown"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn urls_say_what_is_wrong() {
        let e = Endpoint::parse("smtp://127.0.0.1:2525").unwrap();
        assert_eq!(
            (e.port, e.security, e.credentials),
            (2525, Security::Plain, None)
        );
        let e = Endpoint::parse("smtp://me%40shop:p%3Ass@relay.example").unwrap();
        assert_eq!((e.port, e.security), (587, Security::StartTls));
        assert_eq!(e.credentials, Some(("me@shop".into(), "p:ss".into())));
        let e = Endpoint::parse("smtps://relay.example").unwrap();
        assert_eq!((e.port, e.security), (465, Security::Tls));
        let e = Endpoint::parse("smtp://relay.example?tls=required").unwrap();
        assert_eq!((e.port, e.security), (587, Security::StartTls));
        for (bad, why) in [
            ("http://relay.example", "scheme \"http\""),
            ("smtp://relay.example?tls=none", "tls=\"none\""),
            ("smtp://user@relay.example", "without a password"),
            ("smtp://relay.example/x", "unexpected path"),
            ("smtp://relay.example?x=1", "unknown parameter"),
            ("relay.example:25", "scheme"),
        ] {
            let e = Endpoint::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let e = Endpoint::parse("smtp://u:secret@").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }
}
