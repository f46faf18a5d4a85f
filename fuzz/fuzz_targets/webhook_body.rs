//! A webhook body as `POST /v1/events` handles it before the store: split
//! into items, each parsed, a rejected one named by its id.
#![no_main]

use aftercare::ingest::http::{item_id, split_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let Ok(items) = split_body(body) else {
        return;
    };
    for raw in items {
        if aftercare::ingest::parse(raw.get().as_bytes()).is_err() {
            let _ = item_id(raw.get());
        }
    }
});
