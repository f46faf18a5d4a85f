//! aftercare: post-purchase lifecycle email. See the README for the tour.

pub mod cli;
pub mod diagnostic;
pub mod engine;
pub mod event;
pub mod send;
pub mod sequence;
pub mod simulate;
pub mod template;
pub mod validate;
