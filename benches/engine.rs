//! Engine throughput: how many inputs (events or wake-ups) the pure state
//! machine applies per second on one core, against the shipped catalog.
//!
//! Run: `CARGO_TARGET_DIR=/tmp/bench-target cargo bench --bench engine`
//! (criterion runs benches with the crate root as cwd, so the relative
//! `sequences/` and `templates/` paths resolve). Target: >= 200,000
//! advances/s per core. Nothing here asserts on timing.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use aftercare::engine::customer::CustomerState;
use aftercare::engine::dispatch::{apply_event, apply_wake};
use aftercare::engine::state::{Context, Enrollment};
use aftercare::event::Event;
use aftercare::sequence::model::Catalog;
use aftercare::validate;
use chrono::{DateTime, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const CAMERA_ORDER: &str = r#"{"id": "evt_b1", "type": "order.placed", "occurred_at": "2026-11-02T08:15:00Z",
 "customer": {"id": "c_bench", "email": "anna.kovacs@example.com", "first_name": "Anna", "locale": "hu-HU",
              "timezone": "Europe/Budapest", "marketing_consent": true, "tags": ["photo"],
              "attributes": {"birthday": "1990-04-02"}},
 "order": {"id": "o_b1", "number": "1001", "placed_at": "2026-11-02T08:15:00Z", "currency": "HUF", "total": "198980.00",
           "items": [{"sku": "CAM-D200-KIT", "name": "Aurora D200 DSLR fényképezőgép, 18–55 mm objektívvel",
                      "category": "camera", "quantity": 1, "unit_price": "189990.00", "replenish_every_days": null},
                     {"sku": "SD-64-V30", "name": "SDXC 64 GB V30 memóriakártya", "category": "accessory",
                      "quantity": 1, "unit_price": "8990.00", "replenish_every_days": null}]}}"#;

const COFFEE_ORDER: &str = r#"{"id": "evt_b2", "type": "order.placed", "occurred_at": "2026-11-06T15:00:00Z",
 "customer": {"id": "c_bench", "email": "emma.johnson@example.com", "first_name": "Emma", "locale": "en-US",
              "timezone": "America/New_York", "marketing_consent": true, "tags": ["coffee-club"],
              "attributes": {"customer_since": "2024-03-14"}},
 "order": {"id": "o_b2", "number": "1005", "placed_at": "2026-11-06T15:00:00Z", "currency": "USD", "total": "43.00",
           "items": [{"sku": "COF-YIRG-1LB", "name": "Ethiopia Yirgacheffe whole bean coffee, 1 lb", "category": "coffee",
                      "quantity": 2, "unit_price": "18.50", "replenish_every_days": 30},
                     {"sku": "FLT-4-100", "name": "Paper coffee filters #4, pack of 100", "category": "coffee",
                      "quantity": 1, "unit_price": "6.00", "replenish_every_days": 90}]}}"#;

const COFFEE_SHIPPED: &str = r#"{"id": "evt_b3", "type": "shipment.shipped", "occurred_at": "2026-11-07T14:00:00Z",
 "customer": {"id": "c_bench", "email": "emma.johnson@example.com"}, "order": {"id": "o_b2", "number": "1005"},
 "shipment": {"id": "s_b2", "carrier": "UPS", "tracking_number": "1Z999AA10123456784",
              "tracking_url": "https://track.shop.example/ups/1Z999AA10123456784"}}"#;

const CAMERA_SHIPPED: &str = r#"{"id": "evt_b4", "type": "shipment.shipped", "occurred_at": "2026-11-03T14:30:00Z",
 "customer": {"id": "c_bench", "email": "anna.kovacs@example.com"}, "order": {"id": "o_b1", "number": "1001"},
 "shipment": {"id": "s_b1", "carrier": "GLS", "tracking_number": "GLS6112030147",
              "tracking_url": "https://track.shop.example/gls/GLS6112030147"}}"#;

const CAMERA_DELIVERED: &str = r#"{"id": "evt_b5", "type": "shipment.delivered", "occurred_at": "2026-11-05T11:05:00Z",
 "customer": {"id": "c_bench", "email": "anna.kovacs@example.com"}, "order": {"id": "o_b1", "number": "1001"},
 "shipment": {"id": "s_b1", "carrier": "GLS", "tracking_number": "GLS6112030147",
              "tracking_url": "https://track.shop.example/gls/GLS6112030147"}}"#;

fn catalog() -> Arc<Catalog> {
    let loaded = validate::load(Path::new("sequences"), Path::new("templates"));
    assert!(
        !loaded.diagnostics.has_errors(),
        "the shipped catalog has errors:\n{}",
        loaded.diagnostics
    );
    loaded.catalog
}

fn ev(text: &str) -> Event {
    Event::parse(text).expect("bench event parses")
}

/// Applies `events` in order to an empty customer, as `simulate` would.
fn prepare(catalog: &Catalog, events: &[&Event]) -> CustomerState {
    let mut list = CustomerState::default();
    for e in events {
        apply_event(catalog, &mut list, e, e.occurred_at);
    }
    list
}

fn position(list: &[Enrollment], sequence: &str) -> usize {
    list.iter()
        .position(|e| e.sequence == sequence && e.is_active())
        .unwrap_or_else(|| panic!("no active `{sequence}` enrollment in {list:#?}"))
}

