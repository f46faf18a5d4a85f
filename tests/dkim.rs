//! DKIM signatures checked by an independent verifier: Debian's `python3-dkim`
//! (dkimpy), given the DNS record `aftercare dkim-record` prints through its
//! `dnsfunc`, so no DNS is needed. Keys are made here with `openssl`: RSA in
//! both PEM forms and Ed25519.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use aftercare::send::dkim::{DkimArgs, Record, Signer};
use aftercare::send::{Envelope, build_message};
use support::dkim::{openssl, verify};

/// The three key forms a shop may have, made with openssl in `dir`.
fn keys(dir: &Path) -> Vec<(&'static str, &'static str, PathBuf)> {
    let p = |n: &str| dir.join(n).display().to_string();
    openssl(&[
        "genpkey",
        "-algorithm",
        "rsa",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &p("rsa-pkcs8.pem"),
    ]);
    openssl(&[
        "pkey",
        "-in",
        &p("rsa-pkcs8.pem"),
        "-traditional",
        "-out",
        &p("rsa-pkcs1.pem"),
    ]);
    openssl(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-out",
        &p("ed25519.pem"),
    ]);
    let pkcs1 = std::fs::read_to_string(dir.join("rsa-pkcs1.pem")).unwrap();
    assert!(
        pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "{pkcs1}"
    );
    let pkcs8 = std::fs::read_to_string(dir.join("rsa-pkcs8.pem")).unwrap();
    assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"), "{pkcs8}");
    vec![
        ("RSA PKCS#8", "rsa", dir.join("rsa-pkcs8.pem")),
        ("RSA PKCS#1", "rsa", dir.join("rsa-pkcs1.pem")),
        ("Ed25519", "ed25519", dir.join("ed25519.pem")),
    ]
}

fn signer(selector: &str, key: &Path) -> Signer {
    DkimArgs {
        dkim_selector: Some(selector.into()),
        dkim_domain: Some("shop.example".into()),
        dkim_key_file: Some(key.to_path_buf()),
    }
    .load()
    .unwrap()
    .expect("configured")
}

/// Customers in every shipped language, with names and subjects in their
/// scripts.
const PEOPLE: &[(&str, &str, &str)] = &[
    ("th", "สมชาย ใจดี", "somchai@example.co.th"),
    ("zh", "王小明", "xiaoming@example.cn"),
    ("bg", "Мария Петрова", "maria@example.bg"),
    ("hu", "Őze Árpád", "arpad@example.hu"),
    ("en", "Anna O'Neil", "anna@example.com"),
];

/// The message the worker builds for `template` in `locale`, for a
/// customer named `name`; `unsubscribe` adds the RFC 8058 headers as a
/// value or promo email carries them.
fn message(
    template: &str,
    locale: &str,
    name: &str,
    email: &str,
    unsubscribe: bool,
) -> lettre::Message {
    let catalog = support::catalog();
    let templates = support::templates();
    let mut data = aftercare::template::data::sample_data(
        &catalog.policies,
        template,
        templates.sample(template),
    );
    data["customer"]["first_name"] = name.into();
    let content = templates.render(template, Some(locale), &data).unwrap();
    assert_eq!(content.locale, locale);
    let to = format!("{name} <{email}>");
    let env = Envelope {
        to: &to,
        idempotency_key: &format!("{template}:{locale}:{email}"),
        sequence: "fulfilment",
        template,
        date: "2026-11-20T10:00:00Z".parse().unwrap(),
        list_unsubscribe: unsubscribe
            .then_some("<https://shop.example/u/tok3n>, <mailto:unsub@shop.example?subject=tok3n>"),
    };
    build_message(&catalog.policies, &env, &content).unwrap()
}

fn dkim_signature(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let start = text.find("DKIM-Signature:").expect("signed");
    let rest = &text[start..];
    let mut end = rest.find("\r\n").unwrap();
    while rest[end + 2..].starts_with([' ', '\t']) {
        end += 2 + rest[end + 2..].find("\r\n").unwrap();
    }
    rest[..end].replace("\r\n", "")
}

