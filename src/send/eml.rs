//! The transport used without SMTP: one `.eml` file per message in a folder,
//! named by Message-ID, so sending the same message again overwrites it.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` as `<dir>/<message-id>.eml`, atomically (write a temporary
/// file, then rename), and returns the path.
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
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}
