//! Errors in a user's files, reported as `file:line:col: message`.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in one file, at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: u64,
    pub col: u64,
    pub severity: Severity,
    pub message: String,
}

impl Diagnostic {
    pub fn error(file: &Path, line: u64, col: u64, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: line.max(1),
            col: col.max(1),
            severity: Severity::Error,
            message: message.into(),
        }
    }

    pub fn warning(file: &Path, line: u64, col: u64, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(file, line, col, message)
        }
    }

    /// An error in a file read line by line (a JSON-lines events file),
    /// shown as `file:line: message`.
    pub fn line_error(file: &Path, line: u64, message: impl Into<String>) -> Self {
        Self {
            col: 0,
            ..Self::error(file, line, 1, message)
        }
    }

    /// A warning shown as `file:line: warning: message`.
    pub fn line_warning(file: &Path, line: u64, message: impl Into<String>) -> Self {
        Self {
            col: 0,
            ..Self::warning(file, line, 1, message)
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "",
            Severity::Warning => "warning: ",
        };
        write!(f, "{}:{}", self.file.display(), self.line)?;
        // Column 0: a line-oriented file, where the line is the place.
        if self.col > 0 {
            write!(f, ":{}", self.col)?;
        }
        write!(f, ": {level}{}", self.message)
    }
}

/// Every problem found while loading, so that a caller can print them all at
/// once instead of stopping at the first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.is_error())
    }

    pub fn sorted(mut self) -> Self {
        self.0.sort();
        self.0.dedup();
        self
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// The allowed name nearest to a misspelt one, if it is near enough to help:
/// the "did you mean" of unknown YAML keys and of unknown event types.
pub fn closest<'a>(name: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let near = allowed
        .iter()
        .filter(|a| **a != name)
        .map(|a| (edit_distance(name, a), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 4))
        .min()
        .map(|(_, a)| a);
    // A name written short or long (`timeout` for `on_timeout`).
    near.or_else(|| {
        let mut within = allowed.iter().filter(|a| {
            **a != name
                && name.len() >= 4
                && a.len() >= 4
                && (a.contains(name) || name.contains(**a))
        });
        match (within.next(), within.next()) {
            (Some(a), None) => Some(*a),
            _ => None,
        }
    })
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspelt_names_get_a_suggestion() {
        assert_eq!(
            closest("wiat_for", &["wait_for", "email"]),
            Some("wait_for")
        );
        assert_eq!(closest("zzz", &["wait_for", "email"]), None);
        assert_eq!(
            closest("shipment.shiped", &["shipment.shipped", "order.placed"]),
            Some("shipment.shipped")
        );
        // A name is no suggestion for itself.
        assert_eq!(closest("email", &["email"]), None);
        // Nor is a name written short or long too far to suggest.
        assert_eq!(
            closest("timeout", &["within", "on_timeout", "when"]),
            Some("on_timeout")
        );
    }

    #[test]
    fn a_line_oriented_place_has_no_column() {
        let f = Path::new("events.jsonl");
        assert_eq!(
            Diagnostic::line_error(f, 3, "id: must not be empty").to_string(),
            "events.jsonl:3: id: must not be empty"
        );
        assert_eq!(
            Diagnostic::line_warning(f, 4, "odd").to_string(),
            "events.jsonl:4: warning: odd"
        );
        assert_eq!(
            Diagnostic::error(f, 3, 7, "x").to_string(),
            "events.jsonl:3:7: x"
        );
    }
}
