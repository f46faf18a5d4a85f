//! Loads a sequences folder into a [`Catalog`]: each file into a [`Sequence`]
//! (its steps are built in `steps.rs`, `_policies.yaml` is read in
//! `policies.rs`), then the checks across files. Every problem is collected
//! with its file, line and column.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::model::*;
use super::plan::Plan;
use super::steps;
use super::yaml::{self, Node, Reader, Value};
use crate::diagnostic::{Diagnostic, Diagnostics};

pub use super::policies::parse_policies;
pub use super::values::parse_time_of_day;

pub const POLICIES_FILE: &str = "_policies.yaml";

const SEQUENCE_KEYS: &[&str] = &[
    "id",
    "name",
    "category",
    "trigger",
    "enroll",
    "exit_when",
    "steps",
];
/// Loads `dir/*.yaml` and `dir/_policies.yaml`. A sequence with errors is
/// kept when its file parsed, so that the checks across files report their
/// errors too in the same run; the diagnostics say what is wrong, and every
/// command but `validate` refuses to run while there is one.
pub fn load_dir(dir: &Path) -> (Catalog, Diagnostics) {
    let f = load_folder(dir);
    (f.catalog, f.diagnostics)
}

/// A sequences folder as loaded, with what could be guessed of the files
/// that are not YAML at all.
pub struct Folder {
    pub catalog: Catalog,
    pub diagnostics: Diagnostics,
    pub unreadable: Vec<Unreadable>,
}

/// A sequence file whose YAML does not parse: its syntax error is reported,
/// and what a look at its lines finds (its `id:` and the templates it names)
/// keeps other checks from reporting what follows from it (`start:` naming
/// it, its templates unused).
#[derive(Debug, Clone, Default)]
pub struct Unreadable {
    pub id: String,
    pub templates: Vec<String>,
}

impl Unreadable {
    fn guess(file: &Path, text: &str) -> Self {
        let value = |line: &str, key: &str| -> Option<String> {
            let rest = line.split_once(key)?.1.trim_start();
            let word: String = rest
                .trim_start_matches(['"', '\''])
                .chars()
                .take_while(|c| {
                    !c.is_whitespace() && !matches!(c, '"' | '\'' | ',' | '}' | ']' | '#')
                })
                .collect();
            (!word.is_empty()).then_some(word)
        };
        let mut guess = Unreadable {
            id: file
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string(),
            templates: Vec::new(),
        };
        for line in text.lines() {
            if line.starts_with("id:")
                && let Some(id) = value(line, "id:")
            {
                guess.id = id;
            }
            for (i, _) in line.match_indices("email:") {
                let before = line[..i].chars().next_back();
                if matches!(before, None | Some(' ' | '{' | ',' | '-'))
                    && let Some(t) = value(&line[i..], "email:")
                {
                    guess.templates.push(t);
                }
            }
        }
        guess
    }
}

/// [`load_dir`], and what is known of the files that did not parse.
pub fn load_folder(dir: &Path) -> Folder {
    let mut diags = Diagnostics::default();
    let mut unreadable = Vec::new();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect(),
        Err(e) => {
            diags.push(Diagnostic::error(
                dir,
                1,
                1,
                format!("cannot read the sequences folder: {e}"),
            ));
            return Folder {
                catalog: Catalog::default(),
                diagnostics: diags,
                unreadable,
            };
        }
    };
    files.sort();
    let mut policies = Policies::default();
    let mut sequences: Vec<Sequence> = Vec::new();
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                diags.push(Diagnostic::error(&file, 1, 1, format!("cannot read: {e}")));
                continue;
            }
        };
        if file.file_name().and_then(|n| n.to_str()) == Some(POLICIES_FILE) {
            let (p, d) = parse_policies(&file, &text);
            policies = p;
            diags.extend(d);
            continue;
        }
        let (seq, d) = parse_sequence(&file, &text);
        if seq.is_none() && yaml::parse(&file, &text).is_err() {
            unreadable.push(Unreadable::guess(&file, &text));
        }
        diags.extend(d);
        if let Some(seq) = seq {
            if let Some(first) = seen.get(&seq.id) {
                diags.push(Diagnostic::error(
                    &file,
                    1,
                    1,
                    format!(
                        "sequence id `{}` is already used by {}",
                        seq.id,
                        first.display()
                    ),
                ));
                continue;
            }
            seen.insert(seq.id.clone(), file.clone());
            sequences.push(seq);
        }
    }
    let catalog = Catalog::new(sequences, policies);
    diags.extend(check_starts(&catalog, &unreadable));
    diags.extend(super::loops::check(&catalog));
    Folder {
        catalog,
        diagnostics: diags,
        unreadable,
    }
}

