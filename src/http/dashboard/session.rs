//! The dashboard's sessions: a signed, expiring cookie instead of the token
//! itself, a per-session CSRF token, and the Origin check of every POST.
//!
//! A session is `v1.<expires, Unix seconds>.<nonce, 32 hex>.<tag, 64 hex>`,
//! the tag an HMAC-SHA256 of the rest under a key derived from the admin
//! token: changing `AFTERCARE_ADMIN_TOKEN` ends every session. Nothing is
//! stored on the server, so logging out clears the browser's cookie; a copy
//! of the cookie taken before stays good until it expires (12 hours).

use chrono::{DateTime, TimeDelta, Utc};
use hmac::{KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The cookie's name.
pub const COOKIE: &str = "aftercare_session";
/// How long a session lasts after logging in.
pub const LIFETIME: TimeDelta = TimeDelta::hours(12);
/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";

/// Makes and checks sessions with the key derived from the admin token.
#[derive(Clone)]
pub struct Sessions {
    mac: HmacSha256,
    /// Whether cookies get `Secure` (the public URL is https).
    secure: bool,
}

/// A session that checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub expires: DateTime<Utc>,
    /// The token state-changing forms must carry.
    pub csrf: String,
}

impl Sessions {
    pub fn new(admin_token: &str, secure: bool) -> Self {
        // The key is the token's HMAC under a label of its own, so the
        // token itself is never a key for anything but this derivation.
        let mut derive = <HmacSha256 as KeyInit>::new_from_slice(admin_token.as_bytes())
            .expect("HMAC takes any key");
        derive.update(b"aftercare dashboard session key\0");
        let key = derive.finalize().into_bytes();
        let mac = <HmacSha256 as KeyInit>::new_from_slice(&key).expect("HMAC takes any key");
        Self { mac, secure }
    }

    fn tag(&self, label: &[u8], payload: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(label);
        mac.update(payload);
        mac
    }

    /// A new session from `now`, as its cookie value.
    pub fn issue(&self, now: DateTime<Utc>) -> String {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).expect("the operating system's random numbers");
        self.issue_with(now, &nonce)
    }

    fn issue_with(&self, now: DateTime<Utc>, nonce: &[u8; 16]) -> String {
        let payload = format!("v1.{}.{}", (now + LIFETIME).timestamp(), hex::encode(nonce));
        let tag = self
            .tag(b"session\0", payload.as_bytes())
            .finalize()
            .into_bytes();
        format!("{payload}.{}", hex::encode(tag))
    }

    /// The session `value` stands for, if it was made with this key and
    /// has not expired at `now`.
    pub fn check(&self, value: &str, now: DateTime<Utc>) -> Option<Session> {
        let (payload, tag) = value.rsplit_once('.')?;
        let tag = hex::decode(tag).ok()?;
        self.tag(b"session\0", payload.as_bytes())
            .verify_slice(&tag)
            .ok()?;
        let mut parts = payload.split('.');
        let (Some("v1"), Some(expires), Some(nonce), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let expires = DateTime::from_timestamp(expires.parse().ok()?, 0)?;
        if expires <= now {
            return None;
        }
        let csrf = self
            .tag(b"csrf\0", nonce.as_bytes())
            .finalize()
            .into_bytes();
        Some(Session {
            expires,
            csrf: hex::encode(csrf),
        })
    }

    /// The `Set-Cookie` value that keeps `value` until it expires.
    pub fn cookie(&self, value: &str) -> String {
        format!(
            "{COOKIE}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={}{}",
            LIFETIME.num_seconds(),
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// The `Set-Cookie` value that removes the session.
    pub fn removal(&self) -> String {
        format!(
            "{COOKIE}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0{}",
            if self.secure { "; Secure" } else { "" }
        )
    }
}

impl Session {
    /// Whether `given` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, given: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.csrf.len() == given.len() && bool::from(self.csrf.as_bytes().ct_eq(given.as_bytes()))
    }
}

/// The session cookie's value among a request's `Cookie` headers.
pub fn cookie_value<'a>(headers: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    headers
        .flat_map(|h| h.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v)
}

