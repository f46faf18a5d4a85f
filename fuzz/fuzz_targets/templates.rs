//! A templates folder built from the input, loaded as every command loads it
//! and each template rendered against its sample, as `validate` does.
//!
//! The input is the files' contents separated by NUL bytes, in the order of
//! `FILES`; a file whose part is missing is not written.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use aftercare::sequence::model::Policies;
use aftercare::template::Templates;
use aftercare::template::data::sample_data;
use libfuzzer_sys::fuzz_target;

const FILES: [&str; 7] = [
    "t/en.hbs",
    "_partials/p.hbs",
    "_partials/q.hbs",
    "_layouts/base.hbs",
    "t/en.txt.hbs",
    "t/sample.json",
    "t/hu.hbs",
];

/// One folder per fuzzing process, written and removed for each input; in
/// memory where the machine has /dev/shm.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        let base = match shm.is_dir() {
            true => shm.to_path_buf(),
            false => std::env::temp_dir(),
        };
        base.join(format!("aftercare-fuzz-templates-{}", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let root = dir();
    let _ = std::fs::remove_dir_all(root);
    for sub in ["t", "_partials", "_layouts"] {
        std::fs::create_dir_all(root.join(sub)).expect("temp folder");
    }
    for (part, file) in data.split(|b| *b == 0).zip(FILES) {
        std::fs::write(root.join(file), part).expect("temp file");
    }
    let (tpl, diags) = Templates::load(root, "en");
    for d in &diags.0 {
        let _ = d.to_string();
    }
    let policies = Policies::default();
    let ids: Vec<String> = tpl.ids().cloned().collect();
    for id in ids {
        let data = sample_data(&policies, &id, tpl.sample(&id));
        for locale in tpl.locales(&id) {
            let _ = tpl.render(&id, Some(&locale), &data);
        }
        let _ = tpl.render(&id, Some("hu-HU"), &data);
    }
    let _ = std::fs::remove_dir_all(root);
});