/// Every `start:` must name a sequence that exists (or one in a file whose
/// YAML did not parse: that file's error is the one to fix).
fn check_starts(catalog: &Catalog, unreadable: &[Unreadable]) -> Diagnostics {
    let mut diags = Diagnostics::default();
    for seq in catalog.sequences.values() {
        walk(&seq.steps, &mut |step| {
            if let StepKind::Start(target) = &step.kind
                && catalog.get(target).is_none()
                && !unreadable.iter().any(|u| &u.id == target)
            {
                let known: Vec<&str> = catalog.sequences.keys().map(String::as_str).collect();
                diags.push(Diagnostic::error(
                    &seq.file,
                    step.line,
                    step.col,
                    format!(
                        "`start: {target}` names no sequence; known: {}",
                        known.join(", ")
                    ),
                ));
            }
        });
    }
    diags
}

/// Visits every step, nested ones included, in document order.
pub fn walk<'a>(steps: &'a [Step], f: &mut dyn FnMut(&'a Step)) {
    for step in steps {
        f(step);
        match &step.kind {
            StepKind::WaitFor { on_timeout, .. } => walk(on_timeout, f),
            StepKind::If {
                then, otherwise, ..
            } => {
                walk(then, f);
                walk(otherwise, f);
            }
            StepKind::Split(variants) => {
                for v in variants {
                    walk(&v.steps, f);
                }
            }
            _ => {}
        }
    }
}

pub fn version_of(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..6])
}

pub fn parse_sequence(file: &Path, text: &str) -> (Option<Sequence>, Diagnostics) {
    let root = match yaml::parse(file, text) {
        Ok(n) => n,
        Err(d) => return (None, Diagnostics(vec![d])),
    };
    let mut r = Reader::new(file);
    let seq = sequence(&mut r, &root, file, text);
    // A sequence with errors is still returned when its YAML is a mapping, so
    // that cross-file checks (templates, `start` targets, conditions) report
    // their errors too; callers refuse to run anything while there are errors.
    (seq, r.diags)
}

