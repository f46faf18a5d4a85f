//! DKIM signing (RFC 6376; Ed25519 keys as RFC 8463 says). The key is read
//! once, at startup, from `AFTERCARE_DKIM_KEY_FILE`: RSA or Ed25519, in the
//! PKCS#8 PEM form that `openssl genpkey` writes (`BEGIN PRIVATE KEY`) or,
//! for RSA, the older PKCS#1 form (`BEGIN RSA PRIVATE KEY`). Anything else is
//! a configuration error that names the file and says what it found.
//!
//! Signing is the last thing done to a message, once every header is in
//! place: [`finish`] takes the built message and returns the bytes a
//! transport sends, signed over those very bytes (relaxed canonicalization
//! of headers and body). lettre has a DKIM signer of its own, but it signs
//! the message before formatting and so misses the `Content-Type` of a
//! multipart body, which lettre writes only while formatting: a verifier
//! then sees a header the signer did not, and the signature fails.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs8::EncodePublicKey as _;
use rsa::traits::PublicKeyParts as _;
use sha2::{Digest, Sha256};

/// The headers signed, in this order. A header a message lacks is still
/// listed: it counts as empty when signing and verifying (RFC 6376 5.4), so
/// nobody on the way can add one (a `List-Unsubscribe` of their own, say)
/// without breaking the signature.
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "Content-Language",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "X-Aftercare-Sequence",
    "X-Aftercare-Template",
];

/// The smallest RSA key accepted: verifiers must refuse smaller ones
/// (RFC 8301), and Gmail counts 1024-bit keys as weak.
pub const MIN_RSA_BITS: usize = 1024;

/// `AFTERCARE_DKIM_*`: all three or none.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DkimArgs {
    /// DKIM selector (the `s=` tag; the DNS record is `<selector>._domainkey.<domain>`).
    #[arg(long, env = "AFTERCARE_DKIM_SELECTOR")]
    pub dkim_selector: Option<String>,
    /// The signing domain (`d=`): the From address's domain or a parent of it.
    #[arg(long, env = "AFTERCARE_DKIM_DOMAIN")]
    pub dkim_domain: Option<String>,
    /// PEM private key: RSA (PKCS#8 or PKCS#1) or Ed25519 (PKCS#8).
    #[arg(long, env = "AFTERCARE_DKIM_KEY_FILE")]
    pub dkim_key_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "DKIM needs all three of AFTERCARE_DKIM_SELECTOR, AFTERCARE_DKIM_DOMAIN and \
         AFTERCARE_DKIM_KEY_FILE (or none, for no signing); {0} unset"
    )]
    Incomplete(String),
    #[error("AFTERCARE_DKIM_SELECTOR {0:?}: {1}")]
    Selector(String, String),
    #[error("AFTERCARE_DKIM_DOMAIN {0:?}: {1}")]
    Domain(String, String),
    #[error("AFTERCARE_DKIM_KEY_FILE {}: {}", .0.display(), .1)]
    Key(PathBuf, String),
}

impl DkimArgs {
    /// The signer, or `None` when no variable is set.
    pub fn load(&self) -> Result<Option<Signer>, Error> {
        let (s, d, k) = (&self.dkim_selector, &self.dkim_domain, &self.dkim_key_file);
        match (s, d, k) {
            (None, None, None) => Ok(None),
            (Some(s), Some(d), Some(k)) => Signer::from_file(s, d, k).map(Some),
            _ => {
                let missing: Vec<&str> = [
                    (s.is_none(), "AFTERCARE_DKIM_SELECTOR"),
                    (d.is_none(), "AFTERCARE_DKIM_DOMAIN"),
                    (k.is_none(), "AFTERCARE_DKIM_KEY_FILE"),
                ]
                .into_iter()
                .filter_map(|(unset, name)| unset.then_some(name))
                .collect();
                Err(Error::Incomplete(missing.join(" and ")))
            }
        }
    }
}

/// A private key DKIM can sign with.
pub enum Key {
    Rsa(Box<rsa::RsaPrivateKey>),
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Rsa(k) => write!(f, "Key::Rsa({} bits)", k.size() * 8),
            Key::Ed25519(_) => f.write_str("Key::Ed25519"),
        }
    }
}

/// What PEM label and PKCS#8 algorithm say about a key file.
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_ED448: &str = "1.3.101.113";

