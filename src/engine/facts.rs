//! What a customer has done, kept as events arrive: orders, spending,
//! reviews and the last email. Conditions read them as `customer.orders_count`
//! and so on, templates as `{{customer.orders_count}}`. Pure: the profile
//! carries them ([`super::profile::Profile::facts`]), [`update`] moves them.
//!
//! Rules (written down in the README, "Customer facts"):
//! - An order counts once, by its id, however many `order.placed` events
//!   name it; `order.cancelled` and `order.refunded` take it back out
//!   (count and spending), once. The ids of the last [`KEPT_ORDERS`] orders
//!   are kept for this: a cancellation of an order older than those is not
//!   taken back.
//! - `first_order_at` and `last_order_at` are the earliest and latest
//!   `order.placed_at` (else the event's time) of the counted orders, so
//!   events arriving out of order end in the same facts.
//! - `total_spent` is in the currency of the customer's first order that
//!   gave one (`total_spent_currency`). An order in another currency is not
//!   converted (aftercare knows no exchange rates): it counts in
//!   `orders_count` and goes into `spent_by_currency`, beside every other
//!   currency's total.
//! - A review counts once per event (`review.submitted`); `last_rating` is
//!   the rating of the latest review that gave one.
//! - `last_email_at` is when the last email to the customer was sent (the
//!   sender keeps it; ingest never changes it).

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::event::{Event, Money};

/// Orders whose ids are kept to count each order once and take a cancelled
/// one back out.
pub const KEPT_ORDERS: usize = 50;

/// The facts conditions and templates read (`customer.<name>`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub orders_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_order_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_order_at: Option<DateTime<Utc>>,
    /// The id of the order placed last (`last_order_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_order_id: Option<String>,
    /// In [`Facts::total_spent_currency`]; `None` until an order gave a total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_spent: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_spent_currency: Option<String>,
    /// Every currency's total, the main one included.
    #[serde(default, skip_serializing_if = "ByCurrency::is_empty")]
    pub spent_by_currency: ByCurrency,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reviews_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_review_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rating: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_email_at: Option<DateTime<Utc>>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The names of the facts, as conditions and templates write them after
/// `customer.`.
pub const NAMES: [&str; 10] = [
    "orders_count",
    "first_order_at",
    "last_order_at",
    "last_order_id",
    "total_spent",
    "total_spent_currency",
    "reviews_count",
    "last_review_at",
    "last_rating",
    "last_email_at",
];

impl Facts {
    pub fn is_empty(&self) -> bool {
        *self == Facts::default()
    }
}

/// Totals by currency, in currency order, kept as a short list (a customer
/// pays in one currency or two; a map's node took ~500 bytes in every copy
/// of the facts) and written as the map it is: `{"EUR": "129.90"}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ByCurrency(Vec<(String, Money)>);

impl ByCurrency {
    pub fn get(&self, currency: &str) -> Option<&Money> {
        self.0.iter().find(|(c, _)| c == currency).map(|(_, m)| m)
    }

    /// The total in `currency`, zero when new.
    fn entry(&mut self, currency: &str) -> &mut Money {
        let i = match self.0.binary_search_by(|(c, _)| c.as_str().cmp(currency)) {
            Ok(i) => i,
            Err(i) => {
                self.0
                    .insert(i, (currency.to_string(), Money(Decimal::ZERO)));
                i
            }
        };
        &mut self.0[i].1
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for ByCurrency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(c, m)| (c, m)))
    }
}

impl<'de> Deserialize<'de> for ByCurrency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, Money>::deserialize(d)?;
        Ok(ByCurrency(map.into_iter().collect()))
    }
}

/// The facts that are points in time: what a scheduled trigger's `when`
/// usually measures against `now` (`now - customer.last_order_at >
/// days(90)`), and so what a store can keep in order to find the customers
/// such a condition may hold for without asking every one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeFact {
    FirstOrderAt,
    LastOrderAt,
    LastReviewAt,
    LastEmailAt,
}

impl TimeFact {
    /// The fact named `name` (as a condition writes it after `customer.`).
    pub fn named(name: &str) -> Option<TimeFact> {
        Some(match name {
            "first_order_at" => TimeFact::FirstOrderAt,
            "last_order_at" => TimeFact::LastOrderAt,
            "last_review_at" => TimeFact::LastReviewAt,
            "last_email_at" => TimeFact::LastEmailAt,
            _ => return None,
        })
    }

    pub fn of(self, f: &Facts) -> Option<DateTime<Utc>> {
        match self {
            TimeFact::FirstOrderAt => f.first_order_at,
            TimeFact::LastOrderAt => f.last_order_at,
            TimeFact::LastReviewAt => f.last_review_at,
            TimeFact::LastEmailAt => f.last_email_at,
        }
    }
}