fn bench_engine(c: &mut Criterion) {
    let catalog = catalog();
    let camera = ev(CAMERA_ORDER);
    let coffee = ev(COFFEE_ORDER);
    let coffee_shipped = ev(COFFEE_SHIPPED);
    let camera_shipped = ev(CAMERA_SHIPPED);
    let camera_delivered = ev(CAMERA_DELIVERED);

    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(1));

    // (a) order.placed for a customer with no enrollments: starts fulfilment
    // (email + wait_for), evaluates the reorder trigger's CEL condition.
    {
        let check = prepare(&catalog, &[&camera]);
        assert_eq!(check.enrollments.len(), 1, "camera order: fulfilment only");
        g.bench_function("order_placed_fresh/camera(fulfilment)", |b| {
            b.iter_batched(
                CustomerState::default,
                |mut list| {
                    let applied = apply_event(&catalog, &mut list, &camera, camera.occurred_at);
                    black_box((list, applied))
                },
                BatchSize::SmallInput,
            )
        });
    }
    {
        let check = prepare(&catalog, &[&coffee]);
        assert_eq!(
            check.enrollments.len(),
            2,
            "coffee order: fulfilment + reorder"
        );
        g.bench_function("order_placed_fresh/coffee(fulfilment+reorder)", |b| {
            b.iter_batched(
                CustomerState::default,
                |mut list| {
                    let applied = apply_event(&catalog, &mut list, &coffee, coffee.occurred_at);
                    black_box((list, applied))
                },
                BatchSize::SmallInput,
            )
        });
    }

    // (b) shipment.shipped reaching a fulfilment enrollment in `await-shipment`
    // (the customer also has a reorder enrollment, which ignores it).
    {
        let base = prepare(&catalog, &[&coffee]);
        let f = position(&base.enrollments, "fulfilment");
        assert_eq!(base.enrollments[f].step.as_deref(), Some("await-shipment"));
        let now = coffee_shipped.occurred_at;
        let after = {
            let mut l = base.clone();
            let a = apply_event(&catalog, &mut l, &coffee_shipped, now);
            assert_eq!(a.emails.len(), 1, "order-shipped email");
            l
        };
        assert_eq!(after.enrollments[f].step.as_deref(), Some("await-delivery"));
        g.bench_function("shipment_shipped_advances_fulfilment", |b| {
            b.iter_batched(
                || base.clone(),
                |mut list| {
                    let applied = apply_event(&catalog, &mut list, &coffee_shipped, now);
                    black_box((list, applied))
                },
                BatchSize::SmallInput,
            )
        });
    }

    // (c) wake-up of an education enrollment sleeping in `settle-in`
    // (evaluates the camera `if`, queues an email, sleeps to 10:00 local).
    {
        let base = prepare(&catalog, &[&camera, &camera_shipped, &camera_delivered]);
        let i = position(&base.enrollments, "education");
        assert_eq!(base.enrollments[i].step.as_deref(), Some("settle-in"));
        let wake: DateTime<Utc> = base.enrollments[i].wake_at().expect("sleeping");
        let after = {
            let mut l = base.clone();
            let a = apply_wake(&catalog, &mut l, i, wake);
            assert_eq!(a.emails.len(), 1, "camera-care-auto-mode email");
            l
        };
        assert_eq!(
            after.enrollments[i].step.as_deref(),
            Some("practice-auto-mode")
        );
        g.bench_function("wake_education_settle_in(if+email+wait)", |b| {
            b.iter_batched(
                || base.clone(),
                |mut list| {
                    let applied = apply_wake(&catalog, &mut list, i, wake);
                    black_box((list, applied))
                },
                BatchSize::SmallInput,
            )
        });

        // The next wake (no CEL on the way): email + wait.
        let j = i;
        let wake2 = after.enrollments[j].wake_at().expect("sleeping again");
        g.bench_function("wake_education_practice(email+wait, no CEL)", |b| {
            b.iter_batched(
                || after.clone(),
                |mut list| {
                    let applied = apply_wake(&catalog, &mut list, j, wake2);
                    black_box((list, applied))
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();

    // Where the time goes: pieces of the above, measured alone.
    let mut p = c.benchmark_group("engine_parts");
    p.throughput(Throughput::Elements(1));
    {
        let base = prepare(&catalog, &[&coffee]);
        p.bench_function("clone_enrollments(2, setup cost only)", |b| {
            b.iter(|| black_box(base.clone()))
        });
    }
    {
        let reorder = catalog.get("reorder").expect("reorder sequence");
        let cond = reorder
            .trigger
            .as_ref()
            .and_then(|t| t.when())
            .expect("reorder trigger has a when");
        let ctx = Context::of_event(&coffee);
        p.bench_function("cel_eval_reorder_trigger", |b| {
            b.iter(|| black_box(cond.eval_bool(&ctx.bindings(Some(&coffee), coffee.occurred_at))))
        });
    }
    p.bench_function("event_parse/order_placed", |b| {
        b.iter(|| black_box(Event::parse(black_box(COFFEE_ORDER))))
    });
    p.bench_function("event_parse/shipment_shipped", |b| {
        b.iter(|| black_box(Event::parse(black_box(COFFEE_SHIPPED))))
    });
    p.finish();
}

criterion_group!(benches, bench_engine);
criterion_main!(benches);
