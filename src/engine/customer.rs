//! One customer as a decision sees it, and what a decision asks to change.
//! The store loads a [`CustomerState`] under the customer's lock, the
//! dispatcher turns an input into [`Changes`], and the store writes them.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use super::dispatch::Note;
use super::profile::Profile;
use super::state::{Context, EmailJob, Enrollment};

/// What the store knows of one customer, loaded under the customer's lock.
#[derive(Debug, Default, Clone)]
pub struct CustomerState {
    pub profile: Option<Profile>,
    /// The customer's active enrollments (and any started meanwhile).
    pub enrollments: Vec<Enrollment>,
    /// Keys of the customer's finished enrollments: they stop a second
    /// `once_*` entry, and their state is not needed. Shared, so that a
    /// store kept in memory hands it out without copying.
    pub finished: Arc<HashSet<String>>,
}

/// An email to enqueue, with the context it is rendered from.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEmail {
    pub job: EmailJob,
    pub context: Arc<Context>,
}

/// What one input changed for one customer.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    /// The profile to save, when the input carried customer details.
    pub profile: Option<Profile>,
    /// Indices into [`CustomerState::enrollments`] to save (new ones appended).
    pub enrollments: BTreeSet<usize>,
    pub emails: Vec<NewEmail>,
    /// An address to suppress, with the reason.
    pub suppress: Option<(String, String)>,
    /// What the operator should know (exits, failed conditions).
    pub notes: Vec<Note>,
}

/// Which of `n` shards a customer belongs to, the same in every process and
/// on every machine: work cut this way never puts one customer in two
/// places (the Kafka consumer's parallel transactions, `simulate`'s threads).
pub fn shard_of(customer_id: &str, n: usize) -> usize {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(customer_id.as_bytes());
    (u64::from_be_bytes(h[..8].try_into().expect("8 bytes")) % n.max(1) as u64) as usize
}
