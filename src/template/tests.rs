//! The derived text parts of the shipped templates against html2text on the
//! rendered body, on data that takes the branches the sample does not.

use std::path::Path;

use serde_json::json;

use super::*;
use crate::sequence::model::Policies;

fn shipped() -> Templates {
    let (t, d) = Templates::load(Path::new("templates"), "en");
    assert!(!d.has_errors(), "{d}");
    t
}

#[test]
fn every_shipped_template_gets_a_derived_text_part() {
    let t = shipped();
    for (id, set) in &t.sets {
        for (locale, lf) in &set.locales {
            // An MJML body is not HTML: its text is its HTML's, per message.
            // A template with its own text part (the survey's row of 0-10
            // links reads better written by hand) keeps it.
            let own = lf.file.with_file_name(format!("{locale}.txt.hbs")).exists();
            let want = match (lf.mjml, own) {
                (_, true) => TextPart::Own,
                (true, false) => TextPart::PerMessage,
                (false, false) => TextPart::Derived,
            };
            assert_eq!(lf.text, want, "{id}/{locale}");
        }
    }
}

/// The sample with changes that take other branches: no first name, three
/// items (one without a name), no placed_at, no shipment, no total.
fn variants(p: &Policies, id: &str) -> Vec<serde_json::Value> {
    let base = data::sample_data(p, id, None);
    let mut out = vec![base.clone()];
    let mut v = base.clone();
    data::merge(
        &mut v,
        &json!({
            "customer": {"first_name": null, "marketing_consent": false},
            "order": {"placed_at": null, "total": null, "items": [
                {"sku": "A-1", "name": "Lens & cap <50mm>", "category": "camera", "quantity": 2,
                 "unit_price": "10", "replenish_every_days": null},
                {"sku": "B-2", "name": null, "category": null, "quantity": 1,
                 "unit_price": "1234.5", "replenish_every_days": null},
                {"sku": "C-3", "name": "A tripod with a rather long name that goes on", "category": null,
                 "quantity": 10, "unit_price": "0.99", "replenish_every_days": null}
            ]},
            "shipment": {"carrier": null, "tracking_number": null, "tracking_url": null}
        }),
    );
    out.push(v);
    let mut v = base;
    data::merge(
        &mut v,
        &json!({"order": {"items": []}, "shipment": {"carrier": null}}),
    );
    out.push(v);
    out
}

#[test]
fn derived_text_says_what_html2text_says() {
    let t = shipped();
    let p = Policies::default();
    let squeeze = |s: &str| s.split_whitespace().collect::<String>();
    for id in t.ids() {
        for locale in t.locales(id) {
            let lf = &t.sets[id].locales[&locale];
            if lf.mjml || lf.text == TextPart::Own {
                continue;
            }
            for data in variants(&p, id) {
                let r = t.render(id, Some(&locale), &data).unwrap();
                let body = t
                    .render_with(id, Some(&locale), data.clone(), Parts::NoText)
                    .unwrap()
                    .html;
                let want = html_to_text(&body);
                assert_eq!(
                    squeeze(&r.text),
                    squeeze(&want),
                    "{id}/{locale}\n--- derived:\n{}\n--- html2text:\n{want}",
                    r.text
                );
                assert!(!r.text.contains("&amp;") && !r.text.contains("&lt;"));
                assert!(!r.text.contains("\n\n\n") && !r.text.starts_with('\n'));
                for line in r.text.lines() {
                    assert!(
                        unicode_width::UnicodeWidthStr::width(line) <= text::WIDTH
                            || !line.trim().contains(' '),
                        "{id}/{locale}: long line {line:?}"
                    );
                }
            }
        }
    }
}