fn sequence(r: &mut Reader, root: &Node, file: &Path, text: &str) -> Option<Sequence> {
    let mut f = r.map(root, "sequence")?;
    let id = r.required(&mut f, "id", "sequence");
    let name = match f.take("name") {
        Some(n) => r.string(n, "name"),
        None => id.clone(),
    };
    let category = match f.take("category") {
        Some(n) => r.category(n),
        None => {
            r.error(
                root,
                "sequence: missing `category` (transactional, value or promo)",
            );
            None
        }
    };
    let trigger = f.take("trigger").and_then(|n| trigger(r, n));
    let enroll = match f.take("enroll") {
        // A date trigger fires once per occurrence (each anniversary).
        None if matches!(trigger, Some(Trigger::Date(_))) => Some(EnrollMode::EveryEvent),
        None => Some(EnrollMode::OncePerOrder),
        Some(n) => match r.string(n, "enroll").as_deref() {
            Some("once_per_order") => Some(EnrollMode::OncePerOrder),
            Some("once_per_customer") => Some(EnrollMode::OncePerCustomer),
            Some("every_event") => Some(EnrollMode::EveryEvent),
            Some(other) => {
                r.error(
                    n,
                    format!(
                        "enroll: `{other}` is not one of once_per_order, once_per_customer, every_event"
                    ),
                );
                None
            }
            None => None,
        },
    };
    let exit_when = match f.take("exit_when") {
        Some(n) => {
            let items = r.seq(n, "exit_when");
            items.iter().filter_map(|i| exit_rule(r, i)).collect()
        }
        None => Vec::new(),
    };
    let steps = match f.take("steps") {
        Some(n) => {
            // Steps with errors are reported one by one, not as none at all.
            if matches!(&n.value, yaml::Value::Null)
                || matches!(&n.value, yaml::Value::Seq(items) if items.is_empty())
            {
                r.error(n, "steps: a sequence needs at least one step");
            }
            steps::build(r, n)
        }
        None => {
            r.error(root, "sequence: missing `steps`");
            Vec::new()
        }
    };
    r.finish(f, "sequence", SEQUENCE_KEYS);
    let plan = Plan::compile(&steps);
    // What is missing or wrong is reported above; the sequence still goes
    // through the checks across files (its templates, `start` targets and
    // conditions) with a stand-in, so that one run reports everything.
    let id = id.unwrap_or_else(|| {
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
        stem.to_string()
    });
    Some(Sequence {
        name: name.unwrap_or_else(|| id.clone()),
        id,
        category: category.unwrap_or(Category::Transactional),
        trigger,
        enroll: enroll.unwrap_or(EnrollMode::OncePerOrder),
        exit_when,
        steps,
        version: version_of(text),
        file: file.to_path_buf(),
        plan,
    })
}

/// The keys a trigger of each kind takes, for the messages.
const EVENT_TRIGGER_KEYS: &[&str] = &["event", "when"];
const DATE_TRIGGER_KEYS: &[&str] = &["date", "offset", "repeat", "at", "when"];
const SCHEDULE_TRIGGER_KEYS: &[&str] = &["schedule", "timezone", "when"];

fn trigger(r: &mut Reader, n: &Node) -> Option<Trigger> {
    let mut f = r.map(n, "trigger")?;
    let kinds: Vec<&str> = ["event", "date", "schedule"]
        .into_iter()
        .filter(|k| f.has(k))
        .collect();
    match kinds.as_slice() {
        ["event"] => {
            let event = f
                .take("event")
                .and_then(|e| r.event_type(e, "trigger.event"));
            let when = f.take("when").and_then(|w| r.condition(w, "trigger.when"));
            r.finish(f, "trigger", EVENT_TRIGGER_KEYS);
            Some(Trigger::Event {
                event: event?,
                when,
            })
        }
        ["date"] => date_trigger(r, f),
        [_] => schedule_trigger(r, f),
        [] => {
            r.error(
                n,
                "trigger: needs one of `event` (e.g. {event: order.placed}), `date` \
                 (e.g. {date: customer.first_order_at, repeat: yearly}) or `schedule` \
                 (e.g. {schedule: \"0 9 * * *\"})",
            );
            None
        }
        [a, b, ..] => {
            r.error(
                n,
                format!("trigger: has both `{a}` and `{b}`; a sequence has one trigger"),
            );
            None
        }
    }
}

fn date_trigger(r: &mut Reader, mut f: yaml::Fields) -> Option<Trigger> {
    let date = f.take("date").and_then(|d| date_source(r, d));
    let offset = f
        .take("offset")
        .and_then(|o| signed_duration(r, o, "trigger.offset"));
    let repeat = match f.take("repeat") {
        None => Some(Repeat::Yearly),
        Some(n) => match r.string(n, "trigger.repeat").as_deref() {
            Some("yearly") => Some(Repeat::Yearly),
            Some("once") => Some(Repeat::Once),
            Some(other) => {
                r.error(
                    n,
                    format!("trigger.repeat: `{other}` is not one of yearly, once"),
                );
                None
            }
            None => None,
        },
    };
    let at = f.take("at").and_then(|a| r.time_of_day(a, "trigger.at"));
    let when = f.take("when").and_then(|w| r.condition(w, "trigger.when"));
    r.finish(f, "trigger", DATE_TRIGGER_KEYS);
    Some(Trigger::Date(DateTrigger {
        date: date?,
        offset,
        repeat: repeat?,
        at,
        when,
    }))
}

