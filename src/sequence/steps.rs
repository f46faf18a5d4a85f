//! Builds a sequence's steps from its YAML tree: one function per step kind,
//! each reading its keys, claiming the step's id and reporting unknown keys.

use std::collections::HashMap;

use chrono::NaiveTime;

use super::duration;
use super::model::{Scope, Step, StepKind, Variant};
use super::weekdays::Weekdays;
use super::yaml::{Fields, Node, Reader, Value};
use crate::diagnostic::closest;

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

/// Builds the steps of the list `n` (a sequence's `steps:`), with every step
/// id unique within the sequence. The steps inside a step with errors (the
/// `then` of an `if` whose condition is wrong) come last, after an `exit`
/// that keeps them out of the flow, so that the checks across files
/// (templates, conditions) still see them; the sequence is in error and
/// never runs.
pub fn build(r: &mut Reader, n: &Node) -> Vec<Step> {
    let mut b = StepBuilder {
        r,
        ids: HashMap::new(),
        orphans: Vec::new(),
    };
    let mut steps = b.steps(n, "");
    if !b.orphans.is_empty() {
        steps.push(Step {
            id: "(inside steps with errors)".into(),
            kind: StepKind::Exit,
            line: n.line,
            col: n.col,
        });
        steps.append(&mut b.orphans);
    }
    steps
}

struct StepBuilder<'r, 'f> {
    r: &'r mut Reader<'f>,
    /// Step ids taken so far, with where they were first used.
    ids: HashMap<String, (u64, u64)>,
    /// The steps inside steps that have errors.
    orphans: Vec<Step>,
}

/// One step as found in the file, before its kind is read.
struct Site<'n, 'p> {
    /// The step's mapping.
    node: &'n Node,
    /// The value of its kind key (`email: <this>`): where the step is.
    value: &'n Node,
    /// The `id:` written in the file, if any.
    explicit: Option<(&'n Node, String)>,
    /// The parent's id (`if/then`) that derived ids nest under, or "".
    prefix: &'p str,
}

impl Site<'_, '_> {
    fn step(&self, id: String, kind: StepKind) -> Step {
        Step {
            id,
            kind,
            line: self.value.line,
            col: self.value.col,
        }
    }
}

impl StepBuilder<'_, '_> {
    fn steps(&mut self, n: &Node, prefix: &str) -> Vec<Step> {
        let items = self.r.seq(n, "steps");
        items.iter().filter_map(|i| self.step(i, prefix)).collect()
    }

    /// Takes the step's id: the explicit one, or one derived from its content
    /// (`order-confirmation`, `wait_for-shipment.shipped`), nested under its
    /// parent's id, with `~2`, `~3` for repeats.
    fn claim_id(&mut self, site: &mut Site, derived: &str) -> String {
        if let Some((node, id)) = site.explicit.take() {
            if let Some((line, col)) = self.ids.get(&id) {
                self.r.error(
                    node,
                    format!("duplicate step id `{id}` (first used at line {line}, column {col})"),
                );
            }
            self.ids.insert(id.clone(), (node.line, node.col));
            return id;
        }
        let derived = if site.prefix.is_empty() {
            derived.to_string()
        } else {
            format!("{}/{derived}", site.prefix)
        };
        let mut id = derived.clone();
        let mut k = 1;
        while self.ids.contains_key(&id) {
            k += 1;
            id = format!("{derived}~{k}");
        }
        self.ids.insert(id.clone(), (site.node.line, site.node.col));
        id
    }

    /// Finds the step's one kind key and hands the step to its builder.
    fn step(&mut self, n: &Node, prefix: &str) -> Option<Step> {
        if let Value::Str(word) = &n.value {
            return self.bare_word(n, word, prefix);
        }
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
        let site = Site {
            node: n,
            value: f.take(kind).expect("kind key is present"),
            explicit,
            prefix,
        };
        match kind {
            "email" => self.email(f, site),
            "wait" => self.wait(f, site),
            "wait_until" => self.wait_until(f, site),
            "wait_for" => self.wait_for(f, site),
            "if" => self.if_(f, site),
            "split" => self.split(f, site),
            "start" => self.start(f, site),
            "exit" => self.exit(f, site),
            _ => unreachable!("kind comes from STEP_KINDS"),
        }
    }

