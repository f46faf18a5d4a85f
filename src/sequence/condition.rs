//! CEL conditions over the customer, the order, the shipment, the review, the
//! event being matched and `now`.
//!
//! Money is a double and timestamps are CEL timestamps. Absent fields are
//! absent from the maps, so `has(order.total)` tells whether a field is set.
//! Additions: `days(n)` is a duration of n days; `months(n)` and
//! `years(n)` are calendar durations (below); `order.replenish_every_days`
//! is the smallest interval among the items.
//!
//! `months(n)` is the length of the n calendar months that end at `now` in
//! the customer's time zone: `now` minus the same local time n months
//! earlier (clamped to the end of a shorter month, as a `1mo` wait is), so
//! that `now - customer.last_order_at > months(3)` means "more than three
//! calendar months ago" and `now - months(1)` is this time last month.
//! `years(n)` is `months(12 * n)`. A negative n gives the same length,
//! negated (`months(-1) == -months(1)`). The time zone is the customer's,
//! else the policies' `default_timezone` where the engine evaluates (waits,
//! `if`, `exit_when`, `wait_for.when`); where only the customer is known,
//! their zone or UTC.
//!
//! The CEL library can panic on input it should refuse (a timestamp plus a
//! duration past what dates hold panics inside chrono). Every compilation and
//! evaluation runs under [`guarded`]: a panic becomes an error like any other,
//! so that the condition fails and the one enrollment pays for it, never the
//! batch or the process.

use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::ops::Bound;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Once, OnceLock};

use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelTimestamp,
};
use cel::common::value::Val;
use cel::{Context, Env, Program, Value};
use chrono::{DateTime, Datelike, TimeDelta, Utc};
use chrono_tz::Tz;
use rust_decimal::prelude::ToPrimitive;

use crate::engine::facts::{FactRange, Facts, TimeFact};
use crate::event::{Customer, Event, Item, Money, Order, Review, Shipment};

/// The variables a condition may name.
pub const VARIABLES: [&str; 6] = ["customer", "order", "shipment", "review", "event", "now"];

#[derive(Clone)]
pub struct Condition {
    pub source: String,
    program: Arc<Program>,
    /// Which of [`VARIABLES`] the expression names, and whether it calls
    /// `days`, or `months` or `years`: only those are built for an evaluation.
    uses: [bool; 6],
    uses_days: bool,
    uses_calendar: bool,
    /// The fields of `customer`, `order` and `event` it selects, when it
    /// only selects fields of them (`customer.last_order_at`, in `has()`
    /// too): only those are built. `None` when it uses the variable whole.
    customer_fields: Option<Vec<&'static str>>,
    order_fields: Option<Vec<&'static str>>,
    event_fields: Option<Vec<&'static str>>,
    /// The fields it reads (`order.total`), outside `has()`.
    fields: Vec<String>,
    /// Where in time one of the customer's time facts must lie for the
    /// condition to hold, if its top-level `&&` says so.
    window: Option<Window>,
    pub line: u64,
    pub col: u64,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Condition({:?})", self.source)
    }
}

/// `days(n)` takes at most this many days either way: 10,000 years, more
/// than any two CEL timestamps (years 1 to 9999) lie apart, so that the
/// library's own range checks see every sum and difference.
pub const MAX_DAYS: i64 = 3_652_500;

/// `months(n)` takes at most this many months either way (10,000 years).
pub const MAX_MONTHS: i64 = 120_000;

/// `years(n)` takes at most this many years either way.
pub const MAX_YEARS: i64 = 10_000;

/// The years a `wait_until` may name.
pub const YEARS: std::ops::RangeInclusive<i32> = 1970..=9999;

fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib()))
}

thread_local! {
    /// Set while this thread runs CEL under [`guarded`].
    static IN_CEL: Cell<bool> = const { Cell::new(false) };
}

/// Installs, once, a panic hook that stays silent for a panic raised inside
/// [`guarded`] on the same thread (it is caught, turned into an error and
/// logged by the caller with the expression that caused it) and hands every
/// other panic to the hook that was there before, so nothing else is hidden.
fn quiet_cel_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !IN_CEL.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Runs `f` (a call into the CEL library), turning a panic into an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    quiet_cel_panics();
    let outer = IN_CEL.with(|c| c.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    IN_CEL.with(|c| c.set(outer));
    result.unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(format!("the CEL library failed: {what}"))
    })
}

/// The longest condition, in bytes.
pub const MAX_SOURCE: usize = 4096;

/// The deepest expression tree a condition may build (brackets, calls and
/// operators nest it; `&&` and `||` chains are balanced).
pub const MAX_DEPTH: usize = 32;

/// The compiler's stack: the parser takes tens of kilobytes per bracket in
/// a debug build.
const COMPILE_STACK: usize = 256 << 20;

/// The expressions directly below `e`.
fn children(e: &cel::IdedExpr) -> Vec<&cel::IdedExpr> {
    use cel::common::ast::{EntryExpr, Expr};
    fn entry(en: &EntryExpr) -> Vec<&cel::IdedExpr> {
        match en {
            EntryExpr::MapEntry(me) => vec![&me.key, &me.value],
            EntryExpr::StructField(f) => vec![&f.value],
        }
    }
    match &e.expr {
        Expr::Call(c) => c.target.iter().map(|t| &**t).chain(&c.args).collect(),
        Expr::Comprehension(c) => vec![
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ],
        Expr::List(l) => l.elements.iter().collect(),
        Expr::Map(m) => m.entries.iter().flat_map(|en| entry(&en.expr)).collect(),
        Expr::Struct(st) => st.entries.iter().flat_map(|en| entry(&en.expr)).collect(),
        Expr::Select(sel) => vec![&*sel.operand],
        _ => Vec::new(),
    }
}

/// The depth of `e`, stopping early once past [`MAX_DEPTH`].
fn depth(e: &cel::IdedExpr, at: usize) -> usize {
    if at > MAX_DEPTH {
        return at;
    }
    children(e)
        .into_iter()
        .map(|c| depth(c, at + 1))
        .max()
        .unwrap_or(at)
}

/// The fields of the variable `var` that `e` selects (`customer.x`, tested
/// by `has()` or read), into `out`; `out` becomes `None` where `e` uses
/// `var` otherwise (whole, or indexed), and stays so.
fn selected_fields(e: &cel::IdedExpr, var: &str, out: &mut Option<Vec<String>>) {
    use cel::common::ast::Expr;
    match &e.expr {
        Expr::Select(sel) if matches!(&sel.operand.expr, Expr::Ident(n) if n == var) => {
            if let Some(v) = out
                && !v.contains(&sel.field)
            {
                v.push(sel.field.clone());
            }
        }
        Expr::Ident(n) if n == var => *out = None,
        _ => children(e)
            .into_iter()
            .for_each(|c| selected_fields(c, var, out)),
    }
}

