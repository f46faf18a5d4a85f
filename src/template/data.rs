//! The data a template sees: the enrollment's context with every schema field
//! present (null when unknown, so strict mode catches only names that do not
//! exist), the sender, the sequence and step, the time it is rendered at
//! (`_now`, for `{{relative}}`), and the built-in sample.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::reads::Seg;
use crate::engine::facts::Facts;
use crate::engine::state::{Context, ContextView};
use crate::event::Event;
use crate::sequence::model::Policies;

/// Where an email comes from in the sequences, for the template.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub sequence: &'a str,
    pub step: &'a str,
}

/// The template data of `ctx`, rendered at `now` (the sender's clock; the
/// event's time in a preview of an event).
pub fn build(
    ctx: ContextView<'_>,
    policies: &Policies,
    origin: Origin,
    now: DateTime<Utc>,
) -> Value {
    build_for(ctx, policies, origin, now, &Needs::all())
}

/// What of the data a template reads ([`Templates::needs`]): the top-level
/// objects `customer`, `order`, `shipment` and `review`, and of each its
/// fields, so that the sender builds only those. A field is built whole
/// (`order.items` with every item and all their fields). Every other
/// top-level key is always there: the helpers read the ones starting `_`.
///
/// [`Templates::needs`]: super::Templates::needs
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    /// `None`: everything. Else by object: `None` the whole object, else
    /// the fields read.
    only: Option<BTreeMap<String, Option<BTreeSet<String>>>>,
}

/// The objects [`Needs`] can leave out or cut down.
const PRUNED: [&str; 4] = ["customer", "order", "shipment", "review"];

impl Needs {
    /// Everything (a preview, a template whose reads the walk cannot place).
    pub const fn all() -> Self {
        Self { only: None }
    }

    /// Nothing yet: [`Needs::add`] each path read.
    pub fn nothing() -> Self {
        Self {
            only: Some(BTreeMap::new()),
        }
    }

    /// Adds a path the template reads (from the root of the data).
    pub fn add(&mut self, path: &[Seg]) {
        let Some(only) = &mut self.only else { return };
        let Some(Seg::Key(object)) = path.first() else {
            // The root itself (`{{#each this}}`): everything.
            self.only = None;
            return;
        };
        if !PRUNED.contains(&object.as_str()) {
            return;
        }
        match path.get(1) {
            Some(Seg::Key(field)) => {
                if let Some(fields) = only
                    .entry(object.clone())
                    .or_insert_with(|| Some(BTreeSet::new()))
                {
                    fields.insert(field.clone());
                }
            }
            // The object itself, or each of its values.
            _ => {
                only.insert(object.clone(), None);
            }
        }
    }

    fn wants(&self, object: &str) -> bool {
        self.only.as_ref().is_none_or(|o| o.contains_key(object))
    }

    fn wants_field(&self, object: &str, field: &str) -> bool {
        match self.only.as_ref().map(|o| o.get(object)) {
            None | Some(Some(None)) => true,
            Some(Some(Some(fields))) => fields.contains(field),
            Some(None) => false,
        }
    }

