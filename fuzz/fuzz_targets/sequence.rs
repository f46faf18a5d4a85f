//! A YAML file read both as a sequence and as `_policies.yaml`, through the
//! loader `validate` and every command run; a sequence that loads goes into a
//! catalog with the policies.
#![no_main]

use std::path::Path;

use aftercare::sequence::load::{parse_policies, parse_sequence};
use aftercare::sequence::model::Catalog;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (policies, _) = parse_policies(Path::new("_policies.yaml"), text);
    let (seq, diags) = parse_sequence(Path::new("s.yaml"), text);
    for d in &diags.0 {
        let _ = d.to_string();
    }
    if let Some(seq) = seq {
        let _ = Catalog::new(vec![seq], policies);
    }
});