impl Key {
    /// Reads a PEM private key; the error says what the text is instead.
    pub fn from_pem(pem: &str) -> Result<Key, String> {
        let begin = pem
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("-----BEGIN "))
            .ok_or_else(|| {
                "not a PEM private key (no `-----BEGIN ... PRIVATE KEY-----` line); \
                 make one with `openssl genpkey -algorithm ed25519` or \
                 `openssl genpkey -algorithm rsa -pkeyopt rsa_keygen_bits:2048`"
                    .to_string()
            })?;
        let label = begin
            .trim_start_matches("-----BEGIN ")
            .trim_end_matches('-')
            .trim();
        if pem.contains("Proc-Type: 4,ENCRYPTED") || label == "ENCRYPTED PRIVATE KEY" {
            return Err(
                "the key is encrypted with a passphrase; aftercare needs it unencrypted \
                 (`openssl pkey -in KEY -out PLAIN`, then keep PLAIN readable by aftercare only)"
                    .into(),
            );
        }
        let bad = |e: &dyn fmt::Display| format!("a {label} block that does not decode: {e}");
        let (found, der) =
            rsa::pkcs8::der::pem::decode_vec(pem.trim().as_bytes()).map_err(|e| bad(&e))?;
        let key = match found {
            "RSA PRIVATE KEY" => Key::Rsa(Box::new(
                rsa::RsaPrivateKey::from_pkcs1_der(&der).map_err(|e| bad(&e))?,
            )),
            "PRIVATE KEY" => {
                let info =
                    rsa::pkcs8::PrivateKeyInfo::try_from(der.as_slice()).map_err(|e| bad(&e))?;
                match info.algorithm.oid.to_string().as_str() {
                    OID_RSA => Key::Rsa(Box::new(
                        rsa::RsaPrivateKey::from_pkcs8_der(&der).map_err(|e| bad(&e))?,
                    )),
                    OID_ED25519 => Key::Ed25519(Box::new(
                        ed25519_dalek::SigningKey::from_pkcs8_der(&der).map_err(|e| bad(&e))?,
                    )),
                    OID_EC => return Err(unsupported("an elliptic-curve (ECDSA) key")),
                    OID_ED448 => return Err(unsupported("an Ed448 key")),
                    other => return Err(unsupported(&format!("a key of algorithm {other}"))),
                }
            }
            "EC PRIVATE KEY" => return Err(unsupported("an elliptic-curve (ECDSA) key")),
            "OPENSSH PRIVATE KEY" => {
                return Err(unsupported(
                    "an OpenSSH key (convert it with `ssh-keygen -p -m PKCS8 -f KEY`, or make a new one)",
                ));
            }
            other => {
                return Err(format!(
                    "a PEM `{other}` block, not a private key: DKIM needs `BEGIN PRIVATE KEY` \
                     (PKCS#8) or `BEGIN RSA PRIVATE KEY` (PKCS#1)"
                ));
            }
        };
        if let Key::Rsa(k) = &key
            && k.size() * 8 < MIN_RSA_BITS
        {
            return Err(format!(
                "an RSA key of {} bits: verifiers refuse keys under {MIN_RSA_BITS} bits \
                 (use 2048)",
                k.size() * 8
            ));
        }
        Ok(key)
    }

    /// The `k=` and `p=` of the DNS record: for RSA the public key's
    /// SubjectPublicKeyInfo (as opendkim and every DKIM guide publish it),
    /// for Ed25519 the 32 raw bytes (RFC 8463).
    fn public(&self) -> (&'static str, String) {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        match self {
            Key::Rsa(k) => {
                let der = rsa::RsaPublicKey::from(k.as_ref())
                    .to_public_key_der()
                    .expect("an RSA public key always encodes");
                ("rsa", b64(der.as_bytes()))
            }
            Key::Ed25519(k) => ("ed25519", b64(k.verifying_key().as_bytes())),
        }
    }

    /// The signature of a SHA-256 `digest`: RSASSA-PKCS1-v1_5 for RSA;
    /// for Ed25519, PureEdDSA over the digest, as RFC 8463 says.
    fn sign(&self, digest: &[u8; 32]) -> Vec<u8> {
        match self {
            Key::Rsa(k) => {
                let padding = rsa::pkcs1v15::Pkcs1v15Sign {
                    hash_len: Some(32),
                    prefix: SHA256_DIGEST_INFO.into(),
                };
                // Blinded with fresh randomness, so that the time a
                // signature takes tells nothing about the key.
                k.sign_with_rng(&mut rsa::rand_core::OsRng, padding, digest)
                    .expect("a key of at least 1024 bits signs a SHA-256 digest")
            }
            Key::Ed25519(k) => k.sign(digest).to_bytes().to_vec(),
        }
    }
}

