//! The transport used without SMTP: one `.eml` file per message in a folder,
//! named by Message-ID, so sending the same message again overwrites it.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` as `<dir>/<message-id>.eml`, atomically (write a temporary
/// file, then rename), and returns the path. A write that fails (a full
/// disk) leaves no temporary file behind.
pub fn write(dir: &Path, message_id: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let stem: String = message_id
        .trim_matches(['<', '>'])
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "@.-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(format!("{stem}.eml"));
    let tmp = dir.join(format!(".{stem}.eml.tmp"));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/dev/full` fails every write with "no space left on device", as a
    /// full disk does; the temporary file must not stay behind.
    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join(".m@x.eml.tmp");
        std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
        let err = write(dir.path(), "<m@x>", b"hello").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28), "ENOSPC: {err}");
        assert!(
            !tmp.exists() && tmp.symlink_metadata().is_err(),
            "left behind"
        );
        assert!(!dir.path().join("m@x.eml").exists());
    }
}