/// The customers a sweep needs to ask: those whose `fact` lies within
/// `from`..`to`, and those without it unless `present`. A condition that
/// is false outside the range (see `Condition::window`) holds for nobody
/// else, so a store may hand a sweep only these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactRange {
    pub fact: TimeFact,
    pub from: Bound<DateTime<Utc>>,
    pub to: Bound<DateTime<Utc>>,
    /// Customers without the fact are left out (the condition tests
    /// `has()` of it).
    pub present: bool,
}

impl FactRange {
    /// Whether a customer with these facts is in the range.
    pub fn holds(&self, facts: &Facts) -> bool {
        match self.fact.of(facts) {
            Some(t) => (self.from, self.to).contains(&t),
            None => !self.present,
        }
    }
}

/// One counted order, kept to count it once and to take it back out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountedOrder {
    pub id: String,
    pub placed_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Taken back out by a cancellation or refund.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub void: bool,
}

/// The book behind the facts: the facts and the orders they were counted
/// from. The profile keeps it; conditions see only [`Ledger::facts`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    #[serde(default, skip_serializing_if = "Facts::is_empty")]
    pub facts: Facts,
    /// The last [`KEPT_ORDERS`] counted orders, by `placed_at`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orders: Vec<CountedOrder>,
    /// When the review that gave `last_rating` occurred: a later review
    /// without a rating leaves it, an earlier one arriving late does not
    /// replace it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rated_at: Option<DateTime<Utc>>,
    /// When the order whose currency `total_spent` is in was placed: an
    /// earlier order arriving late (with another currency) takes over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency_since: Option<DateTime<Utc>>,
}

impl Ledger {
    pub fn is_empty(&self) -> bool {
        self.facts.is_empty() && self.orders.is_empty()
    }
}

/// Takes `event` into the ledger. Events that say nothing about orders or
/// reviews leave it as it was.
pub fn update(l: &mut Ledger, event: &Event) {
    match event.kind.as_str() {
        "order.placed" => place(l, event),
        "order.cancelled" | "order.refunded" => void(l, event),
        "review.submitted" => review(l, event),
        _ => {}
    }
}

fn place(l: &mut Ledger, event: &Event) {
    let Some(order) = &event.order else {
        return;
    };
    if l.orders.iter().any(|o| o.id == order.id) {
        return;
    }
    let placed_at = order.placed_at.unwrap_or(event.occurred_at);
    let counted = CountedOrder {
        id: order.id.clone(),
        placed_at,
        total: order.total,
        currency: order.currency.clone(),
        void: false,
    };
    // The currency of the earliest order that gave one, whatever the order
    // the events arrive in.
    if let Some(currency) = &counted.currency
        && counted.total.is_some()
        && l.currency_since.is_none_or(|t| placed_at < t)
    {
        l.currency_since = Some(placed_at);
        let f = &mut l.facts;
        f.total_spent_currency = Some(currency.clone());
        f.total_spent = f.spent_by_currency.get(currency).copied();
    }
    let f = &mut l.facts;
    f.orders_count = f.orders_count.saturating_add(1);
    if f.first_order_at.is_none_or(|t| placed_at < t) {
        f.first_order_at = Some(placed_at);
    }
    if f.last_order_at.is_none_or(|t| placed_at >= t) {
        f.last_order_at = Some(placed_at);
        f.last_order_id = Some(order.id.clone());
    }
    spend(f, &counted, Decimal::ONE);
    let at = l.orders.partition_point(|o| o.placed_at <= placed_at);
    l.orders.insert(at, counted);
    if l.orders.len() > KEPT_ORDERS {
        l.orders.remove(0);
    }
}

fn void(l: &mut Ledger, event: &Event) {
    let Some(order) = &event.order else {
        return;
    };
    let Some(counted) = l.orders.iter_mut().find(|o| o.id == order.id) else {
        // Cancelled before its `order.placed` arrived (events out of order):
        // kept as void, so the order is never counted.
        let at = l
            .orders
            .partition_point(|o| o.placed_at <= event.occurred_at);
        l.orders.insert(
            at,
            CountedOrder {
                id: order.id.clone(),
                placed_at: event.occurred_at,
                total: None,
                currency: None,
                void: true,
            },
        );
        if l.orders.len() > KEPT_ORDERS {
            l.orders.remove(0);
        }
        return;
    };
    if counted.void {
        return;
    }
    counted.void = true;
    let counted = counted.clone();
    let f = &mut l.facts;
    f.orders_count = f.orders_count.saturating_sub(1);
    spend(f, &counted, Decimal::NEGATIVE_ONE);
    // The first and last order are those still counted.
    let live = || l.orders.iter().filter(|o| !o.void);
    if f.first_order_at == Some(counted.placed_at) {
        f.first_order_at = live().map(|o| o.placed_at).min();
    }
    if f.last_order_id.as_deref() == Some(counted.id.as_str()) {
        let last = live().next_back();
        f.last_order_at = last.map(|o| o.placed_at);
        f.last_order_id = last.map(|o| o.id.clone());
    }
}