/// Of `all` (a variable's fields, in the order they are built), those
/// `names` selects; names not among them are absent, as from the whole map.
fn known_fields(names: Option<Vec<String>>, all: &[&'static str]) -> Option<Vec<&'static str>> {
    names.map(|names| {
        all.iter()
            .copied()
            .filter(|f| names.iter().any(|n| n == f))
            .collect()
    })
}

/// The paths of the fields `e` selects from the variables (`order.total`),
/// leaving out `has()` tests and comprehension variables.
fn field_paths(e: &cel::IdedExpr, out: &mut Vec<String>) {
    use cel::common::ast::{EntryExpr, Expr};
    fn chain(e: &cel::IdedExpr) -> Option<String> {
        match &e.expr {
            Expr::Ident(n) if VARIABLES.contains(&n.as_str()) => Some(n.clone()),
            Expr::Select(sel) if !sel.test => {
                Some(format!("{}.{}", chain(&sel.operand)?, sel.field))
            }
            _ => None,
        }
    }
    match &e.expr {
        // `has(a.b)`: `a.b` may be absent; what reads it is the test's business.
        Expr::Select(sel) if sel.test => {
            if let Some(p) = chain(&sel.operand) {
                out.push(format!("has:{p}.{}", sel.field));
            }
        }
        Expr::Select(sel) => {
            if let Some(p) = chain(e)
                && !out.contains(&p)
            {
                out.push(p);
            }
            field_paths(&sel.operand, out);
        }
        Expr::Call(c) => {
            for t in c.target.iter() {
                field_paths(t, out);
            }
            for a in &c.args {
                field_paths(a, out);
            }
        }
        Expr::Comprehension(c) => {
            for x in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                field_paths(x, out);
            }
        }
        Expr::List(l) => l.elements.iter().for_each(|x| field_paths(x, out)),
        Expr::Map(m) => {
            for en in &m.entries {
                if let EntryExpr::MapEntry(me) = &en.expr {
                    field_paths(&me.key, out);
                    field_paths(&me.value, out);
                }
            }
        }
        _ => {}
    }
}

/// Bounds on one time fact of the customer, relative to `now`, that every
/// customer the condition holds for is within: read off the conjuncts of
/// its top-level `&&` that compare the fact with `now` and a whole number
/// of `days` (`now - customer.last_order_at > days(90)`,
/// `customer.first_order_at <= now - days(30)`), and `has(customer.F)`.
///
/// CEL's `&&` is false as soon as one side is false, whatever the other
/// side is (an error included), so a conjunct false outside the window
/// makes the condition false outside it. Every other conjunct is left for
/// the evaluation; so is a condition with no such conjunct (no window).
#[derive(Debug, Clone, PartialEq)]
struct Window {
    fact: TimeFact,
    /// `fact` is after (or at) `now` plus this.
    from: Bound<TimeDelta>,
    /// `fact` is before (or at) `now` plus this.
    to: Bound<TimeDelta>,
    /// A `has()` of the fact is among the conjuncts.
    present: bool,
    /// Every conjunct is a bound on this fact or a `has()` of it: the
    /// window is the whole condition.
    whole: bool,
}

/// One side of a comparison the window understands.
enum Side {
    /// `customer.F`
    Fact(TimeFact),
    /// `now - customer.F`
    Since(TimeFact),
    /// `now` or `now - days(n)`: `now` minus this.
    Ago(TimeDelta),
    /// `days(n)`
    Days(TimeDelta),
}

impl Window {
    fn of(tree: &cel::IdedExpr) -> Option<Window> {
        let mut conjuncts = Vec::new();
        and_terms(tree, &mut conjuncts);
        let mut windows: Vec<Window> = Vec::new();
        let mut present = Vec::new();
        let mut facts = Vec::new();
        let mut others = false;
        for c in conjuncts {
            if let Some(fact) = tested_fact(c) {
                present.push(fact);
                facts.push(fact);
                continue;
            }
            let Some((fact, op, offset)) = bound(c) else {
                others = true;
                continue;
            };
            facts.push(fact);
            let w = match windows.iter_mut().find(|w| w.fact == fact) {
                Some(w) => w,
                None => {
                    windows.push(Window {
                        fact,
                        from: Bound::Unbounded,
                        to: Bound::Unbounded,
                        present: false,
                        whole: false,
                    });
                    windows.last_mut().expect("just pushed")
                }
            };
            match op {
                Op::Lt => w.to = tighter(w.to, Bound::Excluded(offset), Ordering::Less),
                Op::Le => w.to = tighter(w.to, Bound::Included(offset), Ordering::Less),
                Op::Gt => w.from = tighter(w.from, Bound::Excluded(offset), Ordering::Greater),
                Op::Ge => w.from = tighter(w.from, Bound::Included(offset), Ordering::Greater),
            }
        }
        let mut w = match windows.into_iter().next() {
            Some(w) => w,
            None => Window {
                fact: *present.first()?,
                from: Bound::Unbounded,
                to: Bound::Unbounded,
                present: false,
                whole: false,
            },
        };
        w.present = present.contains(&w.fact);
        w.whole = !others && facts.iter().all(|f| *f == w.fact);
        Some(w)
    }

    /// The window at `now`. A bound that would leave the years CEL
    /// timestamps have (1 to 9999) is dropped: there `now - days(n)` is an
    /// error, not false.
    fn at(&self, now: DateTime<Utc>) -> FactRange {
        let at = |b: Bound<TimeDelta>| {
            let t = |d: TimeDelta| {
                now.checked_add_signed(d)
                    .filter(|t| (1..=9999).contains(&t.year()))
            };
            match b {
                Bound::Included(d) => t(d).map_or(Bound::Unbounded, Bound::Included),
                Bound::Excluded(d) => t(d).map_or(Bound::Unbounded, Bound::Excluded),
                Bound::Unbounded => Bound::Unbounded,
            }
        };
        FactRange {
            fact: self.fact,
            from: at(self.from),
            to: at(self.to),
            present: self.present,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn flipped(self) -> Op {
        match self {
            Op::Lt => Op::Gt,
            Op::Le => Op::Ge,
            Op::Gt => Op::Lt,
            Op::Ge => Op::Le,
        }
    }
}

/// Of two bounds on one side, the one that leaves less: `keep` is the
/// order of an offset that is tighter (`Less` for upper bounds); at one
/// offset an excluded bound is the tighter.
fn tighter(a: Bound<TimeDelta>, b: Bound<TimeDelta>, keep: Ordering) -> Bound<TimeDelta> {
    let (Bound::Included(x) | Bound::Excluded(x)) = a else {
        return b;
    };
    let (Bound::Included(y) | Bound::Excluded(y)) = b else {
        return a;
    };
    match y.cmp(&x) {
        Ordering::Equal if matches!(b, Bound::Excluded(_)) => b,
        Ordering::Equal => a,
        o if o == keep => b,
        _ => a,
    }
}

/// The terms of the top-level `&&` chain (the expression itself if it is
/// not one).
fn and_terms<'a>(e: &'a cel::IdedExpr, out: &mut Vec<&'a cel::IdedExpr>) {
    use cel::common::ast::{Expr, operators};
    match &e.expr {
        Expr::Call(c)
            if c.func_name == operators::LOGICAL_AND && c.target.is_none() && c.args.len() == 2 =>
        {
            c.args.iter().for_each(|a| and_terms(a, out));
        }
        _ => out.push(e),
    }
}

/// `customer.F` with `F` a time fact.
fn fact_of(e: &cel::IdedExpr, test: bool) -> Option<TimeFact> {
    use cel::common::ast::Expr;
    match &e.expr {
        Expr::Select(sel)
            if sel.test == test
                && matches!(&sel.operand.expr, Expr::Ident(n) if n == "customer") =>
        {
            TimeFact::named(&sel.field)
        }
        _ => None,
    }
}

/// `has(customer.F)` with `F` a time fact.
fn tested_fact(e: &cel::IdedExpr) -> Option<TimeFact> {
    fact_of(e, true)
}

fn side(e: &cel::IdedExpr) -> Option<Side> {
    use cel::common::ast::{Expr, LiteralValue, operators};
    let is_now = |e: &cel::IdedExpr| matches!(&e.expr, Expr::Ident(n) if n == "now");
    let days_of = |e: &cel::IdedExpr| match &e.expr {
        Expr::Call(c) if c.func_name == "days" && c.target.is_none() && c.args.len() == 1 => {
            match &c.args[0].expr {
                Expr::Literal(LiteralValue::Int(n)) if n.inner().abs() <= MAX_DAYS => {
                    TimeDelta::try_days(*n.inner())
                }
                _ => None,
            }
        }
        _ => None,
    };
    if let Some(f) = fact_of(e, false) {
        return Some(Side::Fact(f));
    }
    if is_now(e) {
        return Some(Side::Ago(TimeDelta::zero()));
    }
    if let Some(d) = days_of(e) {
        return Some(Side::Days(d));
    }
    match &e.expr {
        Expr::Call(c)
            if c.func_name == operators::SUBSTRACT
                && c.target.is_none()
                && c.args.len() == 2
                && is_now(&c.args[0]) =>
        {
            if let Some(f) = fact_of(&c.args[1], false) {
                Some(Side::Since(f))
            } else {
                days_of(&c.args[1]).map(Side::Ago)
            }
        }
        _ => None,
    }
}

/// A comparison conjunct as `fact op now + offset`.
fn bound(e: &cel::IdedExpr) -> Option<(TimeFact, Op, TimeDelta)> {
    use cel::common::ast::{Expr, operators};
    let Expr::Call(c) = &e.expr else {
        return None;
    };
    let op = match c.func_name.as_str() {
        operators::LESS => Op::Lt,
        operators::LESS_EQUALS => Op::Le,
        operators::GREATER => Op::Gt,
        operators::GREATER_EQUALS => Op::Ge,
        _ => return None,
    };
    let [l, r] = &c.args[..] else {
        return None;
    };
    if c.target.is_some() {
        return None;
    }
    match (side(l)?, side(r)?) {
        // F op now - d
        (Side::Fact(f), Side::Ago(d)) => Some((f, op, -d)),
        (Side::Ago(d), Side::Fact(f)) => Some((f, op.flipped(), -d)),
        // now - F op d  <=>  F flipped(op) now - d
        (Side::Since(f), Side::Days(d)) => Some((f, op.flipped(), -d)),
        (Side::Days(d), Side::Since(f)) => Some((f, op, -d)),
        _ => None,
    }
}

/// `days(n)`: a duration of `n` days, refused beyond [`MAX_DAYS`].
fn days(n: i64) -> Result<Value, cel::ExecutionError> {
    TimeDelta::try_days(n)
        .filter(|_| n.abs() <= MAX_DAYS)
        .map(Value::Duration)
        .ok_or_else(|| {
            cel::ExecutionError::function_error(
                "days",
                format!("{n} days is out of range (at most {MAX_DAYS} either way)"),
            )
        })
}

/// `months(n)` (`name` "months") or `years(n / 12)`: the length of the
/// `|n|` calendar months that end at `now` in `tz`, negated for a negative
/// `n` (see the module's documentation).
fn calendar(
    name: &str,
    n: i64,
    months: Option<i64>,
    now: DateTime<Utc>,
    tz: Tz,
) -> Result<Value, cel::ExecutionError> {
    let limit = if name == "years" {
        MAX_YEARS
    } else {
        MAX_MONTHS
    };
    let out_of_range = || {
        cel::ExecutionError::function_error(
            name,
            format!("{n} {name} is out of range (at most {limit} either way)"),
        )
    };
    let m = months
        .filter(|_| n.unsigned_abs() <= limit.unsigned_abs())
        .and_then(|m| i32::try_from(m.unsigned_abs()).ok())
        .ok_or_else(out_of_range)?;
    let start = crate::engine::localtime::add_months(now, tz, -m).ok_or_else(out_of_range)?;
    let length = now.signed_duration_since(start);
    Ok(Value::Duration(if n < 0 { -length } else { length }))
}

/// What a condition sees.
#[derive(Debug, Clone, Copy)]
pub struct Bindings<'a> {
    pub customer: &'a Customer,
    /// The customer's facts (`customer.orders_count`, ...); `None` reads as
    /// a customer with none yet.
    pub facts: Option<&'a Facts>,
    pub order: Option<&'a Order>,
    pub shipment: Option<&'a Shipment>,
    pub review: Option<&'a Review>,
    pub event: Option<&'a Event>,
    pub now: DateTime<Utc>,
}

impl Condition {
    /// Compiles `source`; the error names what CEL could not parse and where
    /// inside the expression.
    pub fn compile(source: &str, line: u64, col: u64) -> Result<Self, String> {
        if source.len() > MAX_SOURCE {
            return Err(format!(
                "a condition is at most {MAX_SOURCE} bytes long; this one is {}",
                source.len()
            ));
        }
        // The parser recurses deeply for each bracket: on a thread of its own
        // with a large stack, and the tree it builds is checked for depth
        // there (and dropped there when refused), so that evaluations on the
        // service's small-stacked threads never recurse deeper than
        // MAX_DEPTH.
        let parsed = std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("cel-compile".into())
                .stack_size(COMPILE_STACK)
                .spawn_scoped(s, || {
                    guarded(|| {
                        let mut fields = Vec::new();
                        let mut customer = Some(Vec::new());
                        let mut order = Some(Vec::new());
                        let mut event = Some(Vec::new());
                        let mut window = None;
                        if let Ok(tree) = env().parser().parse(source) {
                            if depth(&tree, 0) > MAX_DEPTH {
                                return Err(format!(
                                    "the condition nests more than {MAX_DEPTH} levels deep \
                                     (a long chain of operators, or calls and lists within each other)"
                                ));
                            }
                            field_paths(&tree, &mut fields);
                            selected_fields(&tree, "customer", &mut customer);
                            selected_fields(&tree, "order", &mut order);
                            selected_fields(&tree, "event", &mut event);
                            window = Window::of(&tree);
                            // Leave out what a has() in the condition tests.
                            let tested: Vec<String> = fields
                                .iter()
                                .filter_map(|f| f.strip_prefix("has:").map(str::to_string))
                                .collect();
                            fields.retain(|f| {
                                !f.starts_with("has:")
                                    && !tested.iter().any(|t| {
                                        f == t || f.starts_with(&format!("{t}."))
                                    })
                            });
                        }
                        let selected = [customer, order, event];
                        Ok((env().compile(source), fields, selected, window))
                    })
                })
                .map_err(|e| format!("cannot start the compiler thread: {e}"))?
                .join()
                .unwrap_or_else(|_| Err("the CEL compiler failed".into()))
        })?;
        let (parsed, fields, [customer, order, event], window) = parsed;
        let customer_fields = known_fields(customer, &CUSTOMER_FIELDS);
        let order_fields = known_fields(order, &ORDER_FIELDS);
        let event_fields = known_fields(event, &EVENT_FIELDS);
        let program = parsed.map_err(|errs| {
            // The first error: the parser's later ones follow from it.
            let Some(e) = errs.errors.first() else {
                return "invalid condition".to_string();
            };
            // The parser counts lines from 1 and columns from 0.
            let (line, col) = (e.pos.0.max(1), e.pos.1.max(0) + 1);
            let msg = super::cel_words::syntax(&e.msg);
            if line == 1 {
                format!("invalid condition: {msg} (at column {col} of the expression)")
            } else {
                format!("invalid condition: {msg} (at line {line}, column {col} of the expression)")
            }
        })?;
        let refs = program.references();
        let bound = macro_variables(source);
        let unknown: Vec<&str> = refs
            .variables()
            .into_iter()
            .filter(|v| !VARIABLES.contains(v) && !bound.iter().any(|b| b == v))
            .collect();
        if let Some(v) = unknown.first() {
            let hint = match crate::diagnostic::closest(v, &VARIABLES) {
                Some(c) => format!(" (did you mean `{c}`?)"),
                None => format!(" (a text is written in quotes: \"{v}\")"),
            };
            return Err(format!(
                "unknown variable `{v}` in condition{hint}; conditions may use {}",
                VARIABLES.join(", ")
            ));
        }
        let names = refs.variables();
        let uses = VARIABLES.map(|v| names.contains(&v));
        let uses_days = refs.has_function("days");
        let uses_calendar = refs.has_function("months") || refs.has_function("years");
        Ok(Self {
            source: source.to_string(),
            program: Arc::new(program),
            uses,
            uses_days,
            uses_calendar,
            customer_fields,
            order_fields,
            event_fields,
            fields,
            window,
            line,
            col,
        })
    }

    fn run(&self, b: &Bindings, tz: Tz) -> Result<Value, String> {
        guarded(|| self.run_unguarded(b, tz))
    }

    fn run_unguarded<'a>(&self, b: &Bindings<'a>, tz: Tz) -> Result<Value, String> {
        let mut ctx = Context::with_env(env().clone());
        // Building the maps is most of an evaluation's cost: only build the
        // variables the expression names.
        let [customer, order, shipment, review, event, now] = self.uses;
        if customer {
            let fields = self.customer_fields.as_deref().unwrap_or(&CUSTOMER_FIELDS);
            ctx.add_variable_as_val("customer", customer_value(b.customer, b.facts, fields));
        }
        if order {
            let fields = self.order_fields.as_deref().unwrap_or(&ORDER_FIELDS);
            let order = b.order.map(|o| order_value(o, fields));
            ctx.add_variable_as_val("order", order.unwrap_or_else(empty));
        }
        if shipment {
            ctx.add_variable_as_val(
                "shipment",
                b.shipment.map(shipment_value).unwrap_or_else(empty),
            );
        }
        if review {
            ctx.add_variable_as_val("review", b.review.map(review_value).unwrap_or_else(empty));
        }
        if event {
            let fields = self.event_fields.as_deref().unwrap_or(&EVENT_FIELDS);
            let event = b.event.map(|e| event_value(e, fields));
            ctx.add_variable_as_val("event", event.unwrap_or_else(empty));
        }
        if now {
            ctx.add_variable_as_val("now", timestamp(b.now));
        }
        if self.uses_days {
            ctx.add_function("days", days).map_err(|e| e.to_string())?;
        }
        if self.uses_calendar {
            let now = b.now;
            ctx.add_function("months", move |n: i64| {
                calendar("months", n, Some(n), now, tz)
            })
            .map_err(|e| e.to_string())?;
            ctx.add_function("years", move |n: i64| {
                calendar("years", n, n.checked_mul(12), now, tz)
            })
            .map_err(|e| e.to_string())?;
        }
        self.program
            .execute(&ctx)
            .map_err(|e| super::cel_words::evaluation(&e.to_string(), &self.source))
    }

    /// The fields the condition reads, each as a path (`order.total`,
    /// `customer.attributes.vip`), but those a `has()` in it tests: `validate`
    /// looks each up on its own, to report every field that is not there at
    /// once (`&&` and `||` stop at the first, or drop an error when the other
    /// side decides).
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// The customers the condition may hold for at `now`, as a range of one
    /// of their time facts; `None` when it may hold for anyone (its
    /// top-level `&&` bounds no time fact).
    pub fn range_at(&self, now: DateTime<Utc>) -> Option<FactRange> {
        self.window.as_ref().map(|w| w.at(now))
    }

    /// The condition itself at `now`, as a range of one time fact, when
    /// that is all it says: a `has()` of the fact and bounds on it, nothing
    /// else (win-back's `when`). Within the range it is true, outside it
    /// false, so a caller may test the range instead of evaluating. `None`
    /// when it says more, when it does not test `has()` (a customer without
    /// the fact is an error then, not false), or when a bound falls outside
    /// the years CEL has at `now` (an error there too).
    pub fn exact_range_at(&self, now: DateTime<Utc>) -> Option<FactRange> {
        let w = self.window.as_ref().filter(|w| w.whole && w.present)?;
        let range = w.at(now);
        let kept = |asked: Bound<TimeDelta>, got: Bound<DateTime<Utc>>| {
            matches!(asked, Bound::Unbounded) || !matches!(got, Bound::Unbounded)
        };
        (kept(w.from, range.from) && kept(w.to, range.to)).then_some(range)
    }

    /// Whether the condition names `variable` (one of [`VARIABLES`]).
    pub fn names(&self, variable: &str) -> bool {
        VARIABLES
            .iter()
            .zip(self.uses)
            .any(|(v, used)| *v == variable && used)
    }

    /// Evaluates, whatever the type of the result.
    pub fn eval_any(&self, b: &Bindings) -> Result<(), String> {
        self.run(b, Self::zone_of(b)).map(|_| ())
    }

    /// The zone `months(n)` and `years(n)` count in when the caller knows
    /// no default: the customer's, else UTC.
    fn zone_of(b: &Bindings) -> Tz {
        b.customer.timezone.unwrap_or(Tz::UTC)
    }

    /// [`Condition::eval_bool_in`] in the customer's time zone, or UTC.
    pub fn eval_bool(&self, b: &Bindings) -> Result<bool, String> {
        self.eval_bool_in(b, Self::zone_of(b))
    }

    /// The condition's value, true or false; `months(n)` and `years(n)`
    /// count in `tz` (the customer's time zone, or the policies' default).
    pub fn eval_bool_in(&self, b: &Bindings, tz: Tz) -> Result<bool, String> {
        match self.run(b, tz)? {
            Value::Bool(v) => Ok(v),
            other => Err(super::cel_words::not_true_or_false(
                &self.source,
                &format!("{:?}", other.type_of()),
            )),
        }
    }

    /// [`Condition::eval_timestamp_in`] in the customer's time zone, or UTC.
    pub fn eval_timestamp(&self, b: &Bindings) -> Result<DateTime<Utc>, String> {
        self.eval_timestamp_in(b, Self::zone_of(b))
    }

    /// A time, within the years 1970 to 9999; `months(n)` and `years(n)`
    /// count in `tz`.
    pub fn eval_timestamp_in(&self, b: &Bindings, tz: Tz) -> Result<DateTime<Utc>, String> {
        match self.run(b, tz)? {
            Value::Timestamp(t) if YEARS.contains(&t.year()) => Ok(t.with_timezone(&Utc)),
            Value::Timestamp(t) => Err(format!(
                "`{}` gave {}, outside the years {}-{}",
                self.source,
                t.to_rfc3339(),
                YEARS.start(),
                YEARS.end()
            )),
            other => Err(format!(
                "`{}` gives {}, not a timestamp (such as `order.placed_at + days(7)`)",
                self.source,
                super::cel_words::kind(&format!("{:?}", other.type_of()))
            )),
        }
    }
}

