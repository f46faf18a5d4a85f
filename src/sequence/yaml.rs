//! A YAML document as a tree that remembers where each node was written, and a
//! reader over it that collects every problem instead of stopping at the first.
//!
//! serde-saphyr parses; `Spanned` gives each node its line and column. The typed
//! model is then built by hand from the tree, so an unknown key, a bad
//! duration and a bad condition in the same file are all reported together.

use std::fmt;
use std::path::Path;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::diagnostic::{Diagnostic, Diagnostics, closest};

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub line: u64,
    pub col: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "a number",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<Value>::deserialize(d)?;
        Ok(Node {
            value: s.value,
            line: s.referenced.line(),
            col: s.referenced.column(),
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom("number too large"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<Spanned<Key>>()? {
            let k = Node {
                value: k.value.0,
                line: k.referenced.line(),
                col: k.referenced.column(),
            };
            let v = map.next_value::<Node>()?;
            entries.push((k, v));
        }
        Ok(Value::Map(entries))
    }
}

/// A mapping's key, read as the text written: YAML 1.1 reads a plain `on`,
/// `off`, `yes`, `no`, `y` or `n` as a boolean, and the key `on:` of a wait
/// would be `true`. (Values keep the YAML 1.1 reading.)
struct Key(Value);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(ValueVisitor).map(Key)
    }
}

/// Parses a whole document; a syntax error becomes one diagnostic with its place.
pub fn parse(file: &Path, text: &str) -> Result<Node, Diagnostic> {
    if text.trim().is_empty() {
        return Ok(Node {
            value: Value::Map(Vec::new()),
            line: 1,
            col: 1,
        });
    }
    serde_saphyr::from_str::<Node>(text).map_err(|e| {
        let (line, col) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        let msg = e.to_string();
        // The crate's message may repeat the position; keep the first line only.
        let mut msg = msg.lines().next().unwrap_or("invalid YAML");
        // Drop a leading "error: line N column M: ": the place is ours to print.
        if let Some(rest) = msg.strip_prefix("error: line ")
            && let Some((_, tail)) = rest.split_once(": ")
        {
            msg = tail;
        }
        Diagnostic::error(
            file,
            line,
            col,
            format!("invalid YAML: {msg}{}", yaml_hint(msg)),
        )
    })
}

/// What the YAML parser's words usually mean in a sequence or policies file.
fn yaml_hint(msg: &str) -> &'static str {
    if msg.contains("did not find expected '-'")
        || msg.contains("did not find expected key")
        || msg.contains("block collection")
        || msg.contains("block mapping")
    {
        "; the indentation is off here: the items of a list (`- …`) and the keys of a \
         mapping start at the same column as the ones before them"
    } else if msg.contains("placement of ':'") || msg.contains("mapping values are not allowed") {
        "; a `:` where YAML does not expect one: put a value that holds `: ` in quotes, and \
         check the indentation and any `[` or `{` left open above"
    } else if msg.contains("only valid inside a block") {
        "; a `- ` item where YAML does not expect one: check the indentation, and any `[` or \
         `{` left open above"
    } else {
        ""
    }
}

/// Reads typed values out of nodes, recording what is wrong where. The
/// values of sequences and policies (durations, times, conditions) are read
/// in `values.rs`.
pub struct Reader<'a> {
    pub file: &'a Path,
    pub diags: Diagnostics,
}

impl<'a> Reader<'a> {
    pub fn new(file: &'a Path) -> Self {
        Self {
            file,
            diags: Diagnostics::default(),
        }
    }

    pub fn error(&mut self, node: &Node, message: impl Into<String>) {
        self.diags
            .push(Diagnostic::error(self.file, node.line, node.col, message));
    }

    pub fn warning(&mut self, node: &Node, message: impl Into<String>) {
        self.diags
            .push(Diagnostic::warning(self.file, node.line, node.col, message));
    }