/// `customer.first_order_at`, `customer.last_order_at`,
/// `customer.last_review_at` or `customer.attributes.<name>`.
fn date_source(r: &mut Reader, n: &Node) -> Option<DateSource> {
    let text = r.string(n, "trigger.date")?;
    let name = text.trim();
    if let Some(attr) = name.strip_prefix("customer.attributes.")
        && !attr.is_empty()
    {
        return Some(DateSource::Attribute(attr.to_string()));
    }
    let fact = name.strip_prefix("customer.").unwrap_or(name);
    if let Some((_, f)) = DateFact::ALL.iter().find(|(n, _)| *n == fact) {
        return Some(DateSource::Fact(*f));
    }
    let known: Vec<String> = DateFact::ALL
        .iter()
        .map(|(n, _)| format!("customer.{n}"))
        .collect();
    r.error(
        n,
        format!(
            "trigger.date: `{name}` is not a date aftercare keeps; use one of {} \
             or customer.attributes.<name> (a date such as \"1990-05-20\")",
            known.join(", ")
        ),
    );
    None
}

/// A duration that may be negative and calendar: `-7d`, `12h`, `-1mo`.
fn signed_duration(r: &mut Reader, n: &Node, what: &str) -> Option<super::duration::Span> {
    let text = match &n.value {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        _ => {
            r.error(
                n,
                format!("{what}: expected a duration such as -7d, 2d or -1mo"),
            );
            return None;
        }
    };
    match super::duration::Span::parse_signed(&text) {
        Ok(d) => Some(d),
        Err(e) => {
            r.error(n, format!("{what}: {e}"));
            None
        }
    }
}

fn schedule_trigger(r: &mut Reader, mut f: yaml::Fields) -> Option<Trigger> {
    let cron = f.take("schedule").and_then(|c| {
        let source = r.string(c, "trigger.schedule")?;
        match super::cron::parse(&source) {
            Ok(s) => Some((source, s)),
            Err(e) => {
                r.error(c, format!("trigger.schedule: {e}"));
                None
            }
        }
    });
    let per_customer_zone = match f.take("timezone") {
        None => Some(false),
        Some(n) => match r.string(n, "trigger.timezone").as_deref() {
            Some("customer") => Some(true),
            Some("default") => Some(false),
            Some(other) => {
                r.error(
                    n,
                    format!(
                        "trigger.timezone: `{other}` is not one of customer (each customer's \
                         own time zone) or default (the policies' default_timezone)"
                    ),
                );
                None
            }
            None => None,
        },
    };
    let when = f.take("when").and_then(|w| r.condition(w, "trigger.when"));
    r.finish(f, "trigger", SCHEDULE_TRIGGER_KEYS);
    let (source, cron) = cron?;
    Some(Trigger::Schedule(Box::new(ScheduleTrigger {
        source,
        cron,
        per_customer_zone: per_customer_zone?,
        when,
    })))
}