    /// Object `name` of `fields` (each made only if read), if it is read.
    fn object<const N: usize>(&self, name: &str, fields: [Field<'_>; N]) -> Option<Value> {
        if !self.wants(name) {
            return None;
        }
        let mut map = serde_json::Map::with_capacity(N);
        for (k, make) in fields {
            if self.wants_field(name, k) {
                map.insert(k.to_string(), make());
            }
        }
        Some(Value::Object(map))
    }
}

/// A field of the data and how to make its value.
type Field<'a> = (&'static str, &'a dyn Fn() -> Value);

/// As [`build`], with only what `needs` says is read.
pub fn build_for(
    ctx: ContextView<'_>,
    policies: &Policies,
    origin: Origin,
    now: DateTime<Utc>,
    needs: &Needs,
) -> Value {
    let c = ctx.customer;
    let f = ctx.facts;
    let customer = needs.object(
        "customer",
        [
            ("id", &|| Value::String(c.id.clone())),
            ("email", &|| c.email.as_str().into()),
            ("first_name", &|| c.first_name.clone().into()),
            ("locale", &|| c.locale.clone().into()),
            ("timezone", &|| c.timezone.map(|t| t.name()).into()),
            ("marketing_consent", &|| {
                c.marketing_consent.unwrap_or(false).into()
            }),
            ("tags", &|| c.tags.clone().into()),
            ("attributes", &|| Value::Object(c.attributes.clone())),
            ("orders_count", &|| value(&f.orders_count)),
            ("first_order_at", &|| value(&f.first_order_at)),
            ("last_order_at", &|| value(&f.last_order_at)),
            ("last_order_id", &|| f.last_order_id.clone().into()),
            ("total_spent", &|| value(&f.total_spent)),
            ("total_spent_currency", &|| {
                f.total_spent_currency.clone().into()
            }),
            ("reviews_count", &|| value(&f.reviews_count)),
            ("last_review_at", &|| value(&f.last_review_at)),
            ("last_rating", &|| value(&f.last_rating)),
            ("last_email_at", &|| value(&f.last_email_at)),
        ],
    );
    // Without an order (a shipment), every field is null and there are no
    // items.
    let (o, s) = (ctx.order, ctx.shipment);
    let order = needs.object(
        "order",
        [
            ("id", &|| o.map_or(Value::Null, |o| o.id.clone().into())),
            ("number", &|| o.map_or(Value::Null, |o| value(&o.number))),
            ("placed_at", &|| {
                o.map_or(Value::Null, |o| value(&o.placed_at))
            }),
            ("currency", &|| {
                o.map_or(Value::Null, |o| value(&o.currency))
            }),
            ("total", &|| o.map_or(Value::Null, |o| value(&o.total))),
            ("items", &|| {
                Value::Array(o.map_or_else(Vec::new, |o| o.items.iter().map(item).collect()))
            }),
        ],
    );
    let shipment = needs.object(
        "shipment",
        [
            ("id", &|| s.map_or(Value::Null, |s| value(&s.id))),
            ("carrier", &|| s.map_or(Value::Null, |s| value(&s.carrier))),
            ("tracking_number", &|| {
                s.map_or(Value::Null, |s| value(&s.tracking_number))
            }),
            ("tracking_url", &|| {
                s.map_or(Value::Null, |s| value(&s.tracking_url))
            }),
        ],
    );
    let review = needs.object(
        "review",
        [("rating", &|| value(&ctx.review.and_then(|r| r.rating)))],
    );
    let (name, email) = policies.sender.name_and_email();
    let mut data = serde_json::Map::with_capacity(16);
    for (k, v) in [
        ("customer", customer),
        ("order", order),
        ("shipment", shipment),
        ("review", review),
    ] {
        if let Some(v) = v {
            data.insert(k.to_string(), v);
        }
    }
    for (k, v) in [
        (
            "sender",
            object([("name", value(&name)), ("email", value(&email))], 0),
        ),
        ("sequence", origin.sequence.into()),
        ("step", origin.step.into()),
        (
            "_timezone",
            c.timezone
                .unwrap_or(policies.default_timezone)
                .name()
                .into(),
        ),
        // "Now" for `{{relative}}`: the helpers read no clock.
        (
            "_now",
            now.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                .into(),
        ),
        // The sender fills it in for value and promo mail (send::links).
        ("unsubscribe_url", Value::Null),
    ] {
        data.insert(k.to_string(), v);
    }
    // The renderer adds the locales (`_locale`, `_template_locale`) and,
    // around a layout, the parts (room for them made above).
    Value::Object(data)
}

/// An item of the order, every field present.
fn item(i: &crate::event::Item) -> Value {
    object(
        [
            ("sku", value(&i.sku)),
            ("name", value(&i.name)),
            ("category", value(&i.category)),
            ("quantity", value(&i.quantity)),
            ("unit_price", value(&i.unit_price)),
            ("replenish_every_days", value(&i.replenish_every_days)),
        ],
        0,
    )
}

/// A JSON object of `fields` in order, its room made once for them and
/// `more` (built key by key, `serde_json`'s ordered map rehashed its keys
/// at every doubling: a third of building the data).
fn object<const N: usize>(fields: [(&str, Value); N], more: usize) -> Value {
    let mut map = serde_json::Map::with_capacity(N + more);
    for (k, v) in fields {
        map.insert(k.to_string(), v);
    }
    Value::Object(map)
}

/// `x` as JSON, as `json!` writes it.
fn value<T: serde::Serialize + ?Sized>(x: &T) -> Value {
    serde_json::to_value(x).unwrap_or(Value::Null)
}

/// `{{unsubscribe_url}}` in the sample data (`validate`, `preview`); the
/// sender fills in the customer's own link.
pub const SAMPLE_UNSUBSCRIBE_URL: &str = "http://127.0.0.1:8080/u/sample-unsubscribe-token";

/// The built-in sample: an event that fills every field of the schema.
pub fn sample_event() -> Event {
    Event::parse(SAMPLE).expect("the built-in sample event is valid")
}

const SAMPLE: &str = r#"{
  "id": "evt_sample", "type": "order.placed", "occurred_at": "2026-11-20T10:00:00Z",
  "customer": {"id": "c_sample", "email": "sample@example.com", "first_name": "Sam",
               "locale": "en", "timezone": "Europe/Budapest", "marketing_consent": true,
               "tags": ["vip"], "attributes": {"birthday": "1990-04-02"}},
  "order": {"id": "o_sample", "number": "1001", "placed_at": "2026-11-18T09:12:00Z",
            "currency": "EUR", "total": "129.90",
            "items": [{"sku": "CAM-200", "name": "DSLR 200", "category": "camera",
                       "quantity": 1, "unit_price": "129.90", "replenish_every_days": 60}]},
  "shipment": {"id": "s_sample", "carrier": "DHL", "tracking_number": "JV123",
               "tracking_url": "https://tracking.example/JV123"},
  "review": {"rating": 5},
  "data": {"note": "sample"}
}"#;