/// A templates folder of `files` (path, text).
fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (rel, text) in files {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

#[test]
fn text_parts_are_not_html_escaped() {
    let dir = folder(&[
        (
            "t/en.hbs",
            "---\nsubject: Hi\n---\n<p>Hello {{customer.first_name}}</p>\n",
        ),
        ("own/en.hbs", "---\nsubject: Hi\n---\n<p>x</p>\n"),
        ("own/en.txt.hbs", "Hello {{customer.first_name}}\n"),
    ]);
    let (t, d) = Templates::load(dir.path(), "en");
    assert!(d.0.is_empty(), "{d}");
    let mut data = data::sample_data(&Policies::default(), "t", None);
    data::merge(
        &mut data,
        &json!({"customer": {"first_name": "Tom & <Jerry>"}}),
    );
    let r = t.render("t", None, &data).unwrap();
    assert!(r.html.contains("Tom &amp; &lt;Jerry&gt;"), "{}", r.html);
    assert_eq!(r.text, "Hello Tom & <Jerry>\n");
    assert_eq!(
        t.render("own", None, &data).unwrap().text,
        "Hello Tom & <Jerry>\n"
    );
}

#[test]
fn inlined_partials_render_as_the_partials_do() {
    let t = shipped();
    let p = Policies::default();
    let mut inlined = 0;
    for (id, set) in &t.sets {
        for (locale, lf) in &set.locales {
            if !lf.inlined {
                continue;
            }
            inlined += 1;
            for data in variants(&p, id) {
                let ctx = handlebars::Context::from(data);
                let render = |part| t.hb.render_with_context(&name(id, locale, part), &ctx);
                assert_eq!(
                    render("html").unwrap(),
                    render("html#src").unwrap(),
                    "{id}/{locale}"
                );
            }
        }
    }
    assert!(
        inlined >= 5,
        "order-confirmation uses a partial in every locale"
    );
}

#[test]
fn skeletons_render_as_handlebars_does() {
    let t = shipped();
    assert!(t.simple_layouts.contains("_layouts/base"));
    let p = Policies::default();
    let mut laid_out = 0;
    for id in t.ids() {
        for locale in t.locales(id) {
            for base in variants(&p, id) {
                for extra in [
                    json!({}),
                    json!({"order": {"number": "A&B-O'Neil=1 <x>"}}),
                    json!({"sender": {"name": "Shop \"&\" Co", "email": null}}),
                ] {
                    let mut d = base.clone();
                    data::merge(&mut d, &extra);
                    let r = t.render(id, Some(&locale), &d).unwrap();
                    let lf = &t.sets[id].locales[&r.locale];
                    // An MJML layout's output goes through mrml: tests/html.rs.
                    let Some(layout) = lf.layout.as_ref().filter(|_| !lf.mjml) else {
                        continue;
                    };
                    let body = t
                        .render_with(id, Some(&locale), d.clone(), Parts::NoText)
                        .unwrap()
                        .html;
                    d["_locale"] = locale.clone().into();
                    let mut ctx = handlebars::Context::from(d);
                    let want = t
                        .render_layout(layout, &mut ctx, &r.subject, &r.preheader, body)
                        .unwrap();
                    assert_eq!(r.html, want, "{id}/{locale} {extra}");
                    laid_out += 1;
                }
            }
        }
    }
    assert!(laid_out > 100, "{laid_out}");
}

/// The sender builds only the data a template reads (`data::Needs`): every
/// shipped template renders the same from it as from all the data, for the
/// sample and for an event that carries the least it can.
#[test]
fn the_data_a_template_reads_renders_it_as_all_the_data_does() {
    use crate::engine::state::Context;
    let t = shipped();
    let p = Policies::default();
    let mut sample = Context::of_event(&data::sample_event());
    sample.facts = data::sample_facts();
    let minimal = Context::of_event(&data::minimal_event());
    let (mut cut_down, mut whole) = (0, 0);
    for id in t.ids() {
        let needs = t.needs(id);
        match *needs == data::Needs::all() {
            true => whole += 1,
            false => cut_down += 1,
        }
        for locale in t.every_locale_name(id) {
            for ctx in [&sample, &minimal] {
                let origin = data::Origin {
                    sequence: "s",
                    step: id,
                };
                let at = "2026-11-21T10:00:00Z".parse().unwrap();
                let all = data::build(ctx.view(), &p, origin, at);
                let read = data::build_for(ctx.view(), &p, origin, at, needs);
                assert_ne!(all, read, "{id}: no template reads every field");
                assert_eq!(
                    t.render(id, Some(&locale), &all).map_err(|e| e.to_string()),
                    t.render(id, Some(&locale), &read)
                        .map_err(|e| e.to_string()),
                    "{id}/{locale}"
                );
            }
        }
    }
    assert!(
        cut_down > 10 && whole == 0,
        "{cut_down} cut down, {whole} whole"
    );
}

#[test]
fn a_read_the_walk_cannot_place_keeps_all_the_data() {
    // `#each this` walks the root; an unknown block helper loses the scope.
    let dir = folder(&[
        (
            "few/en.hbs",
            "---\nsubject: Hi {{customer.first_name}}\n---\n\
             {{#if shipment.tracking_url}}<a href=\"{{shipment.tracking_url}}\">track</a>{{/if}}\n\
             {{#each order.items}}<p>{{name}}</p>{{/each}}\n",
        ),
        (
            "root/en.hbs",
            "---\nsubject: Hi\n---\n{{#each this}}{{@key}}{{/each}}\n",
        ),
        (
            "helper/en.hbs",
            "---\nsubject: Hi\n---\n{{#upper customer}}{{first_name}}{{/upper}}\n",
        ),
    ]);
    let (t, _) = Templates::load(dir.path(), "en");
    let mut want = data::Needs::nothing();
    for path in [
        &["customer", "first_name"][..],
        &["shipment", "tracking_url"],
        &["order", "items"],
    ] {
        let path: Vec<reads::Seg> = path
            .iter()
            .map(|k| reads::Seg::Key(k.to_string()))
            .collect();
        want.add(&path);
    }
    assert_eq!(t.needs("few"), &want);
    assert_eq!(t.needs("root"), &data::Needs::all());
    assert_eq!(t.needs("helper"), &data::Needs::all());
    assert_eq!(t.needs("no-such-template"), &data::Needs::all());
    let mut ctx = crate::engine::state::Context::of_event(&data::sample_event());
    ctx.facts = data::sample_facts();
    let origin = data::Origin {
        sequence: "s",
        step: "few",
    };
    let at = "2026-11-21T10:00:00Z".parse().unwrap();
    let d = data::build_for(ctx.view(), &Policies::default(), origin, at, t.needs("few"));
    assert_eq!(
        d["customer"],
        json!({"first_name": "Sam"}),
        "only the fields read"
    );
    assert_eq!(
        d["shipment"],
        json!({"tracking_url": "https://tracking.example/JV123"})
    );
    assert_eq!(
        d["order"]["items"][0]["sku"], "CAM-200",
        "a field read is built whole"
    );
    assert!(d.get("review").is_none(), "an object not read is left out");
    assert_eq!(
        d["_timezone"], "Europe/Budapest",
        "what the helpers read is always there"
    );
    let r = t.render("few", None, &d).unwrap();
    assert!(
        r.html.contains("DSLR 200") && r.subject == "Hi Sam",
        "{r:?}"
    );
}
