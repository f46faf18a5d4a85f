//! The typed model of sequences and policies, built by [`super::load`],
//! [`super::steps`] and [`super::policies`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use chrono::{NaiveTime, TimeDelta};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::condition::Condition;
use super::duration::Span;
use super::plan::Plan;
use super::weekdays::Weekdays;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Transactional,
    Value,
    Promo,
}

impl Category {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "transactional" => Some(Self::Transactional),
            "value" => Some(Self::Value),
            "promo" => Some(Self::Promo),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transactional => "transactional",
            Self::Value => "value",
            Self::Promo => "promo",
        }
    }

    /// Value and promo mail is marketing: it needs consent and obeys the rules.
    pub fn is_marketing(self) -> bool {
        self != Self::Transactional
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollMode {
    OncePerOrder,
    OncePerCustomer,
    EveryEvent,
}

/// Which events correlate to an enrollment: the same order (default), or any
/// event of the same customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Order,
    Customer,
}

/// What enrolls a customer: an event, a date among the customer's facts,
/// or a schedule.
#[derive(Debug, Clone)]
pub enum Trigger {
    Event {
        event: String,
        when: Option<Condition>,
    },
    Date(DateTrigger),
    /// Boxed: a parsed cron schedule is large beside the other kinds.
    Schedule(Box<ScheduleTrigger>),
}

impl Trigger {
    /// The event type an event trigger waits for.
    pub fn event(&self) -> Option<&str> {
        match self {
            Trigger::Event { event, .. } => Some(event),
            _ => None,
        }
    }

    pub fn when(&self) -> Option<&Condition> {
        match self {
            Trigger::Event { when, .. } => when.as_ref(),
            Trigger::Date(d) => d.when.as_ref(),
            Trigger::Schedule(s) => s.when.as_ref(),
        }
    }
}

/// `trigger: {date: customer.first_order_at, offset: -7d, repeat: yearly,
/// at: "10:00", when: ...}`: fires on a date the customer's facts or
/// attributes hold (see `engine::calendar`).
#[derive(Debug, Clone)]
pub struct DateTrigger {
    pub date: DateSource,
    /// Added to each occurrence (negative: before it); months and days
    /// count in the customer's calendar.
    pub offset: Option<super::duration::Span>,
    pub repeat: Repeat,
    /// The local time of day it fires at; else the date's own time of day
    /// (midnight for a plain date).
    pub at: Option<NaiveTime>,
    pub when: Option<Condition>,
}

