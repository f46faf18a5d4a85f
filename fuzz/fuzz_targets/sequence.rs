//! A sequences folder built from the input, checked by `validate::load` as
//! the `validate` command and every other command do at start: the loader
//! with its file:line:col diagnostics, the checks across files, and each
//! condition run against the sample event. The templates folder is empty.
//!
//! The input is the files' contents separated by NUL bytes, in the order of
//! `FILES`; a file whose part is missing is not written.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

const FILES: [&str; 3] = ["s.yaml", "_policies.yaml", "t.yaml"];

/// One folder per fuzzing process, written and removed for each input; in
/// memory where the machine has /dev/shm.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let base = match shm.is_dir() {
            true => shm.to_path_buf(),
            false => std::env::temp_dir(),
        };
        base.join(format!("aftercare-fuzz-sequences-{}", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let root = dir();
    let (sequences, templates) = (root.join("sequences"), root.join("templates"));
    let _ = std::fs::remove_dir_all(root);
    for d in [&sequences, &templates] {
        std::fs::create_dir_all(d).expect("temp folder");
    }
    for (part, file) in data.split(|b| *b == 0).zip(FILES) {
        std::fs::write(sequences.join(file), part).expect("temp file");
    }
    let loaded = aftercare::validate::load(&sequences, &templates);
    let _ = loaded.diagnostics.to_string();
    let _ = std::fs::remove_dir_all(root);
});
