//! Signed link tokens: what an unsubscribe, open or click link carries.
//!
//! A token is `base64url(payload ‖ tag)` without padding, where the payload
//! is a version byte, a kind byte and length-prefixed UTF-8 fields, and the
//! tag is the first 16 bytes of HMAC-SHA256 over a domain label and the
//! payload, keyed with the service's secret (`AFTERCARE_SECRET`, or the one
//! generated and kept in the database). A token whose tag does not match
//! (forged, altered, cut, made with another secret) reads as nothing: the
//! routes answer 4xx and change nothing. The tag is compared in constant
//! time.
//!
//! Tokens are not encrypted: a customer id, an idempotency key and a URL are
//! readable by whoever holds the link (the customer). They do not expire: an
//! unsubscribe link must work for as long as the email is kept.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

const VERSION: u8 = 1;
/// Bytes of the HMAC kept in a token: 128 bits.
const TAG: usize = 16;
/// Separates these tags from any other use of the same secret.
const LABEL: &[u8] = b"aftercare link token\0";
/// The longest token read (a click token carries its URL: 2 KiB of URL
/// and the ids fit well within this).
pub const MAX_TOKEN_CHARS: usize = 4096;
/// The longest field a token may carry (a URL).
const MAX_FIELD: usize = 2048;

/// What a link does, and for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// `/u/TOKEN`: the customer's unsubscribe page and one-click POST.
    Unsubscribe { customer_id: String },
    /// `/t/o/TOKEN`: the open pixel of one email.
    Open {
        customer_id: String,
        idempotency_key: String,
    },
    /// `/t/c/TOKEN`: a link in one email, redirecting to `url` only.
    Click {
        customer_id: String,
        idempotency_key: String,
        url: String,
    },
}

/// Why a token was not accepted. Deliberately vague towards the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the link is damaged or was not made by this service")]
    Invalid,
    #[error("the link is for another purpose")]
    WrongKind,
}

/// The key tokens are signed with.
#[derive(Clone)]
pub struct Signer {
    mac: HmacSha256,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    pub fn new(secret: &[u8]) -> Self {
        let mac = <HmacSha256 as KeyInit>::new_from_slice(secret).expect("HMAC takes any key");
        Self { mac }
    }

    fn tag(&self, payload: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(LABEL);
        mac.update(payload);
        mac
    }

