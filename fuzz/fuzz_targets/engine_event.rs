//! Any event the parser accepts, pushed through the shipped sequences and
//! policies (`sequences/`, `templates/`) by the engine, as ingest does, then
//! each enrollment woken when due, as the scheduler does.
#![no_main]

use std::path::Path;
use std::sync::{Arc, OnceLock};

use aftercare::engine::customer::CustomerState;
use aftercare::engine::dispatch::{apply_event, apply_wake};
use aftercare::sequence::model::Catalog;
use libfuzzer_sys::fuzz_target;

fn catalog() -> &'static Arc<Catalog> {
    static CATALOG: OnceLock<Arc<Catalog>> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let loaded = aftercare::validate::load(&root.join("sequences"), &root.join("templates"));
        assert!(
            !loaded.diagnostics.has_errors(),
            "the shipped sequences load: {}",
            loaded.diagnostics
        );
        loaded.catalog
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(event) = aftercare::ingest::parse(data) else {
        return;
    };
    let catalog = catalog();
    let mut state = CustomerState::default();
    let _ = apply_event(catalog, &mut state, &event, event.occurred_at);
    // Each wake ends or moves its enrollment on; the bound keeps a
    // misbehaving one from spinning here.
    for _ in 0..64 {
        let due = state
            .enrollments
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.wake_at().map(|t| (t, i)))
            .min();
        let Some((at, idx)) = due else { break };
        let _ = apply_wake(catalog, &mut state, idx, at);
    }
});