/// Names bound by comprehension macros (`items.exists(i, ...)` binds `i`):
/// they are variables inside the macro, not references to the context.
fn macro_variables(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for m in ["all(", "exists(", "exists_one(", "map(", "filter("] {
        let mut rest = source;
        while let Some(pos) = rest.find(m) {
            let after = &rest[pos + m.len()..];
            if let Some((name, _)) = after.split_once(',') {
                let name = name.trim();
                if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    out.push(name.to_string());
                }
            }
            rest = after;
        }
    }
    out
}

// The variables are built as CEL values that borrow from the event data:
// no string is copied, and nothing is converted twice.

type Dyn<'a> = Box<dyn Val + 'a>;

fn empty<'a>() -> Dyn<'a> {
    Box::new(CelMap::from(HashMap::new()))
}

fn str_val(s: &str) -> Dyn<'_> {
    Box::new(CelString::from(s))
}

fn timestamp<'a>(t: DateTime<Utc>) -> Dyn<'a> {
    Box::new(CelTimestamp::from(t.fixed_offset()))
}

fn money<'a>(m: Money) -> Dyn<'a> {
    Box::new(CelDouble::from(m.0.to_f64().unwrap_or(f64::NAN)))
}

fn int<'a>(i: i64) -> Dyn<'a> {
    Box::new(CelInt::from(i))
}