fn exit_rule(r: &mut Reader, n: &Node) -> Option<ExitRule> {
    let mut f = r.map(n, "exit_when item")?;
    let event = match f.take("event") {
        Some(e) => r.event_type(e, "exit_when.event"),
        None => {
            r.error(n, "exit_when: missing `event`");
            None
        }
    };
    let scope = match f.take("scope") {
        Some(s) => r.scope(s)?,
        None => Scope::Order,
    };
    let when = f
        .take("when")
        .and_then(|w| r.condition(w, "exit_when.when"));
    r.finish(f, "exit_when", &["event", "scope", "when"]);
    Some(ExitRule {
        event: event?,
        scope,
        when,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        let (_, d) = parse_sequence(Path::new("s.yaml"), text);
        d.0.iter().map(|d| d.to_string()).collect()
    }

    const GOOD: &str = r#"
id: fulfilment
category: transactional
trigger: {event: order.placed, when: 'order.total > 0.0'}
exit_when:
  - event: order.cancelled
steps:
  - email: order-confirmation
  - id: await-shipment
    wait_for: shipment.shipped
    within: 3d
    on_timeout:
      - email: shipping-delayed
  - email: order-shipped
  - wait: 1d
    at: "10:00"
  - if: 'order.total > 100.0'
    then: [{email: vip}]
    else: [{email: normal}]
  - split:
      - {name: a, weight: 50, steps: [{email: ra}]}
      - {name: b, weight: 50, steps: [{email: rb}]}
  - start: education
"#;

    #[test]
    fn a_good_sequence_loads_with_derived_ids() {
        let (seq, d) = parse_sequence(Path::new("s.yaml"), GOOD);
        assert!(!d.has_errors(), "{d}");
        let seq = seq.unwrap();
        let mut ids = Vec::new();
        walk(&seq.steps, &mut |s| ids.push(s.id.clone()));
        assert_eq!(
            ids,
            [
                "order-confirmation",
                "await-shipment",
                "await-shipment/timeout/shipping-delayed",
                "order-shipped",
                "wait-1d",
                "if",
                "if/then/vip",
                "if/else/normal",
                "split",
                "split/a/ra",
                "split/b/rb",
                "start-education"
            ]
        );
        assert_eq!(seq.enroll, EnrollMode::OncePerOrder);
    }

    #[test]
    fn every_error_is_reported_with_its_place() {
        let text = r#"id: x
category: value
steps:
  - email: a
    categroy: promo
  - wait: 3 days
  - wait_for: shipment.shipped
  - if: 'order.total >'
    then: []
  - id: dup
    email: b
  - id: dup
    email: c
  - wait: 1d
    email: d
"#;
        let errs = errors(text);
        let expect = [
            "s.yaml:5:5: unknown key `categroy` in an email step (did you mean `category`?)",
            "s.yaml:6:11: wait: \"3 days\"",
            "s.yaml:7:5: wait_for: missing `within`",
            "s.yaml:8:9: if: invalid condition",
            "s.yaml:12:9: duplicate step id `dup`",
            "s.yaml:15:5: a step has both `wait` and `email`",
        ];
        for e in expect {
            assert!(
                errs.iter().any(|x| x.starts_with(e)),
                "missing {e:?} in {errs:#?}"
            );
        }
    }

    #[test]
    fn exit_is_a_bare_word_or_exit_true() {
        let text = "id: x\ncategory: value\nsteps:\n  - email: a\n  - exit\n  - exit: true\n";
        let (seq, d) = parse_sequence(Path::new("s.yaml"), text);
        assert!(!d.has_errors(), "{d}");
        let steps: Vec<(String, bool)> = seq
            .unwrap()
            .steps
            .iter()
            .map(|s| (s.id.clone(), matches!(s.kind, StepKind::Exit)))
            .collect();
        assert_eq!(
            steps,
            [
                ("a".to_string(), false),
                ("exit".to_string(), true),
                ("exit~2".to_string(), true)
            ]
        );
        let errs = errors(
            "id: x\ncategory: value\nsteps:\n  - exti\n  - wait\n  - exit: true\n    after: 1d\n  - exit: false\n",
        );
        let expect = [
            "s.yaml:4:5: step: `exti` is not a step (did you mean `exit`?)",
            "s.yaml:5:5: step: `wait` is not a step (`wait` needs a value: `wait: …`)",
            "s.yaml:7:5: unknown key `after` in an exit step;",
            "s.yaml:8:11: exit: write `exit: true` (or the bare word `- exit`)",
        ];
        for e in expect {
            assert!(
                errs.iter().any(|x| x.starts_with(e)),
                "missing {e:?} in {errs:#?}"
            );
        }
    }
}
