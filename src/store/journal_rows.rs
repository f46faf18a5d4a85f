//! The journal's rows in the SQL stores: one row per customer and time of
//! decision, holding every entry a transaction wrote about the customer then,
//! in the order decided (`kind` = [`GROUPED`], `detail` a JSON array whose
//! items are the entries: their enrollment key, sequence and step, and the
//! [`What`] with its `kind`).
//!
//! An event decides about five things for a customer on average (a sequence
//! that did not start, one that did, what it waits for, …): as a row each,
//! the journal was half of the rows and index entries ingest wrote
//! (docs/BENCHMARKS.md, section 9). Rows written one entry each (`kind` the
//! entry's own, `detail` the rest of it), as before, read back the same.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Error, Result};
use crate::engine::journal::{Entry, What};

/// The `kind` of a row that holds a list of entries.
pub const GROUPED: &str = "entries";

/// The entries of one customer at one time.
pub struct Group<'a> {
    pub customer_id: &'a str,
    pub at: DateTime<Utc>,
    pub entries: Vec<Item<'a>>,
}

/// An entry as an item of a row's list.
#[derive(Serialize)]
pub struct Item<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    enrollment_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<&'a str>,
    #[serde(flatten)]
    what: &'a What,
}

/// `entries` in rows: one per customer and time, in the order each first
/// appears (row ids follow it, so a customer's rows of one instant read back
/// in the order decided).
pub fn groups(entries: &[Entry]) -> Vec<Group<'_>> {
    let mut out: Vec<Group<'_>> = Vec::new();
    let mut index: HashMap<(&str, DateTime<Utc>), usize> = HashMap::new();
    for e in entries {
        let i = *index
            .entry((e.customer_id.as_str(), e.at))
            .or_insert_with(|| {
                out.push(Group {
                    customer_id: &e.customer_id,
                    at: e.at,
                    entries: Vec::new(),
                });
                out.len() - 1
            });
        out[i].entries.push(Item {
            enrollment_key: e.enrollment_key.as_deref(),
            sequence: e.sequence.as_deref(),
            step: e.step.as_deref(),
            what: &e.what,
        });
    }
    out
}

/// A journal row as read.
#[derive(sqlx::FromRow)]
pub struct Stored {
    pub customer_id: String,
    pub at: DateTime<Utc>,
    pub enrollment_key: Option<String>,
    pub sequence: Option<String>,
    pub step: Option<String>,
    pub kind: String,
    /// JSON text.
    pub detail: String,
}

/// The entries of a row, in the order decided.
pub fn entries(row: Stored) -> Result<Vec<Entry>> {
    let unknown =
        |detail: &str| Error::Corrupt(format!("unknown journal entry {:?}: {detail}", row.kind));
    if row.kind != GROUPED {
        let detail: serde_json::Value = serde_json::from_str(&row.detail)?;
        let what = What::join(&row.kind, detail).ok_or_else(|| unknown(&row.detail))?;
        return Ok(vec![Entry {
            customer_id: row.customer_id,
            at: row.at,
            enrollment_key: row.enrollment_key,
            sequence: row.sequence,
            step: row.step,
            what,
        }]);
    }
    let items: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(&row.detail)?;
    let mut out = Vec::with_capacity(items.len());
    for mut item in items {
        let mut text = |name: &str| match item.remove(name) {
            Some(serde_json::Value::String(s)) => Some(s),
            _ => None,
        };
        let (enrollment_key, sequence, step) =
            (text("enrollment_key"), text("sequence"), text("step"));
        let kind = text("kind").ok_or_else(|| unknown(&row.detail))?;
        let what = What::join(&kind, serde_json::Value::Object(item))
            .ok_or_else(|| unknown(&row.detail))?;
        out.push(Entry {
            customer_id: row.customer_id.clone(),
            at: row.at,
            enrollment_key,
            sequence,
            step,
            what,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::journal::{Checked, NotEnrolled, Role};

    fn entry(customer: &str, at: &str, key: Option<&str>, what: What) -> Entry {
        Entry {
            customer_id: customer.into(),
            at: at.parse().unwrap(),
            enrollment_key: key.map(str::to_string),
            sequence: key.map(|k| k.split('/').next().unwrap().to_string()),
            step: key.map(|_| "a-step".to_string()),
            what,
        }
    }

    /// Entries go into one row per customer and time, in the order decided,
    /// and come back the same, every kind of `What`.
    #[test]
    fn entries_are_grouped_and_read_back() {
        let t0 = "2026-11-20T10:00:00Z";
        let t1 = "2026-11-20T10:00:01Z";
        let all = vec![
            entry(
                "c1",
                t0,
                Some("fulfilment/c1/o1"),
                What::Enrolled {
                    event_id: Some("e1".into()),
                    started_by: None,
                },
            ),
            entry(
                "c2",
                t0,
                Some("reorder/c2/o2"),
                What::NotEnrolled {
                    why: NotEnrolled::TriggerFalse,
                    event_id: Some("e2".into()),
                    condition: Some(Checked::of("order.total > 100.0", &Ok(false))),
                    message: "m".into(),
                },
            ),
            entry(
                "c1",
                t0,
                Some("fulfilment/c1/o1"),
                What::Condition {
                    role: Role::If,
                    event_id: None,
                    checked: Checked {
                        branch: Some("else".into()),
                        ..Checked::of("x", &Err("no such key".into()))
                    },
                },
            ),
            entry("c1", t1, None, What::Completed),
            entry(
                "c1",
                t0,
                None,
                What::Duplicate {
                    event_id: "e1".into(),
                    event_type: "order.placed".into(),
                },
            ),
        ];
        let groups = groups(&all);
        let shape: Vec<(&str, usize)> = groups
            .iter()
            .map(|g| (g.customer_id, g.entries.len()))
            .collect();
        assert_eq!(shape, [("c1", 3), ("c2", 1), ("c1", 1)]);
        let mut back = Vec::new();
        for g in &groups {
            back.extend(
                entries(Stored {
                    customer_id: g.customer_id.to_string(),
                    at: g.at,
                    enrollment_key: None,
                    sequence: None,
                    step: None,
                    kind: GROUPED.into(),
                    detail: serde_json::to_string(&g.entries).unwrap(),
                })
                .unwrap(),
            );
        }
        let expected: Vec<&Entry> = [0, 2, 4, 1, 3].iter().map(|&i| &all[i]).collect();
        assert_eq!(back.iter().collect::<Vec<_>>(), expected);
    }

    /// A row of one entry, as written before the rows were grouped.
    #[test]
    fn a_row_of_one_entry_reads_back() {
        let e = entry(
            "c1",
            "2026-11-20T10:00:00Z",
            Some("fulfilment/c1/o1"),
            What::WaitOver {
                until: "2026-11-21T10:00:00Z".parse().unwrap(),
            },
        );
        let (kind, detail) = e.what.split();
        let back = entries(Stored {
            customer_id: e.customer_id.clone(),
            at: e.at,
            enrollment_key: e.enrollment_key.clone(),
            sequence: e.sequence.clone(),
            step: e.step.clone(),
            kind: kind.into(),
            detail: detail.to_string(),
        })
        .unwrap();
        assert_eq!(back, [e]);
        let bad = Stored {
            customer_id: "c1".into(),
            at: "2026-11-20T10:00:00Z".parse().unwrap(),
            enrollment_key: None,
            sequence: None,
            step: None,
            kind: GROUPED.into(),
            detail: r#"[{"kind":"no_such_kind"}]"#.into(),
        };
        assert!(matches!(entries(bad), Err(Error::Corrupt(_))));
    }
}
