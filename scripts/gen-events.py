#!/usr/bin/env python3
"""Generates a realistic JSON-lines events file for `aftercare simulate`.

Deterministic for a given --seed. Standard library only.

    python3 scripts/gen-events.py --customers 10000 --events 100000 \
        --out /tmp/aftercare-events-100k.jsonl

Shape follows /work/shared/DESIGN.md "Events" and examples/events.jsonl:
order.placed carries the full customer and the order with its items (some
cameras, some coffee with replenish_every_days); shipment and review events
carry the customer id + email and the order id (+ number) only. Money is a
decimal string. Every customer places at least one order; some (coffee buyers
most of all) place repeat orders. Order placements are spread over --days
days; follow-ups (shipping, delivery, reviews ...) come after them. The file
is sorted by occurred_at and cut to exactly --events lines (the latest
follow-ups are the ones left out, as if the export was taken mid-flight).
A small share of lines are exact duplicates (same event id), as a Kafka
redelivery would produce.
"""

import argparse
import datetime as dt
import json
import random
import sys

START = dt.datetime(2026, 9, 1, tzinfo=dt.timezone.utc)

# locale, timezone, currency, first names (None: no first name known)
LOCALES = [
    ("hu-HU", "Europe/Budapest", "HUF", ["Anna", "Bence", "Eszter", "Gábor", "Réka", None]),
    ("en-US", "America/New_York", "USD", ["Emma", "Liam", "Olivia", "Noah", None]),
    ("en-US", "America/Los_Angeles", "USD", ["Ava", "Mason", "Sophia", None]),
    ("en-GB", "Europe/London", "GBP", ["Oliver", "Amelia", "George", "Isla", None]),
    ("en-GB", None, "GBP", ["James", "Harry", None]),
    ("bg-BG", "Europe/Sofia", "EUR", ["Мария", "Георги", "Иван", None]),
    ("th-TH", "Asia/Bangkok", "THB", ["พลอย", "สมชาย", None]),
    ("zh-CN", "Asia/Shanghai", "CNY", ["丽娜", "张伟", "王芳", None]),
    ("de-DE", "Europe/Berlin", "EUR", ["Lena", "Jonas", None]),  # falls back to en
]
LOCALE_WEIGHTS = [14, 18, 8, 14, 4, 10, 8, 12, 12]

# Price multipliers from a EUR-ish base, per currency (minor units = 2 everywhere
# in the feed, as the shop sends "198980.00" even for HUF).
FX = {"EUR": 1.0, "USD": 1.1, "GBP": 0.85, "HUF": 395.0, "THB": 39.0, "CNY": 7.8}

# sku, name, category, base price in EUR cents, replenish_every_days
PRODUCTS = {
    "camera": [
        ("CAM-D200-KIT", "Aurora D200 DSLR, 18-55 mm kit", "camera", 48990, None),
        ("CAM-M50-KIT", "Aurora M50 mirrorless kit", "camera", 76900, None),
        ("CAM-X10", "Aurora X10 compact camera", "camera", 32900, None),
    ],
    "accessory": [
        ("SD-64-V30", "SDXC 64 GB V30 memory card", "accessory", 2290, None),
        ("BAG-CAM-S", "Camera shoulder bag, small", "accessory", 3990, None),
        ("TRI-TRAVEL", "Travel tripod, carbon", "accessory", 12900, None),
    ],
    "coffee": [
        ("COF-YIRG-1LB", "Ethiopia Yirgacheffe whole bean coffee, 1 lb", "coffee", 1690, 30),
        ("COF-ESP-1KG", "House espresso blend, 1 kg", "coffee", 2190, 60),
        ("COF-DECAF-250", "Swiss water decaf, 250 g", "coffee", 890, 21),
        ("COF-SAMPLER", "Single-origin sampler, 4 x 50 g", "coffee", 1490, 10),
        ("FLT-4-100", "Paper coffee filters #4, pack of 100", "coffee", 550, 90),
    ],
    "other": [
        ("SPK-WAVE", "Aurora Wave bluetooth speaker", "audio", 6490, None),
        ("HP-ANC2", "Aurora ANC wireless headphones", "audio", 11900, None),
        ("KET-17", "Aurora electric kettle 1.7 l", "kitchen", 3990, None),
        ("FLT-KET", "Kettle descaling filter", "kitchen", 650, None),
        ("SHO-TRAIL-44", "Trailhead GTX running shoes, EU 44", "footwear", 11900, None),
        ("YOGA-MAT", "Cork yoga mat", "sport", 4990, None),
        ("LAMP-DESK", "Desk lamp, warm LED", "home", 3490, None),
    ],
}

