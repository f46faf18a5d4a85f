//! Hostile input where links meet it: any text as an unsubscribe or
//! tracking token (`/u/TOKEN`, `/t/o/TOKEN`, `/t/c/TOKEN`) must be refused or
//! read, never panic; and any text as an email's HTML must come through the
//! tracking rewrite (pixel and click redirects) or be refused, never panic,
//! with the pixel in it.
#![no_main]

use aftercare::send::links::Links;
use aftercare::send::tracking::{Tracked, rewrite};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
        assert!(out.contains("https://m.example/t/o/"), "no pixel in {out:?}");
    }
});
