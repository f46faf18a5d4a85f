//! Builds [`Sequence`]s and [`Policies`] from YAML, collecting every problem
//! with its file, line and column.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::NaiveTime;
use sha2::{Digest, Sha256};

use super::condition::Condition;
use super::duration;
use super::model::*;
use super::yaml::{self, Fields, Node, Reader, Value};
use crate::diagnostic::{Diagnostic, Diagnostics};
use super::plan::Plan;
use crate::event::KNOWN_TYPES;

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
const STEP_KINDS: &[&str] = &[
    "email",
    "wait",
    "wait_until",
    "wait_for",
    "if",
    "split",
    "start",
    "exit",
];

/// Loads `dir/*.yaml` and `dir/_policies.yaml`. Sequences with errors are left
/// out of the catalog; the diagnostics say why.
pub fn load_dir(dir: &Path) -> (Catalog, Diagnostics) {
    let mut diags = Diagnostics::default();
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
            return (Catalog::default(), diags);
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
    diags.extend(check_starts(&catalog));
    (catalog, diags)
}

/// Every `start:` must name a sequence that exists.
fn check_starts(catalog: &Catalog) -> Diagnostics {
    let mut diags = Diagnostics::default();
    for seq in catalog.sequences.values() {
        walk(&seq.steps, &mut |step| {
            if let StepKind::Start(target) = &step.kind
                && catalog.get(target).is_none()
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
    let seq = SequenceBuilder {
        r: &mut r,
        ids: HashMap::new(),
    }
    .build(&root, file, text);
    // A sequence with errors is still returned when its skeleton parsed, so
    // that cross-file checks (templates, `start` targets) report their errors
    // too; callers refuse to run anything while there are errors.
    (seq, r.diags)
}

struct SequenceBuilder<'r, 'f> {
    r: &'r mut Reader<'f>,
    /// Step ids taken so far, with where they were first used.
    ids: HashMap<String, (u64, u64)>,
}

impl SequenceBuilder<'_, '_> {
    fn build(mut self, root: &Node, file: &Path, text: &str) -> Option<Sequence> {
        let mut f = self.r.map(root, "sequence")?;
        let id = self.required(&mut f, "id", "sequence");
        let name = match f.take("name") {
            Some(n) => self.r.string(n, "name"),
            None => id.clone(),
        };
        let category = match f.take("category") {
            Some(n) => self.category(n),
            None => {
                self.r.error(
                    root,
                    "sequence: missing `category` (transactional, value or promo)",
                );
                None
            }
        };
        let trigger = f.take("trigger").and_then(|n| self.trigger(n));
        let enroll = match f.take("enroll") {
            None => Some(EnrollMode::OncePerOrder),
            Some(n) => match self.r.string(n, "enroll").as_deref() {
                Some("once_per_order") => Some(EnrollMode::OncePerOrder),
                Some("once_per_customer") => Some(EnrollMode::OncePerCustomer),
                Some("every_event") => Some(EnrollMode::EveryEvent),
                Some(other) => {
                    self.r.error(
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
                let items = self.r.seq(n, "exit_when");
                items.iter().filter_map(|i| self.exit_rule(i)).collect()
            }
            None => Vec::new(),
        };
        let steps = match f.take("steps") {
            Some(n) => {
                let s = self.steps(n, "");
                if s.is_empty() {
                    self.r.error(n, "steps: a sequence needs at least one step");
                }
                s
            }
            None => {
                self.r.error(root, "sequence: missing `steps`");
                Vec::new()
            }
        };
        self.r.finish(f, "sequence", SEQUENCE_KEYS);
        let plan = Plan::compile(&steps);
        Some(Sequence {
            id: id?,
            name: name?,
            category: category?,
            trigger,
            enroll: enroll?,
            exit_when,
            steps,
            version: version_of(text),
            file: file.to_path_buf(),
            plan,
        })
    }

    fn required(&mut self, f: &mut Fields, key: &str, what: &str) -> Option<String> {
        match f.take(key) {
            Some(n) => self.r.string(n, key),
            None => {
                self.r.error(f.node, format!("{what}: missing `{key}`"));
                None
            }
        }
    }

    fn category(&mut self, n: &Node) -> Option<Category> {
        let s = self.r.string(n, "category")?;
        let c = Category::parse(&s);
        if c.is_none() {
            self.r.error(
                n,
                format!("category: `{s}` is not one of transactional, value, promo"),
            );
        }
        c
    }

    fn event_type(&mut self, n: &Node, what: &str) -> Option<String> {
        let s = self.r.string(n, what)?;
        if !KNOWN_TYPES.contains(&s.as_str()) {
            self.r.warning(
                n,
                format!(
                    "{what}: `{s}` is not a known event type ({}); is it a typo?",
                    KNOWN_TYPES.join(", ")
                ),
            );
        }
        Some(s)
    }

    fn condition(&mut self, n: &Node, what: &str) -> Option<Condition> {
        let src = self.r.string(n, what)?;
        match Condition::compile(&src, n.line, n.col) {
            Ok(c) => Some(c),
            Err(e) => {
                self.r.error(n, format!("{what}: {e}"));
                None
            }
        }
    }

    fn scope(&mut self, n: &Node) -> Option<Scope> {
        match self.r.string(n, "scope").as_deref() {
            Some("order") => Some(Scope::Order),
            Some("customer") => Some(Scope::Customer),
            Some(other) => {
                self.r
                    .error(n, format!("scope: `{other}` is not one of order, customer"));
                None
            }
            None => None,
        }
    }

    fn duration(&mut self, n: &Node, what: &str) -> Option<chrono::TimeDelta> {
        let s = match &n.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            _ => {
                self.r
                    .error(n, format!("{what}: expected a duration such as 3d"));
                return None;
            }
        };
        match duration::parse(&s) {
            Ok(d) if d > chrono::TimeDelta::zero() => Some(d),
            Ok(_) => {
                self.r.error(n, format!("{what}: must be longer than zero"));
                None
            }
            Err(e) => {
                self.r.error(n, format!("{what}: {e}"));
                None
            }
        }
    }

    fn trigger(&mut self, n: &Node) -> Option<Trigger> {
        let mut f = self.r.map(n, "trigger")?;
        let event = match f.take("event") {
            Some(e) => self.event_type(e, "trigger.event"),
            None => {
                self.r.error(n, "trigger: missing `event`");
                None
            }
        };
        let when = f
            .take("when")
            .and_then(|w| self.condition(w, "trigger.when"));
        self.r.finish(f, "trigger", &["event", "when"]);
        Some(Trigger {
            event: event?,
            when,
        })
    }

    fn exit_rule(&mut self, n: &Node) -> Option<ExitRule> {
        let mut f = self.r.map(n, "exit_when item")?;
        let event = match f.take("event") {
            Some(e) => self.event_type(e, "exit_when.event"),
            None => {
                self.r.error(n, "exit_when: missing `event`");
                None
            }
        };
        let scope = match f.take("scope") {
            Some(s) => self.scope(s)?,
            None => Scope::Order,
        };
        let when = f
            .take("when")
            .and_then(|w| self.condition(w, "exit_when.when"));
        self.r.finish(f, "exit_when", &["event", "scope", "when"]);
        Some(ExitRule {
            event: event?,
            scope,
            when,
        })
    }

    fn steps(&mut self, n: &Node, prefix: &str) -> Vec<Step> {
        let items = self.r.seq(n, "steps");
        items.iter().filter_map(|i| self.step(i, prefix)).collect()
    }

    /// Takes a step id: the explicit one, or one derived from the step's content
    /// (`order-confirmation`, `wait_for-shipment.shipped`), nested under its
    /// parent's id, with `~2`, `~3` for repeats.
    fn claim_id(&mut self, explicit: Option<(&Node, String)>, derived: String, n: &Node) -> String {
        if let Some((node, id)) = explicit {
            if let Some((line, col)) = self.ids.get(&id) {
                self.r.error(
                    node,
                    format!("duplicate step id `{id}` (first used at line {line}, column {col})"),
                );
            }
            self.ids.insert(id.clone(), (node.line, node.col));
            return id;
        }
        let mut id = derived.clone();
        let mut k = 1;
        while self.ids.contains_key(&id) {
            k += 1;
            id = format!("{derived}~{k}");
        }
        self.ids.insert(id.clone(), (n.line, n.col));
        id
    }

    fn step(&mut self, n: &Node, prefix: &str) -> Option<Step> {
        let mut f = self.r.map(n, "step")?;
        let mut kinds: Vec<&str> = STEP_KINDS.iter().copied().filter(|k| f.has(k)).collect();
        kinds.sort_by_key(|k| f.key_node(k).map(|n| (n.line, n.col)));
        let kind = match kinds.as_slice() {
            [one] => *one,
            [] => {
                self.r
                    .error(n, format!("a step needs one of: {}", STEP_KINDS.join(", ")));
                return None;
            }
            [a, b, ..] => {
                let at = f.key_node(b).unwrap_or(n);
                self.r.error(
                    at,
                    format!("a step has both `{a}` and `{b}`; write them as two steps"),
                );
                return None;
            }
        };
        let explicit = f.take("id").and_then(|i| {
            let s = self.r.string(i, "id")?;
            Some((i, s))
        });
        let value = f.take(kind).expect("kind key is present");
        let nest = |own: &str| {
            if prefix.is_empty() {
                own.to_string()
            } else {
                format!("{prefix}/{own}")
            }
        };
        let (kind, allowed): (Option<StepKind>, &[&str]) = match kind {
            "email" => {
                let template = self.r.string(value, "email");
                let category = f.take("category").and_then(|c| self.category(c));
                let id = self.claim_id(explicit, nest(template.as_deref().unwrap_or("email")), n);
                self.r
                    .finish(f, "an email step", &["id", "email", "category"]);
                return Some(Step {
                    id,
                    kind: StepKind::Email {
                        template: template?,
                        category,
                    },
                    line: value.line,
                    col: value.col,
                });
            }
            "wait" => {
                let duration = self.duration(value, "wait");
                let at = f.take("at").and_then(|a| self.time_of_day(a, "at"));
                let k = duration.map(|d| StepKind::Wait { duration: d, at });
                (k, &["id", "wait", "at"])
            }
            "wait_until" => {
                let c = self.condition(value, "wait_until");
                (c.map(StepKind::WaitUntil), &["id", "wait_until"])
            }
            "wait_for" => {
                let event = self.event_type(value, "wait_for");
                let within = match f.take("within") {
                    Some(w) => self.duration(w, "within"),
                    None => {
                        self.r
                            .error(n, "wait_for: missing `within` (how long to wait, e.g. 3d)");
                        None
                    }
                };
                let when = f
                    .take("when")
                    .and_then(|w| self.condition(w, "wait_for.when"));
                let scope = match f.take("scope") {
                    Some(s) => self.scope(s),
                    None => Some(Scope::Order),
                };
                let own = explicit
                    .as_ref()
                    .map(|(_, s)| s.clone())
                    .unwrap_or_else(|| {
                        nest(&format!("wait_for-{}", event.as_deref().unwrap_or("")))
                    });
                let id = self.claim_id(explicit, own, n);
                let on_timeout = match f.take("on_timeout") {
                    Some(t) => self.steps(t, &format!("{id}/timeout")),
                    None => Vec::new(),
                };
                self.r.finish(
                    f,
                    "a wait_for step",
                    &["id", "wait_for", "within", "when", "scope", "on_timeout"],
                );
                return Some(Step {
                    id,
                    kind: StepKind::WaitFor {
                        event: event?,
                        within: within?,
                        when,
                        scope: scope?,
                        on_timeout,
                    },
                    line: value.line,
                    col: value.col,
                });
            }
            "if" => {
                let cond = self.condition(value, "if");
                let own = explicit
                    .as_ref()
                    .map(|(_, s)| s.clone())
                    .unwrap_or_else(|| nest("if"));
                let id = self.claim_id(explicit, own, n);
                let then = match f.take("then") {
                    Some(t) => self.steps(t, &format!("{id}/then")),
                    None => {
                        self.r
                            .error(n, "if: missing `then` (the steps when the condition holds)");
                        Vec::new()
                    }
                };
                let otherwise = match f.take("else") {
                    Some(t) => self.steps(t, &format!("{id}/else")),
                    None => Vec::new(),
                };
                self.r
                    .finish(f, "an if step", &["id", "if", "then", "else"]);
                return Some(Step {
                    id,
                    kind: StepKind::If {
                        cond: cond?,
                        then,
                        otherwise,
                    },
                    line: value.line,
                    col: value.col,
                });
            }
            "split" => {
                let own = explicit
                    .as_ref()
                    .map(|(_, s)| s.clone())
                    .unwrap_or_else(|| nest("split"));
                let id = self.claim_id(explicit, own, n);
                let variants = self.variants(value, &id);
                self.r.finish(f, "a split step", &["id", "split"]);
                return Some(Step {
                    id,
                    kind: StepKind::Split(variants?),
                    line: value.line,
                    col: value.col,
                });
            }
            "start" => {
                let target = self.r.string(value, "start");
                (target.map(StepKind::Start), &["id", "start"])
            }
            "exit" => {
                let ok = self.r.boolean(value, "exit");
                if ok == Some(false) {
                    self.r
                        .error(value, "exit: write `exit: true`, or remove the step");
                }
                (ok.filter(|b| *b).map(|_| StepKind::Exit), &["id", "exit"])
            }
            _ => unreachable!("kind comes from STEP_KINDS"),
        };
        let derived = match &kind {
            Some(StepKind::Wait { duration, .. }) => {
                format!("wait-{}", duration::format(*duration))
            }
            Some(StepKind::Start(t)) => format!("start-{t}"),
            Some(StepKind::WaitUntil(_)) => "wait_until".into(),
            _ => "exit".into(),
        };
        let id = self.claim_id(explicit, nest(&derived), n);
        let what = format!(
            "a {} step",
            STEP_KINDS
                .iter()
                .find(|k| allowed.contains(k))
                .unwrap_or(&"step")
        );
        self.r.finish(f, &what, allowed);
        Some(Step {
            id,
            kind: kind?,
            line: value.line,
            col: value.col,
        })
    }

    fn time_of_day(&mut self, n: &Node, what: &str) -> Option<NaiveTime> {
        let s = self.r.string(n, what)?;
        let t = parse_time_of_day(&s);
        if t.is_none() {
            self.r.error(
                n,
                format!("{what}: `{s}` is not a time of day like \"10:00\""),
            );
        }
        t
    }

    fn variants(&mut self, n: &Node, split_id: &str) -> Option<Vec<Variant>> {
        let items = self.r.seq(n, "split");
        if items.len() < 2 {
            self.r.error(n, "split: needs at least two variants");
        }
        let mut out = Vec::new();
        let mut names: HashMap<String, ()> = HashMap::new();
        let mut ok = true;
        for item in items {
            let Some(mut f) = self.r.map(item, "split variant") else {
                ok = false;
                continue;
            };
            let name = self.required(&mut f, "name", "split variant");
            let weight = match f.take("weight") {
                Some(w) => self.r.uint(w, "weight"),
                None => {
                    self.r.error(item, "split variant: missing `weight`");
                    None
                }
            };
            if let Some(name) = &name
                && names.insert(name.clone(), ()).is_some()
            {
                self.r
                    .error(item, format!("split: variant name `{name}` is used twice"));
            }
            let steps = match f.take("steps") {
                Some(s) => self.steps(s, &format!("{split_id}/{}", name.as_deref().unwrap_or("?"))),
                None => {
                    self.r.error(item, "split variant: missing `steps`");
                    Vec::new()
                }
            };
            self.r
                .finish(f, "a split variant", &["name", "weight", "steps"]);
            match (name, weight) {
                (Some(name), Some(weight)) => out.push(Variant {
                    name,
                    weight,
                    steps,
                }),
                _ => ok = false,
            }
        }
        if ok && !out.is_empty() && out.iter().all(|v| v.weight == 0) {
            self.r
                .error(n, "split: at least one variant needs a weight above 0");
            ok = false;
        }
        ok.then_some(out)
    }
}

pub fn parse_time_of_day(s: &str) -> Option<NaiveTime> {
    let (h, m) = s.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    NaiveTime::from_hms_opt(h.parse().ok()?, m.parse().ok()?, 0)
}

pub fn parse_policies(file: &Path, text: &str) -> (Policies, Diagnostics) {
    let mut p = Policies::default();
    let root = match yaml::parse(file, text) {
        Ok(n) => n,
        Err(d) => return (p, Diagnostics(vec![d])),
    };
    let mut r = Reader::new(file);
    let Some(mut f) = r.map(&root, "policies") else {
        return (p, r.diags);
    };
    if let Some(n) = f.take("default_locale")
        && let Some(s) = r.string(n, "default_locale")
    {
        p.default_locale = s;
    }
    if let Some(n) = f.take("default_timezone")
        && let Some(s) = r.string(n, "default_timezone")
    {
        match s.parse::<chrono_tz::Tz>() {
            Ok(tz) => p.default_timezone = tz,
            Err(_) => r.error(
                n,
                format!("default_timezone: `{s}` is not an IANA time zone like Europe/Budapest"),
            ),
        }
    }
    if let Some(n) = f.take("sender")
        && let Some(mut s) = r.map(n, "sender")
    {
        match s.take("from") {
            Some(from) => {
                if let Some(v) = r.string(from, "sender.from") {
                    let sender = Sender {
                        from: v.clone(),
                        reply_to: None,
                    };
                    let (_, email) = sender.name_and_email();
                    if crate::event::EmailAddress::parse(&email).is_err() {
                        r.error(from, format!("sender.from: `{v}` has no valid address"));
                    }
                    p.sender.from = v;
                }
            }
            None => r.error(n, "sender: missing `from`"),
        }
        if let Some(rt) = s.take("reply_to")
            && let Some(v) = r.string(rt, "sender.reply_to")
        {
            if crate::event::EmailAddress::parse(&v).is_err() {
                r.error(
                    rt,
                    format!("sender.reply_to: `{v}` is not an email address"),
                );
            }
            p.sender.reply_to = Some(v);
        }
        r.finish(s, "sender", &["from", "reply_to"]);
    }
    if let Some(n) = f.take("quiet_hours")
        && let Some(mut q) = r.map(n, "quiet_hours")
    {
        let time = |key: &str, q: &mut Fields, r: &mut Reader| match q.take(key) {
            Some(t) => {
                let s = r.string(t, key)?;
                let v = parse_time_of_day(&s);
                if v.is_none() {
                    r.error(
                        t,
                        format!("quiet_hours.{key}: `{s}` is not a time like \"21:00\""),
                    );
                }
                v
            }
            None => {
                r.error(n, format!("quiet_hours: missing `{key}`"));
                None
            }
        };
        let start = time("start", &mut q, &mut r);
        let end = time("end", &mut q, &mut r);
        r.finish(q, "quiet_hours", &["start", "end"]);
        if let (Some(start), Some(end)) = (start, end) {
            p.quiet_hours = Some(QuietHours { start, end });
        }
    }
    let dur = |node: &Node, key: &str, r: &mut Reader| {
        let s = r.string(node, key)?;
        match duration::parse(&s) {
            Ok(d) if d > chrono::TimeDelta::zero() => Some(d),
            Ok(_) => {
                r.error(node, format!("{key}: must be longer than zero"));
                None
            }
            Err(e) => {
                r.error(node, format!("{key}: {e}"));
                None
            }
        }
    };
    if let Some(n) = f.take("frequency_cap")
        && let Some(mut c) = r.map(n, "frequency_cap")
    {
        let max = c.take("max").and_then(|m| r.uint(m, "frequency_cap.max"));
        let per = c
            .take("per")
            .and_then(|d| dur(d, "frequency_cap.per", &mut r));
        if !c.has("max") || !c.has("per") {
            r.error(n, "frequency_cap: needs both `max` and `per`");
        }
        if max == Some(0) {
            r.error(n, "frequency_cap.max: must be at least 1");
        }
        r.finish(c, "frequency_cap", &["max", "per"]);
        if let (Some(max), Some(per)) = (max.filter(|m| *m > 0), per) {
            p.frequency_cap = Some(FrequencyCap { max, per });
        }
    }
    if let Some(n) = f.take("promo_share")
        && let Some(mut c) = r.map(n, "promo_share")
    {
        let max = c.take("max_percent").and_then(|m| {
            let v = r.uint(m, "promo_share.max_percent")?;
            if v > 100 {
                r.error(m, "promo_share.max_percent: must be between 0 and 100");
                return None;
            }
            Some(v)
        });
        let window = c
            .take("window")
            .and_then(|d| dur(d, "promo_share.window", &mut r));
        if !c.has("max_percent") || !c.has("window") {
            r.error(n, "promo_share: needs both `max_percent` and `window`");
        }
        r.finish(c, "promo_share", &["max_percent", "window"]);
        if let (Some(max_percent), Some(window)) = (max, window) {
            p.promo_share = Some(PromoShare {
                max_percent,
                window,
            });
        }
    }
    if let Some(n) = f.take("sunset")
        && let Some(mut c) = r.map(n, "sunset")
    {
        match c.take("after_unopened") {
            Some(a) => {
                if let Some(v) = r.uint(a, "sunset.after_unopened") {
                    if v == 0 {
                        r.error(a, "sunset.after_unopened: must be at least 1");
                    } else {
                        p.sunset_after_unopened = Some(v);
                    }
                }
            }
            None => r.error(n, "sunset: missing `after_unopened`"),
        }
        r.finish(c, "sunset", &["after_unopened"]);
    }
    r.finish(
        f,
        "policies",
        &[
            "default_locale",
            "default_timezone",
            "sender",
            "quiet_hours",
            "frequency_cap",
            "promo_share",
            "sunset",
        ],
    );
    (p, r.diags)
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
    fn policies_are_read_and_checked() {
        let text = "default_locale: en\nquiet_hours: {start: \"21:00\", end: \"08:00\"}\nfrequency_cap: {max: 1, per: 16h}\npromo_share: {max_percent: 20, window: 30d}\nsunset: {after_unopened: 8}\nsender: {from: \"Shop <hello@shop.example>\"}\n";
        let (p, d) = parse_policies(Path::new("p.yaml"), text);
        assert!(d.0.is_empty(), "{d}");
        assert_eq!(p.frequency_cap.unwrap().max, 1);
        assert_eq!(p.sender.name_and_email().1, "hello@shop.example");
        let (_, d) = parse_policies(
            Path::new("p.yaml"),
            "quiet_hours: {start: \"25:00\", end: \"08:00\"}\npromo_share: {max_percent: 120, window: 30d}\nsunsett: {}\n",
        );
        let s = d.to_string();
        assert!(s.contains("p.yaml:1:22: quiet_hours.start"), "{s}");
        assert!(s.contains("p.yaml:2:28: promo_share.max_percent"), "{s}");
        assert!(s.contains("p.yaml:3:1: unknown key `sunsett`"), "{s}");
    }

    #[test]
    fn time_of_day() {
        assert_eq!(
            parse_time_of_day("10:00"),
            NaiveTime::from_hms_opt(10, 0, 0)
        );
        assert_eq!(parse_time_of_day("7:30"), NaiveTime::from_hms_opt(7, 30, 0));
        assert_eq!(parse_time_of_day("24:00"), None);
        assert_eq!(parse_time_of_day("10"), None);
    }
}