    fn email(&mut self, mut f: Fields, mut site: Site) -> Option<Step> {
        let template = self.r.string(site.value, "email");
        let category = f.take("category").and_then(|c| self.r.category(c));
        let id = self.claim_id(&mut site, template.as_deref().unwrap_or("email"));
        self.r
            .finish(f, "an email step", &["id", "email", "category"]);
        Some(site.step(
            id,
            StepKind::Email {
                template: template?,
                category,
            },
        ))
    }

    /// `at: "10:00"` and `on: [mon, …]`, the keys that move where a wait
    /// (or a `wait_for`'s timeout) ends.
    fn wait_end(&mut self, f: &mut Fields) -> (Option<NaiveTime>, Option<Weekdays>) {
        let at = f.take("at").and_then(|a| self.r.time_of_day(a, "at"));
        let on = f.take("on").and_then(|o| self.r.weekdays(o, "on"));
        (at, on)
    }

    fn wait(&mut self, mut f: Fields, mut site: Site) -> Option<Step> {
        let duration = self.r.span(site.value, "wait");
        let (at, on) = self.wait_end(&mut f);
        let derived = match duration {
            Some(d) => format!("wait-{}", duration::format_span(d)),
            None => "wait".into(),
        };
        let id = self.claim_id(&mut site, &derived);
        self.r.finish(f, "a wait step", &["id", "wait", "at", "on"]);
        Some(site.step(
            id,
            StepKind::Wait {
                duration: duration?,
                at,
                on,
            },
        ))
    }

    fn wait_until(&mut self, mut f: Fields, mut site: Site) -> Option<Step> {
        let cond = self.r.condition(site.value, "wait_until");
        let (at, on) = self.wait_end(&mut f);
        let id = self.claim_id(&mut site, "wait_until");
        self.r
            .finish(f, "a wait_until step", &["id", "wait_until", "at", "on"]);
        Some(site.step(
            id,
            StepKind::WaitUntil {
                until: cond?,
                at,
                on,
            },
        ))
    }

    fn wait_for(&mut self, mut f: Fields, mut site: Site) -> Option<Step> {
        let event = self.r.event_type(site.value, "wait_for");
        let within = match f.take("within") {
            Some(w) => self.r.span(w, "within"),
            None => {
                self.r.error(
                    site.node,
                    "wait_for: missing `within` (how long to wait, e.g. 3d)",
                );
                None
            }
        };
        let when = f
            .take("when")
            .and_then(|w| self.r.condition(w, "wait_for.when"));
        let scope = match f.take("scope") {
            Some(s) => self.r.scope(s),
            None => Some(Scope::Order),
        };
        let (at, on) = self.wait_end(&mut f);
        let derived = format!("wait_for-{}", event.as_deref().unwrap_or(""));
        let id = self.claim_id(&mut site, &derived);
        let on_timeout = match f.take("on_timeout") {
            Some(t) => self.steps(t, &format!("{id}/timeout")),
            None => Vec::new(),
        };
        self.r.finish(
            f,
            "a wait_for step",
            &[
                "id",
                "wait_for",
                "within",
                "when",
                "scope",
                "at",
                "on",
                "on_timeout",
            ],
        );
        let (Some(event), Some(within), Some(scope)) = (event, within, scope) else {
            self.orphans.extend(on_timeout);
            return None;
        };
        Some(site.step(
            id,
            StepKind::WaitFor {
                event,
                within,
                when,
                scope,
                on_timeout,
                at,
                on,
            },
        ))
    }

    fn if_(&mut self, mut f: Fields, mut site: Site) -> Option<Step> {
        let cond = self.r.condition(site.value, "if");
        let id = self.claim_id(&mut site, "if");
        let then = match f.take("then") {
            Some(t) => self.steps(t, &format!("{id}/then")),
            None => {
                self.r.error(
                    site.node,
                    "if: missing `then` (the steps when the condition holds)",
                );
                Vec::new()
            }
        };
        let otherwise = match f.take("else") {
            Some(t) => self.steps(t, &format!("{id}/else")),
            None => Vec::new(),
        };
        self.r
            .finish(f, "an if step", &["id", "if", "then", "else"]);
        let Some(cond) = cond else {
            self.orphans.extend(then.into_iter().chain(otherwise));
            return None;
        };
        Some(site.step(
            id,
            StepKind::If {
                cond,
                then,
                otherwise,
            },
        ))
    }

