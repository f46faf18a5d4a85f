//! Sequences and policies as marketers write them in YAML.
//!
//! `load` reads a folder and checks across files, `steps` builds a sequence's
//! steps, `policies` reads `_policies.yaml`; all three read durations, times
//! and conditions through `values`, on top of `yaml` (nodes with places).
//! `model` is what they build, `plan` the steps laid out flat for the engine.

mod cel_words;
pub mod condition;
pub mod cron;
pub mod duration;
pub mod load;
pub mod loops;
pub mod model;
pub mod plan;
pub mod policies;
pub mod steps;
pub mod values;
pub mod weekdays;
pub mod yaml;