    /// Opens a mapping; `what` names it in messages ("step", "sequence").
    pub fn map<'n>(&mut self, node: &'n Node, what: &str) -> Option<Fields<'n>> {
        match &node.value {
            Value::Map(entries) => Some(Fields {
                node,
                entries,
                used: vec![false; entries.len()],
            }),
            other => {
                self.error(
                    node,
                    format!("{what}: expected a mapping, found {}", other.kind()),
                );
                None
            }
        }
    }

    pub fn seq<'n>(&mut self, node: &'n Node, what: &str) -> &'n [Node] {
        match &node.value {
            Value::Seq(items) => items,
            Value::Null => &[],
            other => {
                self.error(
                    node,
                    format!("{what}: expected a list, found {}", other.kind()),
                );
                &[]
            }
        }
    }

    pub fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) if !s.trim().is_empty() => Some(s.clone()),
            Value::Str(_) => {
                self.error(node, format!("{what}: must not be empty"));
                None
            }
            // A bare number is a fine name (e.g. a weight written as a string).
            Value::Int(i) => Some(i.to_string()),
            Value::Bool(b) => {
                self.error(
                    node,
                    format!(
                        "{what}: expected a string, found {b}: YAML reads a bare yes, no, y, n, \
                         on or off as true or false; put the value in quotes, e.g. \"no\""
                    ),
                );
                None
            }
            Value::Null => {
                self.error(
                    node,
                    format!("{what}: has no value: write it after the colon"),
                );
                None
            }
            other => {
                let hint = match other {
                    Value::Seq(_) | Value::Map(_) => {
                        " (YAML reads `[…]` as a list and `{…}` as a mapping: put the text in \
                         quotes)"
                    }
                    _ => "",
                };
                self.error(
                    node,
                    format!("{what}: expected a string, found {}{hint}", other.kind()),
                );
                None
            }
        }
    }

    /// The string under `key`, or an error on the mapping when it is absent.
    pub fn required(&mut self, f: &mut Fields, key: &str, what: &str) -> Option<String> {
        match f.take(key) {
            Some(n) => self.string(n, key),
            None => {
                self.error(f.node, format!("{what}: missing `{key}`"));
                None
            }
        }
    }

    pub fn uint(&mut self, node: &Node, what: &str) -> Option<u32> {
        match &node.value {
            Value::Int(i) if *i >= 0 && *i <= u32::MAX as i64 => Some(*i as u32),
            other => {
                let found = match other {
                    Value::Str(s) => format!("`{s}`"),
                    Value::Int(i) => i.to_string(),
                    Value::Float(f) => f.to_string(),
                    other => other.kind().to_string(),
                };
                self.error(
                    node,
                    format!("{what}: expected a whole number, 0 or more, found {found}"),
                );
                None
            }
        }
    }

    pub fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            other => {
                self.error(
                    node,
                    format!("{what}: expected true or false, found {}", other.kind()),
                );
                None
            }
        }
    }

    /// Reports the keys of `fields` that nobody asked for.
    pub fn finish(&mut self, fields: Fields<'_>, what: &str, allowed: &[&str]) {
        for (i, (k, _)) in fields.entries.iter().enumerate() {
            if fields.used[i] {
                continue;
            }
            let name = match &k.value {
                Value::Str(s) => s.clone(),
                other => format!("{other:?}"),
            };
            let hint = closest(&name, allowed)
                .map(|c| format!(" (did you mean `{c}`?)"))
                .unwrap_or_default();
            self.error(
                k,
                format!(
                    "unknown key `{name}` in {what}{hint}; allowed: {}",
                    allowed.join(", ")
                ),
            );
        }
    }
}

/// The entries of one mapping, marking which keys were read.
pub struct Fields<'n> {
    pub node: &'n Node,
    entries: &'n [(Node, Node)],
    used: Vec<bool>,
}

impl<'n> Fields<'n> {
    pub fn take(&mut self, key: &str) -> Option<&'n Node> {
        let mut found = None;
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if matches!(&k.value, Value::Str(s) if s == key) && !self.used[i] {
                self.used[i] = true;
                found = Some(v);
                break;
            }
        }
        found
    }

    pub fn has(&self, key: &str) -> bool {
        self.entries
            .iter()
            .any(|(k, _)| matches!(&k.value, Value::Str(s) if s == key))
    }

    /// The key node for `key`, to point an error at the key itself.
    pub fn key_node(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| matches!(&k.value, Value::Str(s) if s == key))
            .map(|(k, _)| k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_know_their_place() {
        let text = "id: x\nsteps:\n  - email: a\n  - wait: 3d\n";
        let root = parse(Path::new("s.yaml"), text).unwrap();
        let Value::Map(entries) = &root.value else {
            panic!("not a map")
        };
        let (_, steps) = &entries[1];
        let Value::Seq(items) = &steps.value else {
            panic!("not a seq")
        };
        assert_eq!((items[1].line, items[1].col), (4, 5));
        let Value::Map(step) = &items[1].value else {
            panic!()
        };
        assert_eq!((step[0].1.line, step[0].1.col), (4, 11));
    }

    /// Keys are the text written (`on:` is not `true:`); values keep
    /// YAML 1.1's booleans; keys that are not strings still load.
    #[test]
    fn keys_are_text() {
        let text = "on: yes\noff: [1]\n3: x\ntrue: on\n";
        let root = parse(Path::new("s.yaml"), text).unwrap();
        let Value::Map(entries) = &root.value else {
            panic!("not a map")
        };
        let keys: Vec<&Value> = entries.iter().map(|(k, _)| &k.value).collect();
        assert_eq!(
            keys,
            [
                &Value::Str("on".into()),
                &Value::Str("off".into()),
                &Value::Str("3".into()),
                &Value::Str("true".into())
            ]
        );
        assert_eq!(entries[0].1.value, Value::Bool(true));
        assert_eq!((entries[1].0.line, entries[1].0.col), (2, 1));
    }

    #[test]
    fn syntax_errors_have_a_place() {
        let d = parse(Path::new("s.yaml"), "id: [unclosed\nname: x\n").unwrap_err();
        assert!(d.line >= 1 && d.message.starts_with("invalid YAML"), "{d}");
    }
}