/// Where a date trigger's date comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateSource {
    /// A timestamp fact: `customer.first_order_at` and the like, by name.
    Fact(DateFact),
    /// `customer.attributes.<name>`: a date (`"1990-05-20"`) or an RFC 3339
    /// timestamp the shop sends.
    Attribute(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateFact {
    FirstOrderAt,
    LastOrderAt,
    LastReviewAt,
}

impl DateFact {
    pub const ALL: [(&'static str, DateFact); 3] = [
        ("first_order_at", DateFact::FirstOrderAt),
        ("last_order_at", DateFact::LastOrderAt),
        ("last_review_at", DateFact::LastReviewAt),
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    Yearly,
    Once,
}

/// `trigger: {schedule: "0 9 * * *", timezone: customer, when: ...}`: a sweep
/// over every customer at each time the cron expression names.
#[derive(Debug, Clone)]
pub struct ScheduleTrigger {
    /// As written (5 fields).
    pub source: String,
    pub cron: cron::Schedule,
    /// The cron's times are in each customer's time zone (else the
    /// policies' `default_timezone`).
    pub per_customer_zone: bool,
    pub when: Option<Condition>,
}

#[derive(Debug, Clone)]
pub struct ExitRule {
    pub event: String,
    pub scope: Scope,
    pub when: Option<Condition>,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub kind: StepKind,
    pub line: u64,
    pub col: u64,
}

#[derive(Debug, Clone)]
pub enum StepKind {
    Email {
        template: String,
        category: Option<Category>,
    },
    /// `at` and `on` move where a wait ends (see
    /// [`crate::engine::localtime::align`]).
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
        on_timeout: Vec<Step>,
        /// Move the timeout, as for `wait`.
        at: Option<NaiveTime>,
        on: Option<Weekdays>,
    },
    If {
        cond: Condition,
        then: Vec<Step>,
        otherwise: Vec<Step>,
    },
    Split(Vec<Variant>),
    Start(String),
    Exit,
}

#[derive(Debug, Clone)]
pub struct Variant {
    pub name: String,
    pub weight: u32,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone)]
pub struct Sequence {
    pub id: String,
    pub name: String,
    pub category: Category,
    pub trigger: Option<Trigger>,
    pub enroll: EnrollMode,
    pub exit_when: Vec<ExitRule>,
    pub steps: Vec<Step>,
    /// Content hash of the file: the version an enrollment started on.
    pub version: String,
    pub file: PathBuf,
    /// The steps laid out flat for the engine.
    pub plan: Plan,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sender {
    pub from: String,
    pub reply_to: Option<String>,
}

impl Sender {
    /// The display name and address of `from` ("Shop <hello@shop.example>").
    pub fn name_and_email(&self) -> (String, String) {
        match (self.from.find('<'), self.from.rfind('>')) {
            (Some(a), Some(b)) if a < b => (
                self.from[..a].trim().trim_matches('"').to_string(),
                self.from[a + 1..b].trim().to_string(),
            ),
            _ => (String::new(), self.from.trim().to_string()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuietHours {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrequencyCap {
    pub max: u32,
    pub per: TimeDelta,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PromoShare {
    pub max_percent: u32,
    pub window: TimeDelta,
}

/// A safety net against runaway sequences: at most `enrollments` started
/// and `emails` enqueued per customer in a window of `per`. Unlike the other
/// rules it always applies, at [`Ceiling::default`] unless the policies file
/// sets it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ceiling {
    pub enrollments: u32,
    pub emails: u32,
    pub per: TimeDelta,
}

impl Default for Ceiling {
    /// Far above what a real customer gets in a day, far below a loop.
    fn default() -> Self {
        Self {
            enrollments: 100,
            emails: 50,
            per: TimeDelta::hours(24),
        }
    }
}

/// How late an email may still go, by category, counted from when it first
/// became due (deferrals and retries included); one that would go later is
/// skipped as stale. Like the ceiling it always applies, at
/// [`StaleAfter::default`] unless the policies file sets it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StaleAfter {
    pub transactional: TimeDelta,
    pub value: TimeDelta,
    pub promo: TimeDelta,
}

impl StaleAfter {
    /// The shortest `stale_after` taken: anything shorter would drop mail in
    /// normal running (a retry an hour later, a night of quiet hours).
    pub const MIN: TimeDelta = TimeDelta::hours(1);

    pub fn of(&self, category: Category) -> TimeDelta {
        match category {
            Category::Transactional => self.transactional,
            Category::Value => self.value,
            Category::Promo => self.promo,
        }
    }
}

impl Default for StaleAfter {
    /// An order or shipping notice still helps a few days late (the receipt,
    /// the tracking link), but not once the parcel has long arrived; a
    /// marketing email is timed to a moment (the first days with a product,
    /// an offer) and only surprises later. Both stay above what the shipped
    /// rules defer by (quiet hours and a 16h cap: about a day).
    fn default() -> Self {
        Self {
            transactional: TimeDelta::days(3),
            value: TimeDelta::days(2),
            promo: TimeDelta::days(2),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policies {
    pub default_locale: String,
    pub default_timezone: Tz,
    pub sender: Sender,
    pub quiet_hours: Option<QuietHours>,
    pub frequency_cap: Option<FrequencyCap>,
    pub promo_share: Option<PromoShare>,
    pub sunset_after_unopened: Option<u32>,
    pub ceiling: Ceiling,
    pub stale_after: StaleAfter,
    /// Open and click tracking by category; on for value and promo unless
    /// the policies file says otherwise.
    pub tracking: Tracking,
}

impl Default for Policies {
    fn default() -> Self {
        Self {
            default_locale: "en".into(),
            default_timezone: Tz::UTC,
            sender: Sender {
                from: "aftercare <aftercare@localhost>".into(),
                reply_to: None,
            },
            quiet_hours: None,
            frequency_cap: None,
            promo_share: None,
            sunset_after_unopened: None,
            ceiling: Ceiling::default(),
            stale_after: StaleAfter::default(),
            tracking: Tracking::default(),
        }
    }
}

/// A set of categories (a policy that applies to some of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Categories {
    pub transactional: bool,
    pub value: bool,
    pub promo: bool,
}

impl Categories {
    pub const MARKETING: Categories = Categories {
        transactional: false,
        value: true,
        promo: true,
    };

    pub fn contains(&self, c: Category) -> bool {
        match c {
            Category::Transactional => self.transactional,
            Category::Value => self.value,
            Category::Promo => self.promo,
        }
    }

    pub fn insert(&mut self, c: Category) {
        match c {
            Category::Transactional => self.transactional = true,
            Category::Value => self.value = true,
            Category::Promo => self.promo = true,
        }
    }
}

/// `tracking: {opens: [...], clicks: [...]}`: which categories carry an
/// open pixel, and which have their links rewritten to count clicks. On for
/// value and promo by default (the sunset rule needs opens); off for
/// transactional mail unless listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracking {
    pub opens: Categories,
    pub clicks: Categories,
}

impl Default for Tracking {
    fn default() -> Self {
        Self {
            opens: Categories::MARKETING,
            clicks: Categories::MARKETING,
        }
    }
}

/// Every sequence and the policies: what `run`, `simulate` and `demo` load.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub sequences: BTreeMap<String, Sequence>,
    pub policies: Policies,
    /// Sequence ids by the event type that triggers them.
    pub triggers: HashMap<String, Vec<String>>,
    /// Sequence ids with a date trigger: each customer has a timer for each.
    pub dated: Vec<String>,
    /// Sequence ids with a schedule trigger in the default time zone: swept
    /// over all customers at each firing.
    pub scheduled: Vec<String>,
    /// Sequence ids that keep a timer per customer: the dated ones, and
    /// schedules in each customer's own time zone.
    pub timed: Vec<String>,
    /// Event types an enrollment may look back for when it starts or starts
    /// waiting (each `wait_for` and `exit_when` event): the ingest and the
    /// scheduler load a customer's recent events of these types, so that an
    /// event that arrived before its turn still counts.
    pub looked_back: BTreeSet<String>,
}

impl Catalog {
    pub fn new(sequences: Vec<Sequence>, policies: Policies) -> Self {
        let mut triggers: HashMap<String, Vec<String>> = HashMap::new();
        let mut dated = Vec::new();
        let mut scheduled = Vec::new();
        let mut timed = Vec::new();
        for s in &sequences {
            match &s.trigger {
                Some(Trigger::Event { event, .. }) => triggers
                    .entry(event.clone())
                    .or_default()
                    .push(s.id.clone()),
                Some(Trigger::Date(_)) => {
                    dated.push(s.id.clone());
                    timed.push(s.id.clone());
                }
                Some(Trigger::Schedule(t)) if t.per_customer_zone => timed.push(s.id.clone()),
                Some(Trigger::Schedule(_)) => scheduled.push(s.id.clone()),
                None => {}
            }
        }
        dated.sort();
        scheduled.sort();
        timed.sort();
        for ids in triggers.values_mut() {
            ids.sort();
        }
        let mut looked_back = BTreeSet::new();
        for s in &sequences {
            looked_back.extend(s.exit_when.iter().map(|r| r.event.clone()));
            for i in &s.plan.instrs {
                if let super::plan::Op::WaitFor { event, .. } = &i.op {
                    looked_back.insert(event.clone());
                }
            }
        }
        Self {
            sequences: sequences.into_iter().map(|s| (s.id.clone(), s)).collect(),
            policies,
            triggers,
            dated,
            scheduled,
            timed,
            looked_back,
        }
    }

    pub fn get(&self, id: &str) -> Option<&Sequence> {
        self.sequences.get(id)
    }
}
