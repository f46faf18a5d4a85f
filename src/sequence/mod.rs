//! Sequences and policies as marketers write them in YAML.

pub mod condition;
pub mod duration;
pub mod load;
pub mod model;
pub mod plan;
pub mod yaml;