    fn split(&mut self, f: Fields, mut site: Site) -> Option<Step> {
        let id = self.claim_id(&mut site, "split");
        let variants = self.variants(site.value, &id);
        self.r.finish(f, "a split step", &["id", "split"]);
        Some(site.step(id, StepKind::Split(variants?)))
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
            let name = self.r.required(&mut f, "name", "split variant");
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
                _ => {
                    ok = false;
                    self.orphans.extend(steps);
                }
            }
        }
        if ok && !out.is_empty() && out.iter().all(|v| v.weight == 0) {
            self.r
                .error(n, "split: at least one variant needs a weight above 0");
            ok = false;
        }
        if !ok {
            self.orphans.extend(out.into_iter().flat_map(|v| v.steps));
            return None;
        }
        Some(out)
    }

    fn start(&mut self, f: Fields, mut site: Site) -> Option<Step> {
        let target = self.r.string(site.value, "start");
        let derived = match &target {
            Some(t) => format!("start-{t}"),
            None => "start".into(),
        };
        let id = self.claim_id(&mut site, &derived);
        self.r.finish(f, "a start step", &["id", "start"]);
        Some(site.step(id, StepKind::Start(target?)))
    }

    fn exit(&mut self, f: Fields, mut site: Site) -> Option<Step> {
        let ok = self.r.boolean(site.value, "exit");
        if ok == Some(false) {
            self.r.error(
                site.value,
                "exit: write `exit: true` (or the bare word `- exit`), or remove the step",
            );
        }
        let id = self.claim_id(&mut site, "exit");
        self.r.finish(f, "an exit step", &["id", "exit"]);
        (ok == Some(true)).then(|| site.step(id, StepKind::Exit))
    }

    /// A step written as a bare word: `- exit` is the one step that needs no
    /// value; any other word is an error that says how a step is written.
    fn bare_word(&mut self, n: &Node, word: &str, prefix: &str) -> Option<Step> {
        if word.trim() == "exit" {
            let mut site = Site {
                node: n,
                value: n,
                explicit: None,
                prefix,
            };
            let id = self.claim_id(&mut site, "exit");
            return Some(site.step(id, StepKind::Exit));
        }
        let w = word.trim();
        let hint = match closest(w, STEP_KINDS) {
            _ if STEP_KINDS.contains(&w) => format!(" (`{w}` needs a value: `{w}: …`)"),
            Some("exit") => " (did you mean `exit`?)".to_string(),
            Some(kind) => format!(" (did you mean `{kind}: …`?)"),
            None => String::new(),
        };
        self.r.error(
            n,
            format!(
                "step: `{word}` is not a step{hint}; a step is a mapping such as \
                 `email: order-confirmation` (only `exit` may stand alone)"
            ),
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chrono::{TimeDelta, Weekday};

    use super::*;
    use crate::sequence::duration::Span;
    use crate::sequence::load::{parse_sequence, walk};

    fn steps(body: &str) -> (Vec<Step>, Vec<String>) {
        let text = format!("id: x\ncategory: value\nsteps:\n{body}");
        let (seq, d) = parse_sequence(Path::new("s.yaml"), &text);
        let errs = d.0.iter().map(|d| d.to_string()).collect();
        let mut all = Vec::new();
        if let Some(seq) = seq {
            walk(&seq.steps, &mut |s| all.push(s.clone()));
        }
        (all, errs)
    }

    fn hm(h: u32, m: u32) -> Option<NaiveTime> {
        NaiveTime::from_hms_opt(h, m, 0)
    }

    fn days(list: &[Weekday]) -> Option<Weekdays> {
        let mut w = Weekdays::default();
        for d in list {
            w.insert(*d);
        }
        Some(w)
    }

    #[test]
    fn calendar_waits_at_and_on() {
        let (s, errs) = steps(
            r#"  - wait: 1mo
  - wait: 1y6mo
    at: "10:00"
    on: [mon, wed, fri]
  - wait_until: 'order.placed_at + days(30)'
    at: "9:30"
    on: [sat]
  - wait_for: review.submitted
    within: 1mo2d
    at: "10:00"
    on: [tue, thu]
    on_timeout: [{wait: 1d, on: sun}]
"#,
        );
        assert!(errs.is_empty(), "{errs:#?}");
        let ids: Vec<&str> = s.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "wait-1mo",
                "wait-1y6mo",
                "wait_until",
                "wait_for-review.submitted",
                "wait_for-review.submitted/timeout/wait-1d"
            ]
        );
        use Weekday::*;
        let StepKind::Wait { duration, at, on } = &s[0].kind else {
            panic!("{:?}", s[0].kind)
        };
        assert_eq!(
            (*duration, *at, *on),
            (
                Span {
                    months: 1,
                    delta: TimeDelta::zero()
                },
                None,
                None
            )
        );
        let StepKind::Wait { duration, at, on } = &s[1].kind else {
            panic!()
        };
        assert_eq!(duration.months, 18);
        assert_eq!((*at, *on), (hm(10, 0), days(&[Mon, Wed, Fri])));
        let StepKind::WaitUntil { until, at, on } = &s[2].kind else {
            panic!()
        };
        assert_eq!(until.source, "order.placed_at + days(30)");
        assert_eq!((*at, *on), (hm(9, 30), days(&[Sat])));
        let StepKind::WaitFor { within, at, on, .. } = &s[3].kind else {
            panic!()
        };
        assert_eq!(
            *within,
            Span {
                months: 1,
                delta: TimeDelta::days(2)
            }
        );
        assert_eq!((*at, *on), (hm(10, 0), days(&[Tue, Thu])));
        let StepKind::Wait { on, .. } = &s[4].kind else {
            panic!()
        };
        assert_eq!(*on, days(&[Sun]), "one day alone needs no list");
    }

    /// Every bad value is an error at its own line and column.
    #[test]
    fn bad_calendar_values_are_errors_with_their_place() {
        let (_, errs) = steps(
            r#"  - wait: 11y
  - wait: 0mo
  - wait: -1mo
  - wait: 1mon
  - wait: 1d
    on: [mon, tues, Friday, holiday]
  - wait: 1d
    on: []
  - wait_until: 'now + days(1)'
    at: "25:00"
    on: {mon: true}
  - wait_for: review.submitted
    within: 1month
    at: "ten"
    on: [sun, sunday]
  - wait_until: 'now'
    on:
  - wait: 2d
    om: [mon]
"#,
        );
        let expect = [
            "s.yaml:4:11: wait: \"11y\" is longer than 3650d (about 10 years)",
            "s.yaml:5:11: wait: must be longer than zero",
            "s.yaml:6:11: wait: must be longer than zero",
            "s.yaml:7:11: wait: \"1mon\" is not a duration",
            "s.yaml:9:15: on: `tues` is not a day of the week; did you mean `tue`? write one of mon, tue, wed, thu, fri, sat, sun",
            "s.yaml:9:21: on: `Friday` is not a day of the week; did you mean `fri`?",
            "s.yaml:9:29: on: `holiday` is not a day of the week; write one of",
            "s.yaml:11:9: on: the list of days is empty",
            "s.yaml:13:9: at: `25:00` is not a time of day",
            "s.yaml:14:9: on: expected a list of days such as [mon, tue, wed, thu, fri], found a mapping",
            "s.yaml:16:13: within: \"1month\" is not a duration",
            "s.yaml:17:9: at: `ten` is not a time of day",
            "s.yaml:18:15: on: `sunday` is not a day of the week; did you mean `sun`?",
            "s.yaml:20:7: on: expected a list of days such as [mon, tue, wed, thu, fri], found nothing",
            "s.yaml:22:5: unknown key `om` in a wait step (did you mean `on`?); allowed: id, wait, at, on",
        ];
        for e in expect {
            assert!(
                errs.iter().any(|x| x.starts_with(e)),
                "missing {e:?} in {errs:#?}"
            );
        }
        assert_eq!(errs.len(), expect.len(), "{errs:#?}");
    }
}