/// The DER prefix of a SHA-256 DigestInfo (RFC 8017 9.2, note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

fn unsupported(what: &str) -> String {
    format!("{what}: DKIM signs with RSA or Ed25519 keys only")
}

/// The DNS TXT record that publishes the public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `<selector>._domainkey.<domain>`
    pub name: String,
    /// `v=DKIM1; k=rsa; p=...`
    pub value: String,
}

impl fmt::Display for Record {
    /// A zone-file line; the value is cut into strings of at most 255
    /// characters, as a TXT record requires (a 2048-bit RSA key is longer).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}. IN TXT (", self.name)?;
        let bytes = self.value.as_bytes();
        for chunk in bytes.chunks(255) {
            // The value is ASCII: base64 and tags.
            write!(f, " \"{}\"", String::from_utf8_lossy(chunk))?;
        }
        write!(f, " )")
    }
}

/// Signs messages with one key, for one selector and domain.
pub struct Signer {
    key: Key,
    selector: String,
    domain: String,
    record: Record,
    algorithm: &'static str,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("record", &self.record.name)
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

impl Signer {
    /// Reads and checks the key file.
    pub fn from_file(selector: &str, domain: &str, file: &Path) -> Result<Signer, Error> {
        let key_error = |why: String| Error::Key(file.to_path_buf(), why);
        let pem = std::fs::read(file).map_err(|e| key_error(format!("cannot read: {e}")))?;
        let pem = String::from_utf8(pem).map_err(|_| {
            key_error(
                "not a PEM text file (binary DER? convert it with \
                 `openssl pkey -inform DER -in KEY -out KEY.pem`)"
                    .into(),
            )
        })?;
        let key = Key::from_pem(&pem).map_err(key_error)?;
        Signer::new(selector, domain, key)
    }

    pub fn new(selector: &str, domain: &str, key: Key) -> Result<Signer, Error> {
        let selector = check_selector(selector)?;
        let domain = check_domain(domain)?;
        let (k, p) = key.public();
        let record = Record {
            name: format!("{selector}._domainkey.{domain}"),
            value: format!("v=DKIM1; k={k}; p={p}"),
        };
        Ok(Signer {
            key,
            selector,
            domain,
            record,
            algorithm: k,
        })
    }

    /// The TXT record to publish.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// `rsa` or `ed25519`.
    pub fn algorithm(&self) -> &'static str {
        self.algorithm
    }

    /// A warning when mail from `from` (an address) would not pass DMARC
    /// with this signature: the signing domain must be the From domain or a
    /// parent of it.
    pub fn alignment_warning(&self, from: &str) -> Option<String> {
        let domain = from.rsplit_once('@').map(|(_, d)| d)?;
        let domain = idna::domain_to_ascii(domain).ok()?;
        let aligned = domain == self.domain || domain.ends_with(&format!(".{}", self.domain));
        (!aligned).then(|| {
            format!(
                "DKIM signs for {} but the sender is {from}: DMARC needs the signing domain to \
                 be the From address's domain or a parent of it (AFTERCARE_DKIM_DOMAIN)",
                self.domain
            )
        })
    }

