//! Hostile input where links meet it: any text as an unsubscribe or
//! tracking token (`/u/TOKEN`, `/t/o/TOKEN`, `/t/c/TOKEN`) must be refused or
//! read, never panic; and any text as an email's HTML must come through the
//! tracking rewrite (pixel and click redirects) or be refused, never panic,
//! with the pixel in it.
#![no_main]

use aftercare::send::links::Links;
use aftercare::send::tracking::{Tracked, rewrite};
use libfuzzer_sys::fuzz_target;

/// Whether a panic was raised inside lol_html. Its checks of its own state
/// (`ActionError::internal`) are `debug_assert!`s, located at their callers
/// in lol_html: the fuzz build (debug assertions on) panics there, a release
/// build gets the error `rewrite_str` returns. `tracking::rewrite` takes
/// both as "the rewriter failed on this markup" and the email goes
/// untracked (docs/FUZZING.md). A panic in this crate's handlers is located
/// in this crate.
fn in_lol_html(info: &std::panic::PanicHookInfo) -> bool {
    info.location()
        .is_some_and(|l| l.file().replace('\\', "/").contains("/lol_html-"))
}

fuzz_target!(|data: &[u8]| {
    // libfuzzer-sys's hook aborts on every panic, caught or not. Only
    // lol_html's own pass (`rewrite` catches them); any other panic, in this
    // crate's handlers too, still aborts as a crash.
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let fuzzer = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !in_lol_html(info) {
                fuzzer(info);
            }
        }));
    });
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let links = Links::new("https://m.example", b"fuzz-secret-0123456789", None)
        .expect("a valid public URL");
    let _ = links.verify(text);
    let t = Tracked {
        links: &links,
        customer_id: "c",
        idempotency_key: "k",
        opens: true,
        clicks: true,
    };
    if let Ok(out) = rewrite(text, &t) {
        assert!(
            out.contains("https://m.example/t/o/"),
            "no pixel in {out:?}"
        );
    }
});