struct Obj<'a>(HashMap<CelMapKey<'a>, Dyn<'a>>);

impl<'a> Obj<'a> {
    fn new() -> Self {
        Self(HashMap::with_capacity(8))
    }
    fn set(&mut self, k: &'a str, v: Dyn<'a>) -> &mut Self {
        self.0.insert(CelMapKey::String(CelString::from(k)), v);
        self
    }
    fn opt(&mut self, k: &'a str, v: Option<Dyn<'a>>) -> &mut Self {
        if let Some(v) = v {
            self.set(k, v);
        }
        self
    }
    fn done(&mut self) -> Dyn<'a> {
        Box::new(CelMap::from(std::mem::take(&mut self.0)))
    }
}

fn string(s: &Option<String>) -> Option<Dyn<'_>> {
    s.as_deref().map(str_val)
}

fn json(v: &serde_json::Value) -> Dyn<'_> {
    match v {
        serde_json::Value::Null => Box::new(CelNull),
        serde_json::Value::Bool(b) => Box::new(CelBool::from(*b)),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => int(i),
            None => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        },
        serde_json::Value::String(s) => str_val(s),
        serde_json::Value::Array(a) => {
            Box::new(CelList::from(a.iter().map(json).collect::<Vec<_>>()))
        }
        serde_json::Value::Object(o) => json_map(o),
    }
}