#[test]
fn signatures_verify_for_every_key_form_and_language() {
    let dir = tempfile::tempdir().unwrap();
    for (form, algorithm, key) in keys(dir.path()) {
        let signer = signer("s2026", &key);
        assert_eq!(signer.algorithm(), algorithm, "{form}");
        let mut files = Vec::new();
        for (i, (locale, name, email)) in PEOPLE.iter().enumerate() {
            for unsubscribe in [true, false] {
                let bytes = aftercare::send::dkim::finish(
                    Some(&signer),
                    message("order-shipped", locale, name, email, unsubscribe),
                    chrono::Utc::now(),
                );
                // The signature comes first, in lines of at most 78
                // characters (RFC 5322 2.1.1).
                let text = String::from_utf8_lossy(&bytes);
                assert!(text.starts_with("DKIM-Signature: v=1; "), "{text}");
                let long: Vec<&str> = text
                    .split("\r\n")
                    .enumerate()
                    .take_while(|(i, l)| *i == 0 || l.starts_with('\t'))
                    .map(|(_, l)| l)
                    .filter(|l| l.len() > 78)
                    .collect();
                assert!(long.is_empty(), "{form}: {long:?}");
                let sig = dkim_signature(&bytes);
                for tag in [
                    &format!("a={algorithm}-sha256;")[..],
                    "c=relaxed/relaxed;",
                    "d=shop.example;",
                    "s=s2026;",
                    "h=from:to:subject:date:message-id:reply-to:mime-version:content-type:\
                     content-language:list-unsubscribe:list-unsubscribe-post:",
                ] {
                    let squeeze = |s: &str| s.split_whitespace().collect::<String>();
                    assert!(
                        squeeze(&sig).contains(&squeeze(tag)),
                        "{form}: {tag} not in {sig}"
                    );
                }
                // A subject in another script goes out RFC 2047-encoded.
                let text = String::from_utf8_lossy(&bytes);
                assert!(
                    *locale == "en" || text.contains("Subject: =?utf-8?"),
                    "{form} {locale}: {text}"
                );
                let f = dir.path().join(format!("{i}-{locale}-{unsubscribe}.eml"));
                std::fs::write(&f, &bytes).unwrap();
                files.push(f);
            }
        }
        for (f, verdict) in verify(signer.record(), algorithm, &files) {
            assert_eq!(verdict, "ok", "{form}: {}", f.display());
        }

        // The verifier can fail: a changed subject, a changed body, and a
        // List-Unsubscribe added on the way to a message that had none.
        let original = std::fs::read_to_string(dir.path().join("2-bg-false.eml")).unwrap();
        let tampered = [
            ("subject", original.replacen("Subject: ", "Subject: X", 1)),
            ("body", format!("{original}tampered\r\n")),
            (
                "unsubscribe",
                format!("List-Unsubscribe: <https://evil.example/u>\r\n{original}"),
            ),
        ];
        let mut files = Vec::new();
        for (what, text) in &tampered {
            assert_ne!(text, &original, "{what} was changed");
            let f = dir.path().join(format!("tampered-{what}.eml"));
            std::fs::write(&f, text).unwrap();
            files.push(f);
        }
        for (f, verdict) in verify(signer.record(), algorithm, &files) {
            assert!(
                verdict.starts_with("fail"),
                "{form}: {} verified: {verdict}",
                f.display()
            );
        }
        // And the record of another key does not verify the genuine message.
        let wrong = Record {
            name: signer.record().name.clone(),
            value: other_key(dir.path(), algorithm).record().value.clone(),
        };
        assert_ne!(wrong.value, signer.record().value);
        let genuine = dir.path().join("2-bg-false.eml");
        let verdicts = verify(&wrong, algorithm, &[genuine]);
        assert!(verdicts[0].1.starts_with("fail"), "{form}: {verdicts:?}");
    }
}

/// A second key of the same algorithm.
fn other_key(dir: &Path, algorithm: &str) -> Signer {
    let p = dir.join(format!("other-{algorithm}.pem"));
    if !p.exists() {
        let out = p.display().to_string();
        match algorithm {
            "rsa" => openssl(&[
                "genpkey",
                "-algorithm",
                "rsa",
                "-pkeyopt",
                "rsa_keygen_bits:1024",
                "-out",
                &out,
            ]),
            _ => openssl(&["genpkey", "-algorithm", "ed25519", "-out", &out]),
        }
    }
    signer("s2026", &p)
}

