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

#[test]
fn text_parts_are_not_html_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let write = |rel: &str, s: &str| {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    };
    write(
        "t/en.hbs",
        "---\nsubject: Hi\n---\n<p>Hello {{customer.first_name}}</p>\n",
    );
    write("own/en.hbs", "---\nsubject: Hi\n---\n<p>x</p>\n");
    write("own/en.txt.hbs", "Hello {{customer.first_name}}\n");
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
