//! The dashboard's arithmetic, pure: which period is shown and in which
//! buckets, which order an email brought (attribution by last touch within a
//! window), the funnel of each sequence's email steps with its rates, the
//! customer retention rate and the repeat-order rate. The store counts and
//! reads (`Store::step_counts`, `Store::placed_orders`, …); everything
//! decided about those numbers is here, where it is tested in microseconds.
//! No clock, no IO: `now` is an argument.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;

use crate::engine::outbox::Outcome;
use crate::sequence::model::{Catalog, Sequence, Step, StepKind};
use crate::store::{Bucket, PeriodCustomers, PlacedOrder, SeriesPoint, Span, StepCounts, Touch};

/// How long after a touch (an open or a click of an email) an order is
/// still the email's doing, when `AFTERCARE_ATTRIBUTION_WINDOW` is not set.
pub const DEFAULT_WINDOW: TimeDelta = TimeDelta::days(5);

/// Who counts as a customer at a moment, for the retention rate: someone
/// who placed an order in the 365 days before it (an "active customer").
pub const ACTIVE_WINDOW: TimeDelta = TimeDelta::days(365);

/// The periods the dashboard offers: the last 7, 30 or 90 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Period {
    #[default]
    Week,
    Month,
    Quarter,
}

impl Period {
    pub const ALL: [Period; 3] = [Period::Week, Period::Month, Period::Quarter];

    /// `7d`, `30d` or `90d` (the dashboard's `?period=`).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Week => "7d",
            Period::Month => "30d",
            Period::Quarter => "90d",
        }
    }

    pub fn days(self) -> i64 {
        match self {
            Period::Week => 7,
            Period::Month => 30,
            Period::Quarter => 90,
        }
    }

    /// The span it covers, ending at `now` (excluded).
    pub fn span(self, now: DateTime<Utc>) -> Span {
        Span {
            since: now - TimeDelta::days(self.days()),
            until: now,
        }
    }

    /// Hours for a week (168 points), days beyond.
    pub fn bucket(self) -> Bucket {
        match self {
            Period::Week => Bucket::Hour,
            Period::Month | Period::Quarter => Bucket::Day,
        }
    }
}

/// `part ÷ whole`, or `None` when there is no whole to divide (shown as
/// "—", never NaN or infinity).
pub fn rate(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// A rate as the dashboard writes it: `12.5%`, or `—` when there is none.
pub fn percent(r: Option<f64>) -> String {
    match r {
        Some(r) if r.is_finite() => format!("{:.1}%", r * 100.0),
        _ => "—".to_string(),
    }
}

// ---------------------------------------------------------------- series

/// Every bucket start of `span`, oldest first: the first is the bucket the
/// span begins in, the last the one its end falls in.
pub fn bucket_starts(span: Span, bucket: Bucket) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut t = bucket.floor(span.since);
    while t < span.until {
        out.push(t);
        t += bucket.width();
    }
    out
}

/// Counts over time, one value per bucket for each line, zeros filled in.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Series {
    /// Bucket starts, Unix seconds.
    pub at: Vec<i64>,
    pub lines: Vec<Line>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Line {
    pub name: String,
    pub values: Vec<i64>,
}

impl Series {
    /// Whether any line has a count above zero.
    pub fn any(&self) -> bool {
        self.lines.iter().any(|l| l.values.iter().any(|v| *v > 0))
    }

    pub fn total(&self, name: &str) -> i64 {
        self.lines
            .iter()
            .filter(|l| l.name == name)
            .flat_map(|l| &l.values)
            .sum()
    }
}

/// The outcomes the "over time" chart draws, in its order; `retry` (a
/// transient failure that will be tried again) is drawn with `deferred`,
/// the email is not gone either way.
pub const SERIES_LINES: [&str; 5] = ["sent", "deferred", "skipped", "failed", "bounced"];

