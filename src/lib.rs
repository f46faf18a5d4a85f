//! aftercare: post-purchase lifecycle email. See the README for the tour.

pub mod bounce;
pub mod cli;
pub mod clock;
pub mod config;
pub mod diagnostic;
pub mod engine;
pub mod event;
pub mod http;
pub mod ingest;
pub mod instance;
pub mod journey;
pub mod poll;
pub mod report;
pub mod retention;
pub mod rights;
pub mod schedule;
pub mod schema;
pub mod send;
pub mod sequence;
pub mod service;
pub mod simulate;
pub mod store;
pub mod telemetry;
pub mod template;
pub mod validate;
