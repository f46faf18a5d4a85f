//! DKIM checks with an independent verifier: dkimpy (Debian's python3-dkim)
//! with a `dnsfunc`, so no DNS is needed; keys made with `openssl`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use aftercare::send::dkim::Record;

/// Verifies each file with dkimpy against `record`; one line per file:
/// `ok` or `fail <reason>`.
const VERIFY: &str = r#"
import sys, logging, io
try:
    import dkim
    if sys.argv[3] == 'ed25519':
        import nacl.signing
except ImportError as e:
    print('MISSING', e)
    sys.exit(3)
name, value = sys.argv[1].encode(), sys.argv[2].encode()
def dns(qname, timeout=5):
    return value if qname.rstrip(b'.') == name else None
for f in sys.argv[4:]:
    log = io.StringIO()
    logger = logging.getLogger('dkim-' + f)
    logger.addHandler(logging.StreamHandler(log))
    logger.setLevel(logging.DEBUG)
    msg = open(f, 'rb').read()
    try:
        ok = dkim.verify(msg, logger=logger, dnsfunc=dns)
    except Exception as e:
        ok = False
        log.write(repr(e))
    print(f, 'ok' if ok else 'fail ' + log.getvalue().replace('\n', ' | ')[-600:])
"#;

/// dkimpy's verdict on each file, in order.
pub fn verify(record: &Record, algorithm: &str, files: &[PathBuf]) -> Vec<(PathBuf, String)> {
    let o = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(VERIFY)
        .arg(&record.name)
        .arg(&record.value)
        .arg(algorithm)
        .args(files)
        .output()
        .expect(
            "/usr/bin/python3 runs: it is the DKIM verifier of this test; run scripts/test, \
             which installs python3 and python3-dkim",
        );
    let out = String::from_utf8_lossy(&o.stdout);
    if o.status.code() == Some(3) {
        panic!(
            "the independent DKIM verifier is missing ({}): run scripts/test, which installs \
             python3-dkim and python3-nacl (apt-get install python3-dkim)",
            out.trim()
        );
    }
    assert!(
        o.status.success(),
        "the verifier failed: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let verdicts: Vec<(PathBuf, String)> = out
        .lines()
        .map(|l| {
            let (f, v) = l.split_once(' ').unwrap();
            (PathBuf::from(f), v.to_string())
        })
        .collect();
    assert_eq!(verdicts.len(), files.len(), "{out}");
    verdicts
}

pub fn openssl(args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs (Debian package openssl)");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}