/// Whether a POST comes from the dashboard's own pages: its `Origin`
/// (or, without one, its `Referer`) is this service, as the `Host` header
/// names it or as the public URL does. A browser sends `Origin` with every
/// POST from a form; a request with neither is refused.
pub fn same_origin(
    origin: Option<&str>,
    referer: Option<&str>,
    host: Option<&str>,
    public_origin: Option<&str>,
) -> bool {
    let claimed = match (origin, referer) {
        (Some(o), _) if o != "null" => url::Url::parse(o).ok(),
        (_, Some(r)) => url::Url::parse(r).ok(),
        _ => None,
    };
    let Some(claimed) = claimed else {
        return false;
    };
    if !matches!(claimed.scheme(), "http" | "https") {
        return false;
    }
    let authority = match (claimed.host_str(), claimed.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => return false,
    };
    let own_host = host.is_some_and(|h| h.eq_ignore_ascii_case(&authority));
    let public = public_origin
        .is_some_and(|p| p.eq_ignore_ascii_case(&claimed.origin().ascii_serialization()));
    own_host || public
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    const TOKEN: &str = "0123456789abcdef0123";

    #[test]
    fn a_session_checks_out_until_it_expires() {
        let s = Sessions::new(TOKEN, false);
        let now = t("2026-03-10T12:00:00Z");
        let v = s.issue(now);
        let got = s.check(&v, now).expect("fresh");
        assert_eq!(got.expires, now + LIFETIME);
        assert_eq!(got.csrf.len(), 64);
        assert!(
            s.check(&v, now + LIFETIME - TimeDelta::seconds(1))
                .is_some()
        );
        assert!(s.check(&v, now + LIFETIME).is_none(), "expired");
        // Two sessions, two CSRF tokens.
        let other = s.check(&s.issue(now), now).unwrap();
        assert_ne!(other.csrf, got.csrf);
    }

    #[test]
    fn a_forged_or_altered_session_is_refused() {
        let s = Sessions::new(TOKEN, false);
        let now = t("2026-03-10T12:00:00Z");
        let v = s.issue_with(now, &[7; 16]);
        assert!(s.check(&v, now).is_some());
        // Another token's key: every session ends when the token changes.
        let other = Sessions::new("another-token-0123456789", false);
        assert!(other.check(&v, now).is_none());
        // A later expiry written in, a flipped tag, junk.
        let (payload, tag) = v.rsplit_once('.').unwrap();
        let far = (now + TimeDelta::days(999)).timestamp();
        let mut parts: Vec<&str> = payload.split('.').collect();
        let far = far.to_string();
        parts[1] = &far;
        assert!(
            s.check(&format!("{}.{tag}", parts.join(".")), now)
                .is_none()
        );
        let mut flipped = v.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == '0' { '1' } else { '0' });
        assert!(s.check(&flipped, now).is_none());
        for junk in ["", "v1", "v1.1.2.3", "x.y.z.w.v", TOKEN] {
            assert!(s.check(junk, now).is_none(), "{junk}");
        }
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_over_https() {
        let plain = Sessions::new(TOKEN, false).cookie("v");
        assert_eq!(
            plain,
            "aftercare_session=v; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=43200"
        );
        let secure = Sessions::new(TOKEN, true);
        assert!(secure.cookie("v").ends_with("; Secure"));
        assert!(secure.removal().contains("Max-Age=0"));
    }

    #[test]
    fn csrf_tokens_compare_whole() {
        let s = Sessions::new(TOKEN, false);
        let now = t("2026-03-10T12:00:00Z");
        let session = s.check(&s.issue(now), now).unwrap();
        assert!(session.csrf_matches(&session.csrf.clone()));
        assert!(!session.csrf_matches(""));
        assert!(!session.csrf_matches(&session.csrf[..63]));
        assert!(!session.csrf_matches(&"0".repeat(64)));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let headers = ["a=1; aftercare_session=abc.def", "b=2"];
        assert_eq!(cookie_value(headers.into_iter()), Some("abc.def"));
        assert_eq!(cookie_value(["x_aftercare_session=1"].into_iter()), None);
    }

    #[test]
    fn posts_must_come_from_the_dashboard() {
        let host = Some("127.0.0.1:8080");
        assert!(same_origin(Some("http://127.0.0.1:8080"), None, host, None));
        assert!(same_origin(
            None,
            Some("http://127.0.0.1:8080/admin/x?y"),
            host,
            None
        ));
        assert!(!same_origin(Some("https://evil.example"), None, host, None));
        assert!(!same_origin(
            Some("http://127.0.0.1:8081"),
            None,
            host,
            None
        ));
        assert!(!same_origin(None, None, host, None));
        assert!(!same_origin(Some("null"), None, host, None));
        // Behind a proxy: the public URL's origin.
        let public = Some("https://mail.shop.example");
        assert!(same_origin(
            Some("https://mail.shop.example"),
            None,
            Some("10.0.0.5:8080"),
            public
        ));
        assert!(!same_origin(
            Some("http://mail.shop.example.evil"),
            None,
            Some("10.0.0.5:8080"),
            public
        ));
    }
}