/// Adds (`sign` 1) or takes back (`sign` -1) an order's total.
fn spend(f: &mut Facts, o: &CountedOrder, sign: Decimal) {
    let (Some(total), Some(currency)) = (o.total, &o.currency) else {
        return;
    };
    let amount = total.0 * sign;
    let entry = f.spent_by_currency.entry(currency);
    entry.0 += amount;
    if f.total_spent_currency.is_none() {
        f.total_spent_currency = Some(currency.clone());
    }
    if f.total_spent_currency.as_deref() == Some(currency.as_str()) {
        f.total_spent = Some(*entry);
    }
}

fn review(l: &mut Ledger, event: &Event) {
    let f = &mut l.facts;
    f.reviews_count = f.reviews_count.saturating_add(1);
    if f.last_review_at.is_none_or(|t| event.occurred_at >= t) {
        f.last_review_at = Some(event.occurred_at);
    }
    if let Some(rating) = event.review.as_ref().and_then(|r| r.rating)
        && l.rated_at.is_none_or(|t| event.occurred_at >= t)
    {
        l.rated_at = Some(event.occurred_at);
        f.last_rating = Some(rating);
    }
}

/// Records an email sent at `at` (the sender's call).
pub fn emailed(f: &mut Facts, at: DateTime<Utc>) {
    if f.last_email_at.is_none_or(|t| at > t) {
        f.last_email_at = Some(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, kind: &str, at: &str, order: &str) -> Event {
        let order = if order.is_empty() {
            String::new()
        } else {
            format!(r#","order":{order}"#)
        };
        Event::parse(&format!(
            r#"{{"id":"{id}","type":"{kind}","occurred_at":"{at}","customer":{{"id":"c","email":"a@example.com"}}{order}}}"#
        ))
        .unwrap()
    }

    fn placed(id: &str, order: &str, at: &str, total: &str, currency: &str) -> Event {
        ev(
            id,
            "order.placed",
            at,
            &format!(
                r#"{{"id":"{order}","placed_at":"{at}","total":"{total}","currency":"{currency}"}}"#
            ),
        )
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn orders_count_once_and_in_any_order() {
        let a = placed("e1", "o1", "2026-01-10T10:00:00Z", "10.00", "EUR");
        let b = placed("e2", "o2", "2026-03-10T10:00:00Z", "25.50", "EUR");
        let again = placed("e3", "o1", "2026-01-10T10:00:00Z", "10.00", "EUR");
        let mut forward = Ledger::default();
        for e in [&a, &b, &again] {
            update(&mut forward, e);
        }
        let mut backward = Ledger::default();
        for e in [&b, &again, &a] {
            update(&mut backward, e);
        }
        assert_eq!(forward.facts, backward.facts);
        let f = &forward.facts;
        assert_eq!(f.orders_count, 2);
        assert_eq!(f.first_order_at, Some(t("2026-01-10T10:00:00Z")));
        assert_eq!(f.last_order_at, Some(t("2026-03-10T10:00:00Z")));
        assert_eq!(f.last_order_id.as_deref(), Some("o2"));
        assert_eq!(f.total_spent, Some(Money("35.50".parse().unwrap())));
        assert_eq!(f.total_spent_currency.as_deref(), Some("EUR"));
    }

    #[test]
    fn other_currencies_are_kept_apart_not_converted() {
        let mut l = Ledger::default();
        update(
            &mut l,
            &placed("e1", "o1", "2026-01-10T10:00:00Z", "10.00", "EUR"),
        );
        update(
            &mut l,
            &placed("e2", "o2", "2026-02-10T10:00:00Z", "4000", "HUF"),
        );
        let f = &l.facts;
        assert_eq!(f.orders_count, 2);
        assert_eq!(f.total_spent, Some(Money("10.00".parse().unwrap())));
        assert_eq!(
            f.spent_by_currency.get("HUF"),
            Some(&Money("4000".parse().unwrap()))
        );
        // Stored as a map in currency order, and read back the same.
        let json = serde_json::to_value(f).unwrap();
        assert_eq!(
            json["spent_by_currency"].to_string(),
            r#"{"EUR":"10.00","HUF":"4000"}"#
        );
        let back: Facts = serde_json::from_value(json).unwrap();
        assert_eq!(&back, f);
    }

    /// The main currency is the earliest order's, and the last rating the
    /// latest rated review's, in whatever order the events arrive.
    #[test]
    fn currency_and_rating_do_not_depend_on_arrival() {
        let eur = placed("e1", "o1", "2026-01-10T10:00:00Z", "10.00", "EUR");
        let huf = placed("e2", "o2", "2026-02-10T10:00:00Z", "4000", "HUF");
        let review = |id: &str, at: &str, rating: &str| {
            Event::parse(&format!(
                r#"{{"id":"{id}","type":"review.submitted","occurred_at":"{at}","customer":{{"id":"c","email":"a@example.com"}},"order":{{"id":"o1"}},"review":{{{rating}}}}}"#
            ))
            .unwrap()
        };
        let rated = review("r1", "2026-03-01T10:00:00Z", r#""rating":4"#);
        let unrated = review("r2", "2026-04-01T10:00:00Z", "");
        let mut forward = Ledger::default();
        for e in [&eur, &huf, &rated, &unrated] {
            update(&mut forward, e);
        }
        let mut backward = Ledger::default();
        for e in [&unrated, &rated, &huf, &eur] {
            update(&mut backward, e);
        }
        assert_eq!(forward.facts, backward.facts);
        let f = &forward.facts;
        assert_eq!(f.total_spent_currency.as_deref(), Some("EUR"));
        assert_eq!(f.total_spent, Some(Money("10.00".parse().unwrap())));
        assert_eq!(f.last_rating, Some(4));
        assert_eq!(f.last_review_at, Some(t("2026-04-01T10:00:00Z")));
    }

    #[test]
    fn a_cancellation_takes_the_order_back_out_once() {
        let mut l = Ledger::default();
        update(
            &mut l,
            &placed("e1", "o1", "2026-01-10T10:00:00Z", "10.00", "EUR"),
        );
        update(
            &mut l,
            &placed("e2", "o2", "2026-03-10T10:00:00Z", "20.00", "EUR"),
        );
        let cancel = ev(
            "e3",
            "order.cancelled",
            "2026-03-11T10:00:00Z",
            r#"{"id":"o2"}"#,
        );
        let refund = ev(
            "e4",
            "order.refunded",
            "2026-03-12T10:00:00Z",
            r#"{"id":"o2"}"#,
        );
        update(&mut l, &cancel);
        update(&mut l, &refund);
        let f = &l.facts;
        assert_eq!(f.orders_count, 1);
        assert_eq!(f.total_spent, Some(Money("10.00".parse().unwrap())));
        assert_eq!(f.last_order_id.as_deref(), Some("o1"));
        assert_eq!(f.last_order_at, Some(t("2026-01-10T10:00:00Z")));
        // A cancellation that overtook its order: the order never counts.
        let before = l.facts.clone();
        update(
            &mut l,
            &ev(
                "e5",
                "order.cancelled",
                "2026-03-12T10:00:00Z",
                r#"{"id":"o9"}"#,
            ),
        );
        assert_eq!(l.facts, before);
        update(
            &mut l,
            &placed("e6", "o9", "2026-03-12T09:00:00Z", "99.00", "EUR"),
        );
        assert_eq!(
            l.facts, before,
            "a cancelled order placed late is not counted"
        );
    }

    #[test]
    fn reviews_and_the_latest_rating() {
        let mut l = Ledger::default();
        let review = |id: &str, at: &str, rating: u8| {
            Event::parse(&format!(
                r#"{{"id":"{id}","type":"review.submitted","occurred_at":"{at}","customer":{{"id":"c","email":"a@example.com"}},"order":{{"id":"o1"}},"review":{{"rating":{rating}}}}}"#
            ))
            .unwrap()
        };
        update(&mut l, &review("r2", "2026-05-01T10:00:00Z", 2));
        update(&mut l, &review("r1", "2026-04-01T10:00:00Z", 5));
        let f = &l.facts;
        assert_eq!(f.reviews_count, 2);
        assert_eq!(f.last_review_at, Some(t("2026-05-01T10:00:00Z")));
        assert_eq!(
            f.last_rating,
            Some(2),
            "the latest review's, not the last to arrive"
        );
    }

    #[test]
    fn only_the_last_orders_are_kept() {
        let mut l = Ledger::default();
        for i in 0..(KEPT_ORDERS + 5) {
            let at = format!("2026-01-01T{:02}:{:02}:00Z", i / 60, i % 60);
            update(
                &mut l,
                &placed(&format!("e{i}"), &format!("o{i}"), &at, "1", "EUR"),
            );
        }
        assert_eq!(l.orders.len(), KEPT_ORDERS);
        assert_eq!(l.facts.orders_count as usize, KEPT_ORDERS + 5);
    }
}
