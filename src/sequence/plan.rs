//! A sequence's step tree laid out flat, so the engine moves by index and
//! finds any step by its id in constant time. It is compiled with the
//! sequence when it loads; the engine only reads it.

use std::collections::HashMap;

use chrono::NaiveTime;

use super::condition::Condition;
use super::duration::Span;
use super::model::{Category, Scope, Step, StepKind};
use super::weekdays::Weekdays;

#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub instrs: Vec<Instr>,
    /// The first step, or `None` for a sequence without steps.
    pub entry: Option<usize>,
    pub by_id: HashMap<String, usize>,
}

#[derive(Debug, Clone)]
pub struct Instr {
    pub id: String,
    pub op: Op,
    /// Where the sequence goes on once this step is done; `None` ends it.
    pub next: Option<usize>,
}

#[derive(Debug, Clone)]
pub enum Op {
    Email {
        template: String,
        category: Option<Category>,
    },
    /// `at` and `on` move where the wait ends, in the customer's time zone.
    Wait {
        duration: Span,
        at: Option<NaiveTime>,
        on: Option<Weekdays>,
    },
    WaitUntil {
        until: Condition,
        at: Option<NaiveTime>,
        on: Option<Weekdays>,
    },
    WaitFor {
        event: String,
        within: Span,
        when: Option<Condition>,
        scope: Scope,
        /// First step of `on_timeout`; when it is empty, `next`.
        timeout: Option<usize>,
        /// Move the timeout, as for `wait`.
        at: Option<NaiveTime>,
        on: Option<Weekdays>,
    },
    If {
        cond: Condition,
        then: Option<usize>,
        otherwise: Option<usize>,
    },
    Split(Vec<(String, u32, Option<usize>)>),
    Start(String),
    Exit,
}

impl Plan {
    pub fn compile(steps: &[Step]) -> Plan {
        let mut plan = Plan::default();
        plan.entry = plan.lay(steps, None);
        plan
    }

    /// Lays `steps` out so that the last one continues at `after`; returns the
    /// index of the first. Working backwards, every continuation is known
    /// before the step that needs it.
    fn lay(&mut self, steps: &[Step], after: Option<usize>) -> Option<usize> {
        let mut cont = after;
        for step in steps.iter().rev() {
            let op = match &step.kind {
                StepKind::Email { template, category } => Op::Email {
                    template: template.clone(),
                    category: *category,
                },
                StepKind::Wait { duration, at, on } => Op::Wait {
                    duration: *duration,
                    at: *at,
                    on: *on,
                },
                StepKind::WaitUntil { until, at, on } => Op::WaitUntil {
                    until: until.clone(),
                    at: *at,
                    on: *on,
                },
                StepKind::WaitFor {
                    event,
                    within,
                    when,
                    scope,
                    on_timeout,
                    at,
                    on,
                } => Op::WaitFor {
                    event: event.clone(),
                    within: *within,
                    when: when.clone(),
                    scope: *scope,
                    timeout: self.lay(on_timeout, cont),
                    at: *at,
                    on: *on,
                },
                StepKind::If {
                    cond,
                    then,
                    otherwise,
                } => Op::If {
                    cond: cond.clone(),
                    then: self.lay(then, cont),
                    otherwise: self.lay(otherwise, cont),
                },
                StepKind::Split(variants) => Op::Split(
                    variants
                        .iter()
                        .map(|v| (v.name.clone(), v.weight, self.lay(&v.steps, cont)))
                        .collect(),
                ),
                StepKind::Start(s) => Op::Start(s.clone()),
                StepKind::Exit => Op::Exit,
            };
            let idx = self.instrs.len();
            self.instrs.push(Instr {
                id: step.id.clone(),
                op,
                next: cont,
            });
            self.by_id.insert(step.id.clone(), idx);
            cont = Some(idx);
        }
        cont
    }
}