fn line_of(o: Outcome) -> &'static str {
    match o {
        Outcome::Sent => "sent",
        Outcome::Deferred | Outcome::Retry => "deferred",
        Outcome::Skipped => "skipped",
        Outcome::Failed => "failed",
    }
}

/// The delivery log's counts and the bounces (`email.bounced` events) of
/// `span` as one series: sent, deferred (retries included), skipped,
/// failed, bounced, a value for every bucket.
pub fn outcome_series(
    deliveries: &[SeriesPoint<Outcome>],
    bounces: &[SeriesPoint<()>],
    span: Span,
    bucket: Bucket,
) -> Series {
    let starts = bucket_starts(span, bucket);
    let index: HashMap<DateTime<Utc>, usize> =
        starts.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let mut lines: Vec<Line> = SERIES_LINES
        .iter()
        .map(|n| Line {
            name: n.to_string(),
            values: vec![0; starts.len()],
        })
        .collect();
    let mut add = |name: &str, at: DateTime<Utc>, n: i64| {
        let (Some(i), Some(l)) = (
            index.get(&bucket.floor(at)),
            lines.iter_mut().find(|l| l.name == name),
        ) else {
            return;
        };
        l.values[*i] += n;
    };
    for p in deliveries {
        add(line_of(p.key), p.at, p.count);
    }
    for p in bounces {
        add("bounced", p.at, p.count);
    }
    Series {
        at: starts.iter().map(|t| t.timestamp()).collect(),
        lines,
    }
}

// ----------------------------------------------------------- attribution

/// Revenue by currency: amounts in different currencies are never added
/// up or converted; the dashboard lists each currency's sum.
pub type Revenue = BTreeMap<String, Decimal>;

/// An order and the touch it is attributed to.
#[derive(Debug, Clone, PartialEq)]
pub struct Attributed<'a> {
    pub order: &'a PlacedOrder,
    pub touch: &'a Touch,
}

/// Attributes each order to the last touch before it: the latest open or
/// click by a person (machine-made ones are not touches) of one of the
/// customer's emails at or before the order and at most `window` before it.
/// An order with no such touch is nobody's doing. The same order placed
/// twice (one order id, two events) counts once, at its first event.
/// Ties (two touches at the same instant) go to the one listed later.
pub fn attribute<'a>(
    orders: &'a [PlacedOrder],
    touches: &'a [Touch],
    window: TimeDelta,
) -> Vec<Attributed<'a>> {
    let mut by_customer: HashMap<&str, Vec<&Touch>> = HashMap::new();
    for t in touches.iter().filter(|t| !t.machine) {
        by_customer.entry(&t.customer_id).or_default().push(t);
    }
    for list in by_customer.values_mut() {
        // Stable: equal times keep the order they were listed in.
        list.sort_by_key(|t| t.at);
    }
    let mut sorted: Vec<&PlacedOrder> = orders.iter().collect();
    sorted.sort_by(|a, b| (a.at, &a.event_id).cmp(&(b.at, &b.event_id)));
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    let mut out = Vec::new();
    for order in sorted {
        if !seen.insert((&order.customer_id, &order.order_id)) {
            continue;
        }
        let Some(list) = by_customer.get(order.customer_id.as_str()) else {
            continue;
        };
        // The touches at or before the order; the last of them, if it is
        // within the window.
        let upto = list.partition_point(|t| t.at <= order.at);
        if let Some(touch) = upto.checked_sub(1).map(|i| list[i])
            && order.at - touch.at <= window
        {
            out.push(Attributed { order, touch });
        }
    }
    out
}

/// What the orders attributed to one email step brought.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conversions {
    pub orders: i64,
    /// Of `orders`, those of customers who had ordered before: what a
    /// reorder reminder is judged by.
    pub repeat: i64,
    pub revenue: Revenue,
}

impl Conversions {
    fn add(&mut self, o: &PlacedOrder) {
        self.orders += 1;
        if o.repeat {
            self.repeat += 1;
        }
        if let Some(total) = o.total {
            let currency = o.currency.clone().unwrap_or_default();
            *self.revenue.entry(currency).or_default() += total;
        }
    }
}