CARRIERS = {
    "HUF": ["GLS", "MPL", "DPD"],
    "USD": ["UPS", "USPS", "FedEx"],
    "GBP": ["Royal Mail", "DPD", "Evri"],
    "EUR": ["DHL", "Econt", "DPD"],
    "THB": ["Kerry Express", "Thailand Post"],
    "CNY": ["SF Express", "JD Logistics"],
}

CANCEL_REASONS = ["customer_request", "payment_failed", "out_of_stock"]
REFUND_REASONS = ["returned: wrong size", "returned: damaged", "returned: changed mind"]
DELAY_REASONS = ["Parcel missorted at hub", "Weather delay", "Address check needed"]


def money(cents):
    return f"{cents // 100}.{cents % 100:02d}"


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class Gen:
    def __init__(self, seed, customers, days):
        self.r = random.Random(seed)
        self.days = days
        self.customers = [self.make_customer(i) for i in range(1, customers + 1)]
        self.order_no = 100000
        self.ship_no = 0
        self.events = []  # (time, tiebreak, dict)

    def make_customer(self, i):
        r = self.r
        loc, tz, cur, names = r.choices(LOCALES, LOCALE_WEIGHTS)[0]
        first = r.choice(names)
        cid = f"c_{i:06d}"
        c = {
            "id": cid,
            "email": f"customer{i:06d}@example.com",
        }
        if first is not None:
            c["first_name"] = first
        c["locale"] = loc
        if tz is not None:
            c["timezone"] = tz
        c["marketing_consent"] = r.random() < 0.7
        tags = []
        kind = r.choices(["coffee", "photo", "general"], [35, 20, 45])[0]
        if kind == "coffee" and r.random() < 0.5:
            tags.append("coffee-club")
        if kind == "photo":
            tags.append("photo")
        if r.random() < 0.05:
            tags.append("vip")
        c["tags"] = tags
        attrs = {}
        if r.random() < 0.3:
            attrs["birthday"] = f"{r.randint(1950, 2005)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
        c["attributes"] = attrs
        return {"full": c, "currency": cur, "kind": kind}

    def items(self, kind):
        r = self.r
        items = []
        if kind == "coffee":
            for p in r.sample(PRODUCTS["coffee"], r.choice([1, 1, 2, 2, 3])):
                items.append((p, r.choice([1, 1, 2, 3])))
        elif kind == "photo":
            if r.random() < 0.6:
                items.append((r.choice(PRODUCTS["camera"]), 1))
            for p in r.sample(PRODUCTS["accessory"], r.choice([0, 1, 1, 2])):
                items.append((p, 1))
            if not items:
                items.append((r.choice(PRODUCTS["accessory"]), 1))
        else:
            for p in r.sample(PRODUCTS["other"], r.choice([1, 1, 1, 2, 3])):
                items.append((p, r.choice([1, 1, 1, 2])))
            if r.random() < 0.08:
                items.append((r.choice(PRODUCTS["coffee"]), 1))
        return items

    def add(self, t, ev):
        self.events.append((t, len(self.events), ev))

    def short(self, cust):
        c = cust["full"]
        return {"id": c["id"], "email": c["email"]}

    def order(self, cust, placed):
        r = self.r
        self.order_no += 1
        num = str(self.order_no)
        oid = f"o_{num}"
        cur = cust["currency"]
        fx = FX[cur]
        lines = []
        total = 0
        for (sku, name, cat, base, rep), qty in self.items(cust["kind"]):
            unit = int(round(base * fx / 10.0)) * 10  # whole tens of minor units
            total += unit * qty
            lines.append(
                {
                    "sku": sku,
                    "name": name,
                    "category": cat,
                    "quantity": qty,
                    "unit_price": money(unit),
                    "replenish_every_days": rep,
                }
            )
        full_order = {
            "id": oid,
            "number": num,
            "placed_at": iso(placed),
            "currency": cur,
            "total": money(total),
            "items": lines,
        }
        ref = {"id": oid, "number": num}
        self.add(
            placed,
            {"type": "order.placed", "occurred_at": iso(placed), "customer": dict(cust["full"]), "order": full_order},
        )

        def ev(kind, t, **extra):
            e = {"type": kind, "occurred_at": iso(t), "customer": self.short(cust), "order": dict(ref)}
            e.update(extra)
            self.add(t, e)

        if r.random() < 0.04:
            ev("order.cancelled", placed + dt.timedelta(minutes=r.randint(10, 20 * 60)),
               data={"reason": r.choice(CANCEL_REASONS)})
            return
        # Most orders ship within 3 days; about 1 in 12 is late.
        if r.random() < 0.08:
            ship_after = dt.timedelta(hours=r.uniform(73, 24 * 10))
        else:
            ship_after = dt.timedelta(hours=r.uniform(2, 70))
        if r.random() < 0.01:
            return  # never ships: fulfilment times out
        shipped = placed + ship_after
        self.ship_no += 1
        carrier = r.choice(CARRIERS[cur])
        track = f"{carrier[:3].upper().replace(' ', '')}{r.randint(10**9, 10**10 - 1)}"
        shipment = {
            "id": f"s_{self.ship_no:07d}",
            "carrier": carrier,
            "tracking_number": track,
            "tracking_url": f"https://track.shop.example/{carrier.lower().replace(' ', '-')}/{track}",
        }
        ev("shipment.shipped", shipped, shipment=dict(shipment))
        if r.random() < 0.03:
            ev("shipment.delayed", shipped + dt.timedelta(hours=r.uniform(30, 120)),
               shipment=dict(shipment), data={"reason": r.choice(DELAY_REASONS)})
        if r.random() < 0.015:
            return  # lost in transit
        if r.random() < 0.02:
            transit = dt.timedelta(days=r.uniform(22, 30))  # late: delivery-delayed email
        else:
            transit = dt.timedelta(hours=r.uniform(12, 24 * 6))
        delivered = shipped + transit
        ev("shipment.delivered", delivered, shipment=dict(shipment))
        if r.random() < 0.02:
            ev("order.refunded", delivered + dt.timedelta(days=r.uniform(3, 14)),
               data={"reason": r.choice(REFUND_REASONS)})
            return
        if r.random() < 0.3:
            rating = r.choices([1, 2, 3, 4, 5], [3, 4, 10, 33, 50])[0]
            ev("review.submitted", delivered + dt.timedelta(days=r.uniform(2, 25)), review={"rating": rating})

    def customer_event(self, cust, t):
        r = self.r
        if r.random() < 0.8:
            c = dict(cust["full"])
            c["marketing_consent"] = not c["marketing_consent"] if r.random() < 0.3 else c["marketing_consent"]
            cust["full"] = c
            self.add(t, {"type": "customer.updated", "occurred_at": iso(t), "customer": dict(c)})
        else:
            self.add(t, {"type": "customer.unsubscribed", "occurred_at": iso(t), "customer": self.short(cust)})

    def placed_time(self):
        return START + dt.timedelta(seconds=self.r.uniform(0, self.days * 86400))

    def run(self, target):
        r = self.r
        # Everyone orders once.
        for cust in self.customers:
            self.order(cust, self.placed_time())
        # Repeat orders until the budget is spent: coffee buyers reorder most.
        weights = [{"coffee": 6, "photo": 2, "general": 1}[c["kind"]] for c in self.customers]
        while len(self.events) < target * 1.02:
            if r.random() < 0.02:
                self.customer_event(r.choice(self.customers), self.placed_time())
                continue
            cust = r.choices(self.customers, weights)[0]
            self.order(cust, self.placed_time())
        self.events.sort(key=lambda e: (e[0], e[1]))
        lines = [e[2] for e in self.events]
        # A few redeliveries: the same event again, right after the original.
        out = []
        n = 0
        for ev in lines:
            n += 1
            ev = {"id": f"evt_{n:07d}", **ev}
            out.append(ev)
            if r.random() < 0.003:
                out.append(ev)
        return out[:target]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=10000)
    ap.add_argument("--events", type=int, default=100000)
    ap.add_argument("--days", type=int, default=90, help="spread of order placements (default 90)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True, help="output file ('-' for stdout)")
    a = ap.parse_args()
    if a.customers < 1 or a.events < a.customers:
        ap.error("need --customers >= 1 and --events >= --customers")
    events = Gen(a.seed, a.customers, a.days).run(a.events)
    f = sys.stdout if a.out == "-" else open(a.out, "w", encoding="utf-8")
    try:
        for ev in events:
            f.write(json.dumps(ev, ensure_ascii=False, separators=(", ", ": ")))
            f.write("\n")
    finally:
        if f is not sys.stdout:
            f.close()
    counts = {}
    for ev in events:
        counts[ev["type"]] = counts.get(ev["type"], 0) + 1
    customers = len({ev["customer"]["id"] for ev in events})
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    print(f"{len(events)} events, {customers} customers: {summary}", file=sys.stderr)


if __name__ == "__main__":
    main()