/// Sample data for template `id`: the built-in sample, rendered at the
/// sample event's time (so that `validate` and previews say the same every
/// day), with the template's own `sample.json` merged over it (objects
/// merge key by key; `"_now"` there sets another time).
pub fn sample_data(policies: &Policies, id: &str, own: Option<&Value>) -> Value {
    let event = sample_event();
    let mut ctx = Context::of_event(&event);
    ctx.facts = sample_facts();
    let mut data = build(
        ctx.view(),
        policies,
        Origin {
            sequence: "sample",
            step: id,
        },
        event.occurred_at,
    );
    data["unsubscribe_url"] = SAMPLE_UNSUBSCRIBE_URL.into();
    if let Some(own) = own {
        merge(&mut data, own);
    }
    data
}

/// The least a real event carries: only what the schema requires (ids,
/// the customer's email, type, time), everything optional absent, and a
/// customer the store knows nothing of (no facts). `validate` renders every
/// template against it too, to find what a real event may leave empty.
pub fn minimal_event() -> Event {
    Event::parse(MINIMAL).expect("the minimal sample event is valid")
}

const MINIMAL: &str = r#"{
  "id": "evt_minimal", "type": "order.placed", "occurred_at": "2026-11-20T10:00:00Z",
  "customer": {"id": "c_minimal", "email": "minimal@example.com"},
  "order": {"id": "o_minimal"},
  "shipment": {"id": "s_minimal"}
}"#;

/// Template data from [`minimal_event`] (no `sample.json`: real events
/// never carry what only a sample says).
pub fn minimal_data(policies: &Policies, id: &str) -> Value {
    let event = minimal_event();
    let ctx = Context::of_event(&event);
    let mut data = build(
        ctx.view(),
        policies,
        Origin {
            sequence: "sample",
            step: id,
        },
        event.occurred_at,
    );
    data["unsubscribe_url"] = SAMPLE_UNSUBSCRIBE_URL.into();
    data
}

/// The customer facts of the built-in sample: every one known, as for a
/// customer with a few orders and a review behind them.
pub fn sample_facts() -> Facts {
    let at = |s: &str| s.parse().ok();
    Facts {
        orders_count: 3,
        first_order_at: at("2025-11-18T09:12:00Z"),
        last_order_at: at("2026-11-18T09:12:00Z"),
        last_order_id: Some("o_sample".into()),
        total_spent: "389.70".parse().ok().map(crate::event::Money),
        total_spent_currency: Some("EUR".into()),
        spent_by_currency: Default::default(),
        reviews_count: 1,
        last_review_at: at("2026-06-02T18:30:00Z"),
        last_rating: Some(5),
        last_email_at: at("2026-11-19T10:00:00Z"),
    }
}

pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// The locale a preview renders in: `asked`, else the data's customer's;
/// written into the data's customer, so that the template sees the locale
/// it is rendered in (`aftercare preview`, the dashboard's preview).
pub fn preview_locale(value: &mut Value, asked: Option<&str>) -> Option<String> {
    let wanted = asked.map(str::to_string).or_else(|| {
        value
            .pointer("/customer/locale")
            .and_then(|v| v.as_str())
            .map(str::to_string)
    });
    if let (Some(l), Some(obj)) = (&wanted, value.pointer_mut("/customer")) {
        obj["locale"] = l.clone().into();
    }
    wanted
}