    /// `message` (a whole RFC 5322 message, CRLF line ends) with a
    /// `DKIM-Signature` header in front, signed at `now`.
    pub fn sign(&self, message: &[u8], now: DateTime<Utc>) -> Vec<u8> {
        let (head, body) = split(message);
        let bh = base64::engine::general_purpose::STANDARD.encode(body_hash(body));
        let fields = header_fields(head);
        let mut hashed = Sha256::new();
        // Each listed header, the last instance not yet used (RFC 6376
        // 5.4.2); one that is absent contributes nothing.
        let mut used = vec![false; fields.len()];
        for name in SIGNED_HEADERS {
            let found = (0..fields.len())
                .rev()
                .find(|&i| !used[i] && fields[i].0.eq_ignore_ascii_case(name));
            if let Some(i) = found {
                used[i] = true;
                relaxed_header(&mut hashed, fields[i].0, fields[i].1);
                hashed.update(b"\r\n");
            }
        }
        // Lines of at most 78 characters (RFC 5322 2.1.1): the header list
        // folds after a colon, the signature anywhere (its spaces do not count).
        let t = format!("\tt={}; h=", now.timestamp().max(0));
        let mut value = format!(
            "v=1; a={}-sha256; c=relaxed/relaxed;\r\n\td={}; s={};\r\n{t}",
            self.algorithm, self.domain, self.selector,
        );
        let mut line = t.len();
        for (i, name) in SIGNED_HEADERS.iter().enumerate() {
            let sep = if i + 1 < SIGNED_HEADERS.len() {
                ":"
            } else {
                ";"
            };
            if line + name.len() + 1 > 76 {
                value.push_str("\r\n\t");
                line = 1;
            }
            value.push_str(&name.to_ascii_lowercase());
            value.push_str(sep);
            line += name.len() + 1;
        }
        value.push_str(&format!("\r\n\tbh={bh};\r\n\tb="));
        relaxed_header(&mut hashed, "DKIM-Signature", value.as_bytes());
        let digest: [u8; 32] = hashed.finalize().into();
        let b = base64::engine::general_purpose::STANDARD.encode(self.key.sign(&digest));
        let mut out = Vec::with_capacity(message.len() + value.len() + b.len() + 64);
        out.extend_from_slice(b"DKIM-Signature: ");
        out.extend_from_slice(value.as_bytes());
        for (i, chunk) in b.as_bytes().chunks(72).enumerate() {
            if i > 0 {
                out.extend_from_slice(b"\r\n\t");
            }
            out.extend_from_slice(chunk);
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(message);
        out
    }
}

/// The bytes a transport sends: `message` formatted, and signed when a
/// signer is configured. Called last, once every header is in place.
pub fn finish(signer: Option<&Signer>, message: lettre::Message, now: DateTime<Utc>) -> Vec<u8> {
    let bytes = message.formatted();
    match signer {
        Some(s) => s.sign(&bytes, now),
        None => bytes,
    }
}

/// The header block (up to and including its last CRLF) and the body.
fn split(message: &[u8]) -> (&[u8], &[u8]) {
    if message.starts_with(b"\r\n") {
        return (&[], &message[2..]);
    }
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&message[..i + 2], &message[i + 4..]),
        None => (message, &[]),
    }
}

/// Each header field as (name, value with its folding, without the final CRLF).
fn header_fields(head: &[u8]) -> Vec<(&str, &[u8])> {
    let mut fields: Vec<(&str, &[u8])> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < head.len() {
        let Some(eol) = head[i..].windows(2).position(|w| w == b"\r\n") else {
            break;
        };
        let next = i + eol + 2;
        // A line that starts with WSP continues the field before it.
        if next >= head.len() || !matches!(head[next], b' ' | b'\t') {
            let field = &head[start..next - 2];
            if let Some(colon) = field.iter().position(|&c| c == b':') {
                let name = std::str::from_utf8(&field[..colon]).unwrap_or("");
                fields.push((name.trim_end(), &field[colon + 1..]));
            }
            start = next;
        }
        i = next;
    }
    fields
}

/// RFC 6376 3.4.2: the name in lower case, then `:`, then the value
/// unfolded, each run of WSP one space, none at either end.
fn relaxed_header(h: &mut Sha256, name: &str, value: &[u8]) {
    h.update(name.to_ascii_lowercase().as_bytes());
    h.update(b":");
    let mut out = Vec::with_capacity(value.len());
    let mut space = false;
    for &c in value {
        match c {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => space = true,
            _ => {
                if space && !out.is_empty() {
                    out.push(b' ');
                }
                space = false;
                out.push(c);
            }
        }
    }
    h.update(&out);
}

/// RFC 6376 3.4.4 and 3.7: SHA-256 of the body with trailing WSP removed
/// from each line, runs of WSP made one space, and empty lines at the end
/// dropped (an empty body hashes as nothing).
fn body_hash(body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut empty_lines = 0usize;
    let mut line = Vec::with_capacity(128);
    let mut lines = body.split(|&c| c == b'\n').peekable();
    while let Some(raw) = lines.next() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if lines.peek().is_none() && raw.is_empty() {
            break; // the text after the last CRLF: nothing
        }
        line.clear();
        let mut space = false;
        for &c in raw {
            match c {
                b' ' | b'\t' => space = true,
                _ => {
                    if space {
                        line.push(b' ');
                    }
                    space = false;
                    line.push(c);
                }
            }
        }
        if line.is_empty() {
            empty_lines += 1;
            continue;
        }
        for _ in 0..empty_lines {
            h.update(b"\r\n");
        }
        empty_lines = 0;
        h.update(&line);
        h.update(b"\r\n");
    }
    h.finalize().into()
}

/// A selector is one or more DNS labels (RFC 6376 3.1).
fn check_selector(s: &str) -> Result<String, Error> {
    let bad = |why: &str| Error::Selector(s.to_string(), why.to_string());
    if s.is_empty() {
        return Err(bad("empty"));
    }
    for label in s.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("each dot-separated part must be 1 to 63 characters"));
        }
        if !label
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-')
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(bad(
                "use letters, digits and inner hyphens only (e.g. `s2026` or `mail`)",
            ));
        }
    }
    Ok(s.to_ascii_lowercase())
}