fn json_map(o: &serde_json::Map<String, serde_json::Value>) -> Dyn<'_> {
    let mut m = Obj::new();
    for (k, v) in o {
        m.set(k, json(v));
    }
    m.done()
}

fn list_of_strings(v: &[String]) -> Dyn<'_> {
    Box::new(CelList::from(
        v.iter().map(|s| str_val(s)).collect::<Vec<_>>(),
    ))
}

/// The fields of `customer`: the event's, then the facts. Counts are
/// always there (0 for a new customer), times and amounts only once known,
/// so `has(customer.last_order_at)` tells whether the customer ever ordered.
pub(crate) const CUSTOMER_FIELDS: [&str; 18] = [
    "id",
    "email",
    "first_name",
    "locale",
    "timezone",
    "marketing_consent",
    "tags",
    "attributes",
    "orders_count",
    "reviews_count",
    "first_order_at",
    "last_order_at",
    "last_order_id",
    "total_spent",
    "total_spent_currency",
    "last_review_at",
    "last_rating",
    "last_email_at",
];

/// `customer` with the `fields` named (of [`CUSTOMER_FIELDS`]) that are set.
fn customer_value<'a>(c: &'a Customer, facts: Option<&'a Facts>, fields: &[&'a str]) -> Dyn<'a> {
    object_of(fields, |name| customer_field(c, facts, name))
}

/// A map of the `fields` named, each as `field` gives it (absent: `None`).
fn object_of<'a>(fields: &[&'a str], field: impl Fn(&str) -> Option<Dyn<'a>>) -> Dyn<'a> {
    let mut m = Obj::new();
    for &name in fields {
        m.opt(name, field(name));
    }
    m.done()
}

fn customer_field<'a>(c: &'a Customer, facts: Option<&'a Facts>, name: &str) -> Option<Dyn<'a>> {
    let fact = |f: fn(&'a Facts) -> Option<Dyn<'a>>| facts.and_then(f);
    match name {
        "id" => Some(str_val(&c.id)),
        "email" => Some(str_val(c.email.as_str())),
        "first_name" => string(&c.first_name),
        "locale" => string(&c.locale),
        "timezone" => c.timezone.map(|t| str_val(t.name())),
        "marketing_consent" => Some(Box::new(CelBool::from(
            c.marketing_consent.unwrap_or(false),
        ))),
        "tags" => Some(list_of_strings(&c.tags)),
        "attributes" => Some(json_map(&c.attributes)),
        "orders_count" => Some(int(facts.map_or(0, |f| f.orders_count.into()))),
        "reviews_count" => Some(int(facts.map_or(0, |f| f.reviews_count.into()))),
        "first_order_at" => fact(|f| f.first_order_at.map(timestamp)),
        "last_order_at" => fact(|f| f.last_order_at.map(timestamp)),
        "last_order_id" => fact(|f| string(&f.last_order_id)),
        "total_spent" => fact(|f| f.total_spent.map(money)),
        "total_spent_currency" => fact(|f| string(&f.total_spent_currency)),
        "last_review_at" => fact(|f| f.last_review_at.map(timestamp)),
        "last_rating" => fact(|f| f.last_rating.map(|r| int(r.into()))),
        "last_email_at" => fact(|f| f.last_email_at.map(timestamp)),
        _ => None,
    }
}

fn item_value(i: &Item) -> Dyn<'_> {
    Obj::new()
        .set("sku", str_val(&i.sku))
        .opt("name", string(&i.name))
        .opt("category", string(&i.category))
        .set("quantity", int(i64::from(i.quantity)))
        .opt("unit_price", i.unit_price.map(money))
        .opt(
            "replenish_every_days",
            i.replenish_every_days.map(|d| int(d.into())),
        )
        .done()
}

/// The fields of `order`, in the order they are built (and named in
/// messages, `cel_words`).
pub(crate) const ORDER_FIELDS: [&str; 7] = [
    "id",
    "number",
    "placed_at",
    "currency",
    "total",
    "items",
    "replenish_every_days",
];

/// `order` with the `fields` named (of [`ORDER_FIELDS`]) that are set: its
/// items, a map each, only when read.
fn order_value<'a>(o: &'a Order, fields: &[&'a str]) -> Dyn<'a> {
    object_of(fields, |name| match name {
        "id" => Some(str_val(&o.id)),
        "number" => string(&o.number),
        "placed_at" => o.placed_at.map(timestamp),
        "currency" => string(&o.currency),
        "total" => o.total.map(money),
        "items" => Some(Box::new(CelList::from(
            o.items.iter().map(item_value).collect::<Vec<_>>(),
        )) as Dyn<'a>),
        "replenish_every_days" => o.replenish_every_days().map(|d| int(d.into())),
        _ => None,
    })
}

fn shipment_value(s: &Shipment) -> Dyn<'_> {
    Obj::new()
        .set("id", str_val(&s.id))
        .opt("carrier", string(&s.carrier))
        .opt("tracking_number", string(&s.tracking_number))
        .opt("tracking_url", string(&s.tracking_url))
        .done()
}

fn review_value(r: &Review) -> Dyn<'_> {
    Obj::new()
        .opt("rating", r.rating.map(|v| int(v.into())))
        .done()
}

/// The fields of `event`, in the order they are built (and named in
/// messages, `cel_words`).
pub(crate) const EVENT_FIELDS: [&str; 8] = [
    "id",
    "type",
    "occurred_at",
    "customer",
    "order",
    "shipment",
    "review",
    "data",
];