/// The attributed orders by `(sequence, step)`.
pub fn conversions(attributed: &[Attributed<'_>]) -> BTreeMap<(String, String), Conversions> {
    let mut out: BTreeMap<(String, String), Conversions> = BTreeMap::new();
    for a in attributed {
        out.entry((a.touch.sequence.clone(), a.touch.step.clone()))
            .or_default()
            .add(a.order);
    }
    out
}

/// Adds `b` into `a`, currency by currency.
pub fn add_revenue(a: &mut Revenue, b: &Revenue) {
    for (c, v) in b {
        *a.entry(c.clone()).or_default() += *v;
    }
}

/// A revenue as the dashboard writes it: each currency's sum, largest
/// first, joined with ` + ` (`129.90 EUR + 12990 HUF`); `—` for none.
pub fn revenue_text(r: &Revenue) -> String {
    if r.is_empty() {
        return "—".to_string();
    }
    let mut parts: Vec<(&String, &Decimal)> = r.iter().collect();
    parts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    parts
        .iter()
        .map(|(c, v)| {
            let c = if c.is_empty() {
                "(no currency)"
            } else {
                c.as_str()
            };
            format!("{} {c}", v.normalize())
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

// ---------------------------------------------------------------- funnels

/// One email step's funnel over a period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepFunnel {
    pub step: String,
    pub template: String,
    /// Emails (outbox rows) made for the step in the period.
    pub entered: i64,
    /// Of those, sent.
    pub emailed: i64,
    /// Of those, opened or clicked by a person.
    pub opened: i64,
    /// Of those, clicked by a person.
    pub clicked: i64,
    /// Orders of the period attributed to the step.
    pub converted: Conversions,
}

/// Each stage as a share of the stage before it, and conversions per email
/// sent (an order may follow an open without a click, so it is not a share
/// of clicks).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FunnelRates {
    /// emailed ÷ entered
    pub emailed: Option<f64>,
    /// opened ÷ emailed
    pub opened: Option<f64>,
    /// clicked ÷ opened
    pub clicked: Option<f64>,
    /// converted ÷ emailed
    pub converted: Option<f64>,
}

impl StepFunnel {
    pub fn rates(&self) -> FunnelRates {
        FunnelRates {
            emailed: rate(self.emailed, self.entered),
            opened: rate(self.opened, self.emailed),
            clicked: rate(self.clicked, self.opened),
            converted: rate(self.converted.orders, self.emailed),
        }
    }
}

/// A sequence's email steps, in the order its file writes them.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceFunnel {
    pub sequence: String,
    pub name: String,
    pub steps: Vec<StepFunnel>,
}

impl SequenceFunnel {
    /// The orders attributed to any of its steps.
    pub fn converted(&self) -> Conversions {
        let mut c = Conversions::default();
        for s in &self.steps {
            c.orders += s.converted.orders;
            c.repeat += s.converted.repeat;
            add_revenue(&mut c.revenue, &s.converted.revenue);
        }
        c
    }
}

/// The email steps of `seq` as `(step id, template)`, in the order the
/// file writes them (branches and timeouts where they stand).
pub fn email_steps(seq: &Sequence) -> Vec<(String, String)> {
    fn walk(steps: &[Step], out: &mut Vec<(String, String)>) {
        for s in steps {
            match &s.kind {
                StepKind::Email { template, .. } => out.push((s.id.clone(), template.clone())),
                StepKind::WaitFor { on_timeout, .. } => walk(on_timeout, out),
                StepKind::If {
                    then, otherwise, ..
                } => {
                    walk(then, out);
                    walk(otherwise, out);
                }
                StepKind::Split(variants) => {
                    for v in variants {
                        walk(&v.steps, out);
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(&seq.steps, &mut out);
    out
}

/// The funnel of every sequence of `catalog`, its email steps in file
/// order, with the counts of `counts` and the conversions of `converted`.
/// A step the files no longer have (the sequence was edited) but that has
/// counts or conversions in the period comes after the others, and a
/// sequence that is gone after the others. Sequences with nothing in the
/// period are left out.
pub fn funnels(
    catalog: &Catalog,
    counts: &[StepCounts],
    converted: &BTreeMap<(String, String), Conversions>,
) -> Vec<SequenceFunnel> {
    let mut steps: BTreeMap<(String, String), StepFunnel> = BTreeMap::new();
    for c in counts {
        let s = steps
            .entry((c.sequence.clone(), c.step.clone()))
            .or_insert_with(|| StepFunnel {
                step: c.step.clone(),
                template: c.template.clone(),
                ..StepFunnel::default()
            });
        s.entered += c.entered;
        s.emailed += c.emailed;
        s.opened += c.opened;
        s.clicked += c.clicked;
    }
    for ((seq, step), conv) in converted {
        let s = steps
            .entry((seq.clone(), step.clone()))
            .or_insert_with(|| StepFunnel {
                step: step.clone(),
                ..StepFunnel::default()
            });
        s.converted = conv.clone();
    }
    let mut out = Vec::new();
    for seq in catalog.sequences.values() {
        let mut list: Vec<StepFunnel> = email_steps(seq)
            .into_iter()
            .map(|(step, template)| {
                let mut s = steps
                    .remove(&(seq.id.clone(), step.clone()))
                    .unwrap_or_default();
                s.step = step;
                s.template = template;
                s
            })
            .collect();
        list.extend(take_sequence(&mut steps, &seq.id));
        out.push(SequenceFunnel {
            sequence: seq.id.clone(),
            name: seq.name.clone(),
            steps: list,
        });
    }
    while let Some(((seq, _), _)) = steps.first_key_value() {
        let seq = seq.clone();
        let list = take_sequence(&mut steps, &seq);
        out.push(SequenceFunnel {
            name: seq.clone(),
            sequence: seq,
            steps: list,
        });
    }
    out.retain(|f| {
        f.steps
            .iter()
            .any(|s| s.entered > 0 || s.converted.orders > 0)
    });
    out
}

/// Removes the steps of `seq` from `steps`, by step id.
fn take_sequence(steps: &mut BTreeMap<(String, String), StepFunnel>, seq: &str) -> Vec<StepFunnel> {
    let keys: Vec<(String, String)> = steps.keys().filter(|(s, _)| s == seq).cloned().collect();
    keys.iter().filter_map(|k| steps.remove(k)).collect()
}

// -------------------------------------------------------------- customers

/// The customers the retention rate counts ([`ACTIVE_WINDOW`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Customers at the start: who ordered in the [`ACTIVE_WINDOW`] before it.
    pub at_start: i64,
    /// Customers at the end: who ordered in the [`ACTIVE_WINDOW`] before it.
    pub at_end: i64,
    /// Customers whose first order ever is in the period.
    pub new: i64,
}

impl Retention {
    /// The spans whose ordering customers are the customers at the start and
    /// at the end of `period`.
    pub fn spans(period: Span) -> (Span, Span) {
        let before = |t: DateTime<Utc>| Span {
            since: t - ACTIVE_WINDOW,
            until: t,
        };
        (before(period.since), before(period.until))
    }

    /// ((customers at the end − new customers) ÷ customers at the start),
    /// as a fraction; `None` without customers at the start.
    pub fn rate(&self) -> Option<f64> {
        rate(self.at_end - self.new, self.at_start)
    }
}

/// Customers with two orders or more in the period ÷ customers with one
/// order or more in it; `None` when nobody ordered.
pub fn repeat_rate(c: &PeriodCustomers) -> Option<f64> {
    rate(c.repeat, c.ordered)
}

#[cfg(test)]
mod tests;
