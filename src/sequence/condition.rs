//! CEL conditions over the customer, the order, the shipment, the review, the
//! event being matched and `now`.
//!
//! Money is a double and timestamps are CEL timestamps. Absent fields are
//! absent from the maps, so `has(order.total)` tells whether a field is set.
//! Two additions: `days(n)` is a duration of n days, and
//! `order.replenish_every_days` is the smallest interval among the items.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use cel::objects::{Key, Map};
use cel::{Context, Env, Program, Value};
use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::prelude::ToPrimitive;

use crate::event::{Customer, Event, Item, Money, Order, Review, Shipment};

/// The variables a condition may name.
pub const VARIABLES: &[&str] = &["customer", "order", "shipment", "review", "event", "now"];

#[derive(Clone)]
pub struct Condition {
    pub source: String,
    program: Arc<Program>,
    pub line: u64,
    pub col: u64,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Condition({:?})", self.source)
    }
}

fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib()))
}

/// What a condition sees.
#[derive(Debug, Clone, Copy)]
pub struct Bindings<'a> {
    pub customer: &'a Customer,
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
        let program = env().compile(source).map_err(|errs| {
            errs.errors
                .iter()
                .map(|e| {
                    // The parser counts lines from 1 and columns from 0.
                    let (line, col) = (e.pos.0.max(1), e.pos.1.max(0) + 1);
                    if line == 1 {
                        format!("invalid condition: {} (at column {col} of the expression)", e.msg)
                    } else {
                        format!(
                            "invalid condition: {} (at line {line}, column {col} of the expression)",
                            e.msg
                        )
                    }
                })
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let refs = program.references();
        let bound = macro_variables(source);
        let unknown: Vec<&str> = refs
            .variables()
            .into_iter()
            .filter(|v| !VARIABLES.contains(v) && !bound.iter().any(|b| b == v))
            .collect();
        if let Some(v) = unknown.first() {
            return Err(format!(
                "unknown variable `{v}` in condition; conditions may use {}",
                VARIABLES.join(", ")
            ));
        }
        Ok(Self {
            source: source.to_string(),
            program: Arc::new(program),
            line,
            col,
        })
    }

    fn run(&self, b: &Bindings) -> Result<Value, String> {
        let mut ctx = Context::with_env(env().clone());
        ctx.add_variable_from_value("customer", customer_value(b.customer));
        ctx.add_variable_from_value("order", b.order.map(order_value).unwrap_or_else(empty));
        ctx.add_variable_from_value(
            "shipment",
            b.shipment.map(shipment_value).unwrap_or_else(empty),
        );
        ctx.add_variable_from_value("review", b.review.map(review_value).unwrap_or_else(empty));
        ctx.add_variable_from_value("event", b.event.map(event_value).unwrap_or_else(empty));
        ctx.add_variable_from_value("now", timestamp(b.now));
        ctx.add_function("days", |n: i64| Value::Duration(TimeDelta::days(n)))
            .map_err(|e| e.to_string())?;
        self.program.execute(&ctx).map_err(|e| e.to_string())
    }

    pub fn eval_bool(&self, b: &Bindings) -> Result<bool, String> {
        match self.run(b)? {
            Value::Bool(v) => Ok(v),
            other => Err(format!(
                "condition `{}` gave {:?}, not true or false",
                self.source,
                other.type_of()
            )),
        }
    }

    pub fn eval_timestamp(&self, b: &Bindings) -> Result<DateTime<Utc>, String> {
        match self.run(b)? {
            Value::Timestamp(t) => Ok(t.with_timezone(&Utc)),
            other => Err(format!(
                "`{}` gave {:?}, not a timestamp",
                self.source,
                other.type_of()
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

fn empty() -> Value {
    Value::Map(Map {
        map: Arc::new(HashMap::new()),
    })
}

fn timestamp(t: DateTime<Utc>) -> Value {
    Value::Timestamp(t.fixed_offset())
}

fn money(m: Money) -> Value {
    Value::Float(m.0.to_f64().unwrap_or(f64::NAN))
}

struct Obj(HashMap<Key, Value>);

impl Obj {
    fn new() -> Self {
        Self(HashMap::with_capacity(8))
    }
    fn set(&mut self, k: &str, v: impl Into<Value>) -> &mut Self {
        self.0
            .insert(Key::String(Arc::new(k.to_string())), v.into());
        self
    }
    fn opt(&mut self, k: &str, v: Option<Value>) -> &mut Self {
        if let Some(v) = v {
            self.set(k, v);
        }
        self
    }
    fn done(&mut self) -> Value {
        Value::Map(Map {
            map: Arc::new(std::mem::take(&mut self.0)),
        })
    }
}

fn string(s: &Option<String>) -> Option<Value> {
    s.as_ref().map(|s| Value::String(Arc::new(s.clone())))
}

fn json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(a) => Value::List(Arc::new(a.iter().map(json).collect())),
        serde_json::Value::Object(o) => json_map(o),
    }
}

fn json_map(o: &serde_json::Map<String, serde_json::Value>) -> Value {
    let mut m = Obj::new();
    for (k, v) in o {
        m.set(k, json(v));
    }
    m.done()
}

fn list_of_strings(v: &[String]) -> Value {
    Value::List(Arc::new(
        v.iter()
            .map(|s| Value::String(Arc::new(s.clone())))
            .collect(),
    ))
}

fn customer_value(c: &Customer) -> Value {
    Obj::new()
        .set("id", c.id.as_str())
        .set("email", c.email.as_str())
        .opt("first_name", string(&c.first_name))
        .opt("locale", string(&c.locale))
        .opt("timezone", c.timezone.map(|t| Value::from(t.name())))
        .set("marketing_consent", c.marketing_consent.unwrap_or(false))
        .set("tags", list_of_strings(&c.tags))
        .set("attributes", json_map(&c.attributes))
        .done()
}

fn item_value(i: &Item) -> Value {
    Obj::new()
        .set("sku", i.sku.as_str())
        .opt("name", string(&i.name))
        .opt("category", string(&i.category))
        .set("quantity", i.quantity as i64)
        .opt("unit_price", i.unit_price.map(money))
        .opt(
            "replenish_every_days",
            i.replenish_every_days.map(|d| Value::Int(d.into())),
        )
        .done()
}

fn order_value(o: &Order) -> Value {
    Obj::new()
        .set("id", o.id.as_str())
        .opt("number", string(&o.number))
        .opt("placed_at", o.placed_at.map(timestamp))
        .opt("currency", string(&o.currency))
        .opt("total", o.total.map(money))
        .set(
            "items",
            Value::List(Arc::new(o.items.iter().map(item_value).collect())),
        )
        .opt(
            "replenish_every_days",
            o.replenish_every_days().map(|d| Value::Int(d.into())),
        )
        .done()
}

fn shipment_value(s: &Shipment) -> Value {
    Obj::new()
        .set("id", s.id.as_str())
        .opt("carrier", string(&s.carrier))
        .opt("tracking_number", string(&s.tracking_number))
        .opt("tracking_url", string(&s.tracking_url))
        .done()
}

fn review_value(r: &Review) -> Value {
    Obj::new()
        .opt("rating", r.rating.map(|v| Value::Int(v.into())))
        .done()
}

fn event_value(e: &Event) -> Value {
    Obj::new()
        .set("id", e.id.as_str())
        .set("type", e.kind.as_str())
        .set("occurred_at", timestamp(e.occurred_at))
        .set("customer", customer_value(&e.customer))
        .opt("order", e.order.as_ref().map(order_value))
        .opt("shipment", e.shipment.as_ref().map(shipment_value))
        .opt("review", e.review.as_ref().map(review_value))
        .set("data", json_map(&e.data))
        .done()
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

    #[test]
    fn timestamps_and_days_compose() {
        assert_eq!(eval("order.placed_at + days(1) > now"), Ok(true));
        assert_eq!(eval("order.placed_at + duration('12h') > now"), Ok(false));
        let e = event();
        let b = Bindings {
            customer: &e.customer,
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

    #[test]
    fn bad_conditions_are_errors_not_panics() {
        assert!(Condition::compile("order.total >", 1, 1).is_err());
        let e = Condition::compile("oder.total > 1.0", 1, 1).unwrap_err();
        assert!(e.contains("unknown variable `oder`"), "{e}");
        assert!(eval("order.nope > 1.0").is_err());
        assert!(eval("order.total").is_err());
    }
}