/// `event` with the `fields` named (of [`EVENT_FIELDS`]) that are set; what
/// it carries (its customer, order, ...) whole.
fn event_value<'a>(e: &'a Event, fields: &[&'a str]) -> Dyn<'a> {
    object_of(fields, |name| match name {
        "id" => Some(str_val(&e.id)),
        "type" => Some(str_val(&e.kind)),
        "occurred_at" => Some(timestamp(e.occurred_at)),
        "customer" => Some(customer_value(&e.customer, None, &CUSTOMER_FIELDS)),
        "order" => e.order.as_ref().map(|o| order_value(o, &ORDER_FIELDS)),
        "shipment" => e.shipment.as_ref().map(shipment_value),
        "review" => e.review.as_ref().map(review_value),
        "data" => Some(json_map(&e.data)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event::parse(
            r#"{"id":"e1","type":"order.placed","occurred_at":"2026-11-20T10:00:00Z",
            "customer":{"id":"c1","email":"a@b.example","tags":["vip"],"attributes":{"birthday":"1990-04-02"}},
            "order":{"id":"o1","placed_at":"2026-11-20T10:00:00Z","currency":"EUR","total":"129.90",
              "items":[{"sku":"CAM","category":"camera","unit_price":"129.90"},{"sku":"COF","replenish_every_days":30}]}}"#,
        )
        .unwrap()
    }

    fn eval(src: &str) -> Result<bool, String> {
        let e = event();
        let b = Bindings {
            customer: &e.customer,
            facts: None,
            order: e.order.as_ref(),
            shipment: None,
            review: None,
            event: Some(&e),
            now: "2026-11-21T00:00:00Z".parse().unwrap(),
        };
        Condition::compile(src, 1, 1)?.eval_bool(&b)
    }

    #[test]
    fn money_is_a_double_and_fields_are_reachable() {
        assert_eq!(eval("order.total > 100.0"), Ok(true));
        assert_eq!(
            eval(r#"order.items.exists(i, i.category == "camera")"#),
            Ok(true)
        );
        assert_eq!(eval(r#""vip" in customer.tags"#), Ok(true));
        assert_eq!(
            eval(r#"customer.attributes.birthday == "1990-04-02""#),
            Ok(true)
        );
        assert_eq!(eval(r#"event.type == "order.placed""#), Ok(true));
        assert_eq!(eval("has(shipment.id)"), Ok(false));
        assert_eq!(eval("order.replenish_every_days == 30"), Ok(true));
    }

    /// What a time trigger's `when` sees: the customer and their facts.
    fn of_customer<'a>(c: &'a Customer, facts: &'a Facts, now: DateTime<Utc>) -> Bindings<'a> {
        Bindings {
            customer: c,
            facts: Some(facts),
            order: None,
            shipment: None,
            review: None,
            event: None,
            now,
        }
    }

    fn range(src: &str, now: DateTime<Utc>) -> Option<FactRange> {
        Condition::compile(src, 1, 1).unwrap().range_at(now)
    }

    #[test]
    fn a_window_is_read_off_the_top_level_and() {
        use Bound::{Excluded, Included, Unbounded};
        let now: DateTime<Utc> = "2026-11-21T09:00:00Z".parse().unwrap();
        let ago = |d: i64| now - TimeDelta::days(d);
        let r = |fact, from, to, present| {
            Some(FactRange {
                fact,
                from,
                to,
                present,
            })
        };
        let cases = [
            (
                "has(customer.last_order_at) && now - customer.last_order_at > days(90) \
                 && now - customer.last_order_at <= days(120)",
                r(
                    TimeFact::LastOrderAt,
                    Included(ago(120)),
                    Excluded(ago(90)),
                    true,
                ),
            ),
            (
                "customer.first_order_at <= now - days(30)",
                r(TimeFact::FirstOrderAt, Unbounded, Included(ago(30)), false),
            ),
            (
                "now - days(7) < customer.last_review_at",
                r(TimeFact::LastReviewAt, Excluded(ago(7)), Unbounded, false),
            ),
            (
                "days(30) >= now - customer.last_order_at && customer.orders_count > 1",
                r(TimeFact::LastOrderAt, Included(ago(30)), Unbounded, false),
            ),
            (
                "customer.last_email_at < now",
                r(TimeFact::LastEmailAt, Unbounded, Excluded(now), false),
            ),
            (
                "has(customer.last_review_at) && customer.orders_count > 1",
                r(TimeFact::LastReviewAt, Unbounded, Unbounded, true),
            ),
            // The tighter of two bounds; at one offset the excluded one.
            (
                "customer.last_order_at < now - days(10) && customer.last_order_at <= now - days(20)",
                r(TimeFact::LastOrderAt, Unbounded, Included(ago(20)), false),
            ),
            (
                "customer.last_order_at <= now - days(10) && customer.last_order_at < now - days(10)",
                r(TimeFact::LastOrderAt, Unbounded, Excluded(ago(10)), false),
            ),
            // Beyond year 1 `now - days(n)` is an error, not false: no bound.
            (
                "customer.last_order_at > now - days(3652000)",
                r(TimeFact::LastOrderAt, Unbounded, Unbounded, false),
            ),
            // Nothing that holds the fact in: no window.
            ("customer.orders_count > 1", None),
            (
                "now - customer.last_order_at > days(90) || customer.orders_count > 5",
                None,
            ),
            ("!(now - customer.last_order_at > days(90))", None),
            (
                "now - customer.last_order_at > days(customer.orders_count)",
                None,
            ),
            ("now - customer.last_order_at > duration('2160h')", None),
            ("customer.last_order_id == 'o1'", None),
        ];
        for (src, want) in cases {
            assert_eq!(range(src, now), want, "{src}");
        }
    }

    /// Outside its window a condition is false, whatever the fact is:
    /// asked of facts on and around every bound.
    #[test]
    fn outside_its_window_a_condition_is_false() {
        let now: DateTime<Utc> = "2026-11-21T09:00:00Z".parse().unwrap();
        let e = event();
        let conditions = [
            "has(customer.last_order_at) && now - customer.last_order_at > days(90) \
             && now - customer.last_order_at <= days(120)",
            "now - customer.last_order_at >= days(90) && days(120) > now - customer.last_order_at",
            "customer.last_order_at < now - days(3) && customer.last_order_at >= now - days(5)",
            "now > customer.last_order_at && now - days(1) <= customer.last_order_at",
            "customer.last_order_at <= now && customer.orders_count > 0",
        ];
        let mut times = vec![None];
        for d in [0, 1, 3, 5, 90, 120, 200] {
            for fine in [-1_000_000_000, -1, 0, 1, 1_000_000_000] {
                times.push(Some(
                    now - TimeDelta::days(d) + TimeDelta::nanoseconds(fine),
                ));
            }
        }
        for src in conditions {
            let range = range(src, now).expect(src);
            let c = Condition::compile(src, 1, 1).unwrap();
            let mut inside = 0;
            for at in &times {
                let facts = Facts {
                    orders_count: 1,
                    last_order_at: *at,
                    ..Default::default()
                };
                let got = c.eval_bool(&of_customer(&e.customer, &facts, now));
                if range.holds(&facts) {
                    inside += 1;
                } else {
                    assert_eq!(got, Ok(false), "{src} at {at:?}");
                }
            }
            assert!(inside > 0, "{src}: some facts are inside");
        }
    }

    /// A condition that is nothing but its window (with `has()`) is its
    /// range: the range answers as the evaluation does, on and around every
    /// bound and without the fact. Any other condition has no exact range.
    #[test]
    fn a_condition_that_is_only_its_window_is_its_range() {
        let now: DateTime<Utc> = "2026-11-21T09:00:00Z".parse().unwrap();
        let e = event();
        let whole = [
            "has(customer.last_order_at) && now - customer.last_order_at > days(90) \
             && now - customer.last_order_at <= days(120)",
            "now - customer.last_order_at >= days(90) && has(customer.last_order_at) \
             && days(120) > now - customer.last_order_at",
            "has(customer.last_order_at) && customer.last_order_at < now - days(3) \
             && customer.last_order_at >= now - days(5)",
            "has(customer.last_order_at) && now > customer.last_order_at",
            "has(customer.last_order_at)",
        ];
        let mut times = vec![None];
        for d in [-1, 0, 1, 3, 5, 90, 120, 200] {
            for fine in [-1_000_000_000, -1, 0, 1, 1_000_000_000] {
                times.push(Some(
                    now - TimeDelta::days(d) + TimeDelta::nanoseconds(fine),
                ));
            }
        }
        for src in whole {
            let c = Condition::compile(src, 1, 1).unwrap();
            let range = c.exact_range_at(now).expect(src);
            let (mut yes, mut no) = (0, 0);
            for at in &times {
                let facts = Facts {
                    orders_count: 1,
                    last_order_at: *at,
                    ..Default::default()
                };
                let got = c.eval_bool(&of_customer(&e.customer, &facts, now));
                assert_eq!(Ok(range.holds(&facts)), got, "{src} at {at:?}");
                match got {
                    Ok(true) => yes += 1,
                    _ => no += 1,
                }
            }
            assert!(yes > 0 && no > 0, "{src}: both answers asked");
        }
        let not_whole = [
            // Without `has()` a customer without the fact is an error.
            "now - customer.last_order_at > days(90)",
            "has(customer.last_order_at) && now - customer.last_order_at > days(90) \
             && customer.marketing_consent",
            "has(customer.last_order_at) && now - customer.first_order_at > days(90)",
            "has(customer.first_order_at) && now - customer.last_order_at > days(90)",
            "has(customer.last_order_at) && now - customer.last_order_at > months(3)",
            "has(customer.last_order_at) && (now - customer.last_order_at > days(90) \
             || customer.orders_count > 5)",
            // Beyond year 1 `now - days(n)` is an error, not false.
            "has(customer.last_order_at) && customer.last_order_at > now - days(3652000)",
            "customer.orders_count > 1",
        ];
        for src in not_whole {
            let c = Condition::compile(src, 1, 1).unwrap();
            assert_eq!(c.exact_range_at(now), None, "{src}");
        }
    }

    #[test]
    fn only_the_customer_fields_named_are_built_and_whole_use_builds_all() {
        let c = |src: &str| Condition::compile(src, 1, 1).unwrap().customer_fields;
        assert_eq!(
            c("has(customer.last_order_at) && customer.orders_count > 1 && customer.nope == 1"),
            Some(vec!["orders_count", "last_order_at"])
        );
        assert_eq!(
            c("customer.attributes.vip == true"),
            Some(vec!["attributes"])
        );
        assert_eq!(c(r#"customer["email"] == "a@b.example""#), None);
        assert_eq!(c("[customer].size() == 1"), None);
        // Every fact is a field of `customer`.
        for name in crate::engine::facts::NAMES {
            assert!(CUSTOMER_FIELDS.contains(&name), "{name}");
        }
        // Narrowed or whole, the same answers.
        let e = event();
        let facts = Facts {
            orders_count: 2,
            last_order_at: Some("2026-08-01T00:00:00Z".parse().unwrap()),
            ..Default::default()
        };
        let b = of_customer(&e.customer, &facts, "2026-11-21T00:00:00Z".parse().unwrap());
        for (src, want) in [
            ("now - customer.last_order_at > days(90)", Ok(true)),
            ("has(customer.last_review_at)", Ok(false)),
            (
                "customer.orders_count == 2 && customer.email == 'a@b.example'",
                Ok(true),
            ),
            (r#"customer["orders_count"] == 2"#, Ok(true)),
        ] {
            assert_eq!(
                Condition::compile(src, 1, 1).unwrap().eval_bool(&b),
                want,
                "{src}"
            );
        }
        assert!(
            Condition::compile("customer.nope == 1", 1, 1)
                .unwrap()
                .eval_bool(&b)
                .is_err()
        );
    }

    /// `order` and `event` are built with only the fields a condition
    /// selects, and answer as the whole ones do: every condition of the
    /// shipped sequences that reads them, and uses the pruning cannot see
    /// into, against the same condition evaluated with everything built.
    #[test]
    fn only_the_order_and_event_fields_named_are_built_with_the_same_answers() {
        let c = |src: &str| {
            let c = Condition::compile(src, 1, 1).unwrap();
            (c.order_fields, c.event_fields)
        };
        assert_eq!(
            c(
                "has(order.replenish_every_days) && order.replenish_every_days >= 14 \
               && has(order.placed_at)"
            ),
            (
                Some(vec!["placed_at", "replenish_every_days"]),
                Some(vec![])
            )
        );
        assert_eq!(
            c("has(event.order) && event.order.id != order.id"),
            (Some(vec!["id"]), Some(vec!["order"]))
        );
        assert_eq!(c("order.nope == 1 && event.type == 'x'").0, Some(vec![]));
        assert_eq!(c(r#"order["items"].size() > 0"#).0, None);
        assert_eq!(c("[event].size() == 1").1, None);
        let mut e = event();
        let other = event();
        e.review = Some(crate::event::Review { rating: Some(4) });
        let b = Bindings {
            customer: &e.customer,
            facts: None,
            order: other.order.as_ref(),
            shipment: None,
            review: None,
            event: Some(&e),
            now: "2026-11-21T00:00:00Z".parse().unwrap(),
        };
        let conditions = [
            r#"order.items.exists(i, has(i.category) && i.category == "camera")"#,
            "has(order.replenish_every_days) && order.replenish_every_days >= 14 \
             && has(order.placed_at)",
            "has(event.order) && event.order.id != order.id",
            "has(event.order) && event.order.id != order.id && event.order.items.exists(i, \
             has(i.category) && i.category == 'boots')",
            "order.total > 100.0 && order.currency == 'EUR' && has(order.number)",
            "event.type == 'order.placed' && event.customer.email == 'a@b.example' \
             && event.review.rating == 4 && event.occurred_at < now && event.id == 'e1'",
            r#"order["total"] > 100.0 && event["order"]["id"] == "o1""#,
            "order.nope == 1",
            "event.nope == 1",
            "has(event.shipment)",
        ];
        for src in conditions {
            let pruned = Condition::compile(src, 1, 1).unwrap();
            let whole = Condition {
                order_fields: None,
                event_fields: None,
                customer_fields: None,
                ..Condition::compile(src, 1, 1).unwrap()
            };
            let (got, want) = (pruned.eval_bool(&b), whole.eval_bool(&b));
            assert_eq!(got.is_ok(), want.is_ok(), "{src}: {got:?} against {want:?}");
            if want.is_ok() {
                assert_eq!(got, want, "{src}");
            }
        }
    }

    #[test]
    fn timestamps_and_days_compose() {
        assert_eq!(eval("order.placed_at + days(1) > now"), Ok(true));
        assert_eq!(eval("order.placed_at + duration('12h') > now"), Ok(false));
        let e = event();
        let b = Bindings {
            customer: &e.customer,
            facts: None,
            order: e.order.as_ref(),
            shipment: None,
            review: None,
            event: None,
            now: Utc::now(),
        };
        let c = Condition::compile(
            "order.placed_at + days(order.replenish_every_days - 7)",
            1,
            1,
        )
        .unwrap();
        assert_eq!(
            c.eval_timestamp(&b).unwrap(),
            "2026-12-13T10:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    /// Issue 7: what panicked inside the CEL library is an error, the
    /// silence lasts only as long as the call, and `days` and `wait_until`
    /// stay within the calendar.
    #[test]
    fn panics_inside_cel_are_errors_and_only_those_are_silenced() {
        let e = event();
        let b = Bindings {
            customer: &e.customer,
            facts: None,
            order: e.order.as_ref(),
            shipment: None,
            review: None,
            event: None,
            now: "2026-11-21T00:00:00Z".parse().unwrap(),
        };
        let err = guarded::<()>(|| panic!("boom")).unwrap_err();
        assert!(err.ends_with("the CEL library failed: boom"), "{err}");
        assert!(!IN_CEL.with(Cell::get), "other panics are reported again");

        let huge = Condition::compile("now + days(200000000000)", 1, 1).unwrap();
        let err = huge.eval_timestamp(&b).unwrap_err();
        assert!(err.contains("200000000000 days is out of range"), "{err}");
        let reorder = Condition::compile(
            "order.placed_at + days(order.replenish_every_days - 7)",
            1,
            1,
        )
        .unwrap();
        let mut big = e.order.clone().unwrap();
        big.items[1].replenish_every_days = Some(100_000_000);
        let err = reorder
            .eval_timestamp(&Bindings {
                order: Some(&big),
                ..b
            })
            .unwrap_err();
        assert!(err.contains("out of range"), "{err}");
        // Within CEL's range (years 1-9999) but not a time to wait for.
        let early = Condition::compile("timestamp('1900-01-01T00:00:00Z')", 1, 1).unwrap();
        let err = early.eval_timestamp(&b).unwrap_err();
        assert!(err.contains("outside the years 1970-9999"), "{err}");
        let late = Condition::compile("now + days(2900000)", 1, 1).unwrap();
        assert_eq!(late.eval_timestamp(&b).unwrap().year(), 9966);
    }

    /// Deep expressions overflowed the stack (an abort, not a panic) in the
    /// parser or in an evaluation. They are refused when they load, and what
    /// is allowed evaluates on a small stack (this test thread's 2 MiB).
    #[test]
    fn deep_expressions_are_refused_not_a_stack_overflow() {
        for (src, want) in [
            (
                format!("{}1{} > 0", "(".repeat(2100), ")".repeat(2100)),
                "bytes long",
            ),
            (format!("{}1{} > 0", "(".repeat(1000), ")".repeat(1000)), ""),
            (format!("1{} > 0", " + 1".repeat(1000)), "nests"),
            (
                format!("{}1{} == 1", "[".repeat(40), "]".repeat(40)),
                "nests",
            ),
            (format!("customer{} == 1", ".a".repeat(1500)), "nests"),
            (format!("{}1 > 0", "(".repeat(500)), ""),
        ] {
            let err = Condition::compile(&src, 1, 1).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
        let deepest = format!("1{} > 0", " + 1".repeat(MAX_DEPTH - 2));
        assert_eq!(eval(&deepest), Ok(true));
        let list = format!(
            "{}1{} != []",
            "[".repeat(MAX_DEPTH - 2),
            "]".repeat(MAX_DEPTH - 2)
        );
        assert_eq!(eval(&list), Ok(true));
        let parens = format!("{}order.total{} > 100.0", "(".repeat(90), ")".repeat(90));
        assert_eq!(eval(&parens), Ok(true));
    }

    /// `months(n)` and `years(n)`: the n calendar months (years) that end
    /// at `now` in the customer's time zone, across month ends and DST.
    #[test]
    fn months_and_years_are_calendar_lengths_ending_now() {
        use chrono_tz::America::New_York;
        use chrono_tz::Asia::Bangkok;
        use chrono_tz::Europe::Budapest;
        let e = event();
        let at = |now: &str| Bindings {
            customer: &e.customer,
            facts: None,
            order: None,
            shipment: None,
            review: None,
            event: None,
            now: now.parse().unwrap(),
        };
        let value = |src: &str, b: &Bindings, tz: Tz| {
            Condition::compile(src, 1, 1)
                .unwrap()
                .eval_bool_in(b, tz)
                .unwrap_or_else(|e| panic!("{src}: {e}"))
        };
        // Budapest, 2026-03-31 10:00 CEST: a month ago is Feb 28 10:00 CET
        // (clamped), 31 days less the hour of the spring change.
        let b = at("2026-03-31T08:00:00Z");
        assert!(value("months(1) == duration('743h')", &b, Budapest));
        assert!(value(
            "now - months(1) == timestamp('2026-02-28T09:00:00Z')",
            &b,
            Budapest
        ));
        assert!(value("months(1) == duration('744h')", &b, Tz::UTC));
        assert!(value("months(-1) == duration('-743h')", &b, Budapest));
        assert!(value("now + months(-1) == now - months(1)", &b, Budapest));
        assert!(value("months(0) == duration('0s')", &b, Budapest));
        // New York, 2026-11-20 10:00 EST: back to Oct 20 10:00 EDT.
        let b = at("2026-11-20T15:00:00Z");
        assert!(value("months(1) == duration('745h')", &b, New_York));
        assert!(value(
            "now - months(3) == timestamp('2026-08-20T14:00:00Z')",
            &b,
            New_York
        ));
        // Bangkok, 2026-03-01 00:30 local (Feb 28 in UTC): the local month
        // before is February (28 days); in UTC, Jan 28 to Feb 28 (31 days).
        let b = at("2026-02-28T17:30:00Z");
        assert!(value("months(1) == days(28)", &b, Bangkok));
        assert!(value("months(1) == days(31)", &b, Tz::UTC));
        // A year back from Feb 29 is Feb 28: 366 days.
        let b = at("2028-02-29T12:00:00Z");
        assert!(value("years(1) == days(366)", &b, Tz::UTC));
        assert!(value("years(2) == months(24)", &b, Budapest));
        assert!(value(
            "years(-1) == duration('0s') - years(1)",
            &b,
            Budapest
        ));

        // Without a default, the customer's zone, else UTC.
        let mut customer = e.customer.clone();
        customer.timezone = Some(Bangkok);
        let b = Bindings {
            customer: &customer,
            ..at("2026-02-28T17:30:00Z")
        };
        let c = Condition::compile("months(1) == days(28)", 1, 1).unwrap();
        assert_eq!(c.eval_bool(&b), Ok(true));
        assert_eq!(c.eval_bool(&at("2026-02-28T17:30:00Z")), Ok(false));
    }

    #[test]
    fn more_than_three_calendar_months_ago() {
        let e = event();
        let facts = |last: &str| Facts {
            orders_count: 1,
            last_order_at: Some(last.parse().unwrap()),
            ..Facts::default()
        };
        let c = Condition::compile("now - customer.last_order_at > months(3)", 1, 1).unwrap();
        let check = |last: &str| {
            let f = facts(last);
            let b = Bindings {
                customer: &e.customer,
                facts: Some(&f),
                order: None,
                shipment: None,
                review: None,
                event: None,
                // 10:00 in Budapest on May 31.
                now: "2026-05-31T08:00:00Z".parse().unwrap(),
            };
            c.eval_bool_in(&b, chrono_tz::Europe::Budapest).unwrap()
        };
        // Three months before May 31 10:00 is Feb 28 10:00 (09:00Z, CET).
        assert!(!check("2026-02-28T09:00:00Z"), "exactly three months");
        assert!(check("2026-02-28T08:59:59Z"));
        assert!(!check("2026-03-01T00:00:00Z"));
    }

    #[test]
    fn months_and_years_out_of_range_are_errors() {
        for (src, want) in [
            (
                "now - months(120001) < now",
                "120001 months is out of range (at most 120000 either way)",
            ),
            (
                "now - years(10001) < now",
                "10001 years is out of range (at most 10000 either way)",
            ),
            (
                "months(-9223372036854775807 - 1) < duration('0s')",
                "out of range",
            ),
            (
                "years(9223372036854775807) > duration('0s')",
                "out of range",
            ),
            ("now - years(10000) < now", ""),
        ] {
            let err = eval(src).unwrap_err();
            assert!(err.contains(want), "{src}: {err}");
        }
        assert_eq!(eval("now - years(100) < now"), Ok(true));
        assert_eq!(eval("now - months(1200) < now"), Ok(true));
    }

    #[test]
    fn bad_conditions_are_errors_not_panics() {
        assert!(Condition::compile("order.total >", 1, 1).is_err());
        let e = Condition::compile("oder.total > 1.0", 1, 1).unwrap_err();
        assert!(e.contains("unknown variable `oder`"), "{e}");
        assert!(eval("order.nope > 1.0").is_err());
        assert!(eval("order.total").is_err());
    }
}