    /// The token for `t`.
    pub fn sign(&self, t: &Token) -> String {
        let mut out = Vec::with_capacity(64);
        out.push(VERSION);
        let fields: Vec<&str> = match t {
            Token::Unsubscribe { customer_id } => {
                out.push(b'u');
                vec![customer_id]
            }
            Token::Open {
                customer_id,
                idempotency_key,
            } => {
                out.push(b'o');
                vec![customer_id, idempotency_key]
            }
            Token::Click {
                customer_id,
                idempotency_key,
                url,
            } => {
                out.push(b'c');
                vec![customer_id, idempotency_key, url]
            }
        };
        for f in fields {
            // Fields longer than a token may hold are cut at a character
            // boundary; the caller checks URLs before (see `MAX_URL`).
            let mut end = f.len().min(MAX_FIELD);
            while !f.is_char_boundary(end) {
                end -= 1;
            }
            out.extend_from_slice(&(end as u16).to_be_bytes());
            out.extend_from_slice(&f.as_bytes()[..end]);
        }
        let tag = self.tag(&out).finalize().into_bytes();
        out.extend_from_slice(&tag[..TAG]);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Reads a token this signer made; anything else is [`TokenError::Invalid`].
    pub fn verify(&self, token: &str) -> Result<Token, TokenError> {
        if token.is_empty() || token.len() > MAX_TOKEN_CHARS {
            return Err(TokenError::Invalid);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token.as_bytes())
            .map_err(|_| TokenError::Invalid)?;
        if bytes.len() < 2 + TAG {
            return Err(TokenError::Invalid);
        }
        let (payload, tag) = bytes.split_at(bytes.len() - TAG);
        // Constant time: the comparison does not stop at the first
        // differing byte.
        self.tag(payload)
            .verify_truncated_left(tag)
            .map_err(|_| TokenError::Invalid)?;
        parse(payload).ok_or(TokenError::Invalid)
    }
}

/// The fields of a payload whose tag matched (so written by [`Signer::sign`];
/// still read defensively).
fn parse(payload: &[u8]) -> Option<Token> {
    let (&version, rest) = payload.split_first()?;
    if version != VERSION {
        return None;
    }
    let (&kind, mut rest) = rest.split_first()?;
    let mut fields = Vec::with_capacity(3);
    while !rest.is_empty() {
        if rest.len() < 2 {
            return None;
        }
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        let body = rest.get(2..2 + len)?;
        fields.push(std::str::from_utf8(body).ok()?.to_string());
        rest = &rest[2 + len..];
    }
    let mut f = fields.into_iter();
    let t = match kind {
        b'u' => Token::Unsubscribe {
            customer_id: f.next()?,
        },
        b'o' => Token::Open {
            customer_id: f.next()?,
            idempotency_key: f.next()?,
        },
        b'c' => Token::Click {
            customer_id: f.next()?,
            idempotency_key: f.next()?,
            url: f.next()?,
        },
        _ => return None,
    };
    // No field left over.
    f.next().is_none().then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click() -> Token {
        Token::Click {
            customer_id: "c_17".into(),
            idempotency_key: "education/c_17/o_1#tips".into(),
            url: "https://shop.example/p?a=1&b=ű".into(),
        }
    }

    #[test]
    fn a_token_reads_back_as_signed() {
        let s = Signer::new(b"k1-0123456789abcdef");
        for t in [
            Token::Unsubscribe {
                customer_id: "c_17".into(),
            },
            Token::Open {
                customer_id: "c_17".into(),
                idempotency_key: "k".into(),
            },
            click(),
        ] {
            let token = s.sign(&t);
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{token}"
            );
            assert_eq!(s.verify(&token), Ok(t));
        }
    }

    #[test]
    fn another_secret_or_any_change_is_refused() {
        let s = Signer::new(b"k1-0123456789abcdef");
        let token = s.sign(&click());
        assert_eq!(
            Signer::new(b"k2-0123456789abcdef").verify(&token),
            Err(TokenError::Invalid)
        );
        // Every single-character change of the token is refused.
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for i in 0..token.len() {
            let mut b = token.clone().into_bytes();
            b[i] = if b[i] == alphabet[0] {
                alphabet[1]
            } else {
                alphabet[0]
            };
            let changed = String::from_utf8(b).unwrap();
            assert!(s.verify(&changed).is_err(), "position {i}: {changed}");
        }
        // Cut, extended, empty, not base64, huge.
        assert!(s.verify(&token[..token.len() - 1]).is_err());
        assert!(s.verify(&format!("{token}A")).is_err());
        assert!(s.verify("").is_err());
        assert!(s.verify("%%%").is_err());
        assert!(s.verify(&"A".repeat(MAX_TOKEN_CHARS + 1)).is_err());
    }

    /// A payload with a valid tag but another URL is a different token: the
    /// URL is inside the signed part, so it cannot be swapped.
    #[test]
    fn the_url_is_signed() {
        let s = Signer::new(b"secret-secret-secret");
        let a = s.sign(&click());
        let mut other = click();
        if let Token::Click { url, .. } = &mut other {
            *url = "https://evil.example/".into();
        }
        let b = s.sign(&other);
        assert_ne!(a, b);
        // Splicing a's tag onto b's payload fails.
        let ra = URL_SAFE_NO_PAD.decode(&a).unwrap();
        let rb = URL_SAFE_NO_PAD.decode(&b).unwrap();
        let mut spliced = rb[..rb.len() - TAG].to_vec();
        spliced.extend_from_slice(&ra[ra.len() - TAG..]);
        assert_eq!(
            s.verify(&URL_SAFE_NO_PAD.encode(spliced)),
            Err(TokenError::Invalid)
        );
    }
}