/// The signing domain, in its ASCII (IDNA) form.
fn check_domain(d: &str) -> Result<String, Error> {
    let bad = |why: String| Error::Domain(d.to_string(), why);
    let d = d.trim_end_matches('.');
    let ascii = idna::domain_to_ascii(d).map_err(|e| bad(format!("not a domain name: {e}")))?;
    if !ascii.contains('.') {
        return Err(bad(
            "not a domain name: expected at least two labels (shop.example)".into(),
        ));
    }
    if !ascii.split('.').all(|l| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
    }) {
        return Err(bad(
            "not a domain name: labels are letters, digits and hyphens".into(),
        ));
    }
    Ok(ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_configuration_names_what_is_missing() {
        let args = DkimArgs {
            dkim_selector: Some("s1".into()),
            dkim_domain: None,
            dkim_key_file: None,
        };
        let e = args.load().unwrap_err().to_string();
        assert!(
            e.contains("AFTERCARE_DKIM_DOMAIN and AFTERCARE_DKIM_KEY_FILE unset"),
            "{e}"
        );
        assert!(DkimArgs::default().load().unwrap().is_none());
    }

    #[test]
    fn selectors_and_domains_are_checked() {
        assert!(check_selector("s2026.mail").is_ok());
        assert!(check_selector("bad selector").is_err());
        assert!(check_selector("-x").is_err());
        assert_eq!(check_domain("Shop.Example").unwrap(), "shop.example");
        assert_eq!(check_domain("bolt.hu.").unwrap(), "bolt.hu");
        assert_eq!(
            check_domain("bücher.example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert!(check_domain("localhost").is_err());
        assert!(check_domain("a b.example").is_err());
    }

    #[test]
    fn non_keys_are_refused_with_what_they_are() {
        let cases = [
            ("garbage", "not a PEM private key"),
            (
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
                "encrypted",
            ),
            (
                "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n",
                "elliptic-curve",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
                "not a private key",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nnot base64 at all!\n-----END PRIVATE KEY-----\n",
                "does not decode",
            ),
        ];
        for (pem, want) in cases {
            let e = Key::from_pem(pem).unwrap_err();
            assert!(e.contains(want), "{pem:?}: {e}");
        }
    }

    /// RFC 6376 3.4.6's example, and the empty body (3.4.4, errata 3192).
    #[test]
    fn bodies_are_canonicalized_as_the_rfc_says() {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let sha = |b: &[u8]| b64(&Sha256::digest(b));
        assert_eq!(
            b64(&body_hash(b" C \r\nD \t E\r\n\r\n\r\n")),
            sha(b" C\r\nD E\r\n")
        );
        assert_eq!(b64(&body_hash(b"")), sha(b""));
        assert_eq!(b64(&body_hash(b"\r\n\r\n")), sha(b""));
        assert_eq!(b64(&body_hash(b"a\r\n\r\nb")), sha(b"a\r\n\r\nb\r\n"));
        let mut h = Sha256::new();
        relaxed_header(&mut h, "SubJect", b" AbC \r\n\t de  f ");
        assert_eq!(b64(&h.finalize()), sha(b"subject:AbC de f"));
    }

    #[test]
    fn the_signing_domain_must_align_with_the_sender() {
        let key = Key::Ed25519(Box::new(ed25519_dalek::SigningKey::from_bytes(&[7; 32])));
        let s = Signer::new("s1", "shop.example", key).unwrap();
        assert_eq!(s.alignment_warning("hello@shop.example"), None);
        assert_eq!(s.alignment_warning("news@mail.shop.example"), None);
        let w = s.alignment_warning("hello@othershop.example").unwrap();
        assert!(
            w.contains("DKIM signs for shop.example but the sender is hello@othershop.example"),
            "{w}"
        );
    }

    #[test]
    fn record_lines_split_long_values() {
        let r = Record {
            name: "s._domainkey.shop.example".into(),
            value: format!("v=DKIM1; k=rsa; p={}", "A".repeat(400)),
        };
        let line = r.to_string();
        assert!(line.starts_with("s._domainkey.shop.example. IN TXT ( \"v=DKIM1; k=rsa; p=AAA"));
        let strings: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        assert_eq!(strings.len(), 2);
        assert!(strings.iter().all(|s| s.len() <= 255));
        assert_eq!(strings.concat(), r.value);
    }
}