/// The sender as the service runs it, with a key: what lands in the outbox
/// verifies.
#[tokio::test]
async fn the_worker_signs_what_it_sends() {
    use aftercare::clock::ManualClock;
    use aftercare::send::transport::EmlDir;
    use aftercare::send::worker::{Compose, DEFAULT_RETRY, Done, Worker};
    use aftercare::store::MemStore;

    let dir = tempfile::tempdir().unwrap();
    openssl(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-out",
        &dir.path().join("k.pem").display().to_string(),
    ]);
    let signer = signer("mail", &dir.path().join("k.pem"));
    let event = aftercare::event::Event::parse(
        r#"{"id":"e1","type":"order.placed","occurred_at":"2026-05-01T10:00:00Z",
            "customer":{"id":"c1","email":"somchai@example.co.th","first_name":"สมชาย","locale":"th-TH"},
            "order":{"id":"o1","number":"1001","placed_at":"2026-05-01T10:00:00Z",
                     "currency":"THB","total":"990",
                     "items":[{"sku":"CAM-1","name":"กล้อง","category":"camera",
                               "quantity":1,"unit_price":"990"}]}}"#,
    )
    .unwrap();
    let now: chrono::DateTime<chrono::Utc> = "2026-05-01T10:00:00Z".parse().unwrap();
    let store = MemStore::new();
    aftercare::ingest::ingest_batch(&store, support::catalog(), &[event], "test", now)
        .await
        .unwrap();
    let outbox = dir.path().join("outbox");
    let record = signer.record().clone();
    let worker = Worker {
        store: store.clone(),
        catalog: Arc::new(support::catalog().clone()),
        templates: Arc::new(aftercare::template::Templates::load(Path::new("templates"), "en").0),
        transport: EmlDir {
            dir: outbox.clone(),
        },
        clock: Arc::new(ManualClock::new(now + chrono::Duration::minutes(1))),
        retry: DEFAULT_RETRY.to_vec(),
        compose: Compose::Message,
        max_email_bytes: aftercare::send::worker::DEFAULT_MAX_EMAIL_BYTES,
        dkim: Some(Arc::new(signer)),
        concurrency: 1,
        bounces: None,
        paused: Default::default(),
        links: std::sync::Arc::new(
            aftercare::send::links::Links::ephemeral("http://127.0.0.1:8080").unwrap(),
        ),
        instance: aftercare::instance::Instance::solo(),
    };
    let handled = worker.tick().await.unwrap();
    assert!(handled.iter().any(|h| h.done == Done::Sent), "{handled:?}");
    let files: Vec<PathBuf> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.contains("DKIM-Signature: "), "{text}");
    for (f, verdict) in verify(&record, "ed25519", &files) {
        assert_eq!(verdict, "ok", "{}", f.display());
    }
}

fn aftercare(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aftercare"));
    cmd.args(args)
        .env_remove("AFTERCARE_DKIM_SELECTOR")
        .env_remove("AFTERCARE_DKIM_DOMAIN")
        .env_remove("AFTERCARE_DKIM_KEY_FILE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run aftercare")
}

/// `dkim-record` prints the public key as openssl derives it from the
/// private key file.
#[test]
fn dkim_record_publishes_the_configured_key() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    for (form, algorithm, key) in keys(dir.path()) {
        let o = aftercare(
            &["dkim-record"],
            &[
                ("AFTERCARE_DKIM_SELECTOR", Path::new("s1")),
                ("AFTERCARE_DKIM_DOMAIN", Path::new("Shop.Example")),
                ("AFTERCARE_DKIM_KEY_FILE", &key),
            ],
        );
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{form}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let spki = Command::new("openssl")
            .args(["pkey", "-pubout", "-outform", "DER", "-in"])
            .arg(&key)
            .output()
            .unwrap()
            .stdout;
        let public = match algorithm {
            "rsa" => spki.as_slice(),
            // RFC 8463: the raw key, the last 32 bytes of the SPKI.
            _ => &spki[spki.len() - 32..],
        };
        let p = base64::engine::general_purpose::STANDARD.encode(public);
        assert!(
            out.contains("name:  s1._domainkey.shop.example\n")
                && out.contains(&format!("value: v=DKIM1; k={algorithm}; p={p}\n")),
            "{form}: {out}"
        );
    }
}

/// Anything but an RSA or Ed25519 private key is a configuration error that
/// names the file and says what it is.
#[test]
fn bad_keys_and_partial_settings_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &p("ec.pem").display().to_string(),
    ]);
    openssl(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-aes-256-cbc",
        "-pass",
        "pass:secret",
        "-out",
        &p("encrypted.pem").display().to_string(),
    ]);
    openssl(&[
        "genpkey",
        "-algorithm",
        "rsa",
        "-pkeyopt",
        "rsa_keygen_bits:512",
        "-out",
        &p("small.pem").display().to_string(),
    ]);
    std::fs::write(p("garbage.pem"), "hello\n").unwrap();
    let cases = [
        (
            "ec.pem",
            "elliptic-curve (ECDSA) key: DKIM signs with RSA or Ed25519 keys only",
        ),
        ("encrypted.pem", "encrypted with a passphrase"),
        ("small.pem", "an RSA key of 512 bits"),
        ("garbage.pem", "not a PEM private key"),
        ("missing.pem", "cannot read"),
    ];
    for (file, want) in cases {
        let o = aftercare(
            &["dkim-record"],
            &[
                ("AFTERCARE_DKIM_SELECTOR", Path::new("s1")),
                ("AFTERCARE_DKIM_DOMAIN", Path::new("shop.example")),
                ("AFTERCARE_DKIM_KEY_FILE", &p(file)),
            ],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{file}");
        assert!(
            err.contains(&format!("AFTERCARE_DKIM_KEY_FILE {}: ", p(file).display()))
                && err.contains(want),
            "{file}: {err}"
        );
    }
    let o = aftercare(
        &["dkim-record"],
        &[("AFTERCARE_DKIM_SELECTOR", Path::new("s1"))],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("AFTERCARE_DKIM_DOMAIN and AFTERCARE_DKIM_KEY_FILE unset"),
        "{err}"
    );
}
