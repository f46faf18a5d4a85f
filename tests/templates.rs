//! Golden tests of the shipped templates, and the rules of rendering:
//! locale fallback, strict variables, front matter, layouts and text parts.

use std::path::Path;

use aftercare::sequence::model::Policies;
use aftercare::template::data::sample_data;
use aftercare::template::{RenderError, Templates};

fn shipped() -> Templates {
    let (t, d) = Templates::load(Path::new("templates"), "en");
    assert!(!d.has_errors(), "{d}");
    t
}

/// Compares with `tests/golden/<name>`; `UPDATE_GOLDEN=1` rewrites the file.
fn golden(name: &str, actual: &str) {
    let path = Path::new("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(
        actual,
        expected,
        "{} differs (UPDATE_GOLDEN=1 to accept)",
        path.display()
    );
}

#[test]
fn fulfilment_templates_in_every_shipped_locale() {
    let t = shipped();
    let p = Policies::default();
    for id in [
        "order-confirmation",
        "order-shipped",
        "shipping-delayed",
        "delivery-delayed",
        "order-delivered",
    ] {
        for locale in ["en", "hu-HU", "th-TH", "bg-BG", "zh-CN"] {
            let data = sample_data(&p, id, None);
            let r = t.render(id, Some(locale), &data).unwrap();
            let lang = locale.split('-').next().unwrap();
            assert_eq!(r.locale, lang);
            assert!(
                r.html.contains("<html") && r.html.contains("</html>"),
                "layout wraps the body"
            );
            let doc = format!(
                "Subject: {}\nPreheader: {}\n\n{}",
                r.subject,
                r.preheader.unwrap_or_default(),
                r.text
            );
            golden(&format!("{id}.{lang}.txt"), &doc);
        }
    }
}

#[test]
fn money_and_dates_follow_the_customer() {
    let t = shipped();
    let data = sample_data(&Policies::default(), "order-confirmation", None);
    let hu = t
        .render("order-confirmation", Some("hu-HU"), &data)
        .unwrap();
    assert!(hu.html.contains("129,90\u{a0}€"), "{}", hu.html);
    let en = t.render("order-confirmation", Some("en"), &data).unwrap();
    assert!(en.html.contains("€129.90"));
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn locale_fallback_goes_region_language_default() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "hello/en.hbs",
        "---\nsubject: Hello\n---\n<p>en</p>\n",
    );
    write(
        dir.path(),
        "hello/hu.hbs",
        "---\nsubject: Szia\n---\n<p>hu</p>\n",
    );
    write(
        dir.path(),
        "hello/pt-BR.hbs",
        "---\nsubject: Olá\n---\n<p>br</p>\n",
    );
    let (t, d) = Templates::load(dir.path(), "en");
    assert!(d.0.is_empty(), "{d}");
    let data = sample_data(&Policies::default(), "hello", None);
    let locale = |w: Option<&str>| t.render("hello", w, &data).unwrap().locale;
    assert_eq!(locale(Some("hu-HU")), "hu");
    assert_eq!(locale(Some("hu")), "hu");
    assert_eq!(locale(Some("pt-BR")), "pt-BR");
    assert_eq!(locale(Some("pt_br")), "pt-BR");
    assert_eq!(locale(Some("pt-PT")), "en");
    assert_eq!(locale(None), "en");
    assert_eq!(
        t.render("hello", Some("hu"), &data).unwrap().text.trim(),
        "hu"
    );
}

#[test]
fn a_missing_variable_is_an_error_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "t/en.hbs",
        "---\nsubject: Hi {{customer.first_name}}\n---\n<p>line one</p>\n<p>{{order.nubmer}}</p>\n",
    );
    let (t, d) = Templates::load(dir.path(), "en");
    assert!(d.0.is_empty(), "{d}");
    let data = sample_data(&Policies::default(), "t", None);
    match t.render("t", None, &data) {
        Err(RenderError::Render {
            file,
            line,
            message,
            ..
        }) => {
            assert!(file.ends_with("t/en.hbs"), "{file}");
            assert_eq!(line, 5, "the line in the file");
            assert!(message.contains("order.nubmer"), "{message}");
        }
        other => panic!("expected a render error, got {other:?}"),
    }
}

#[test]
fn bad_templates_are_reported_with_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "no-front/en.hbs", "<p>hi</p>\n");
    write(
        dir.path(),
        "bad-front/en.hbs",
        "---\nsubjet: Hi\n---\n<p>x</p>\n",
    );
    write(
        dir.path(),
        "bad-syntax/en.hbs",
        "---\nsubject: Hi\n---\n<p>ok</p>\n<p>{{#if x}}unclosed</p>\n",
    );
    write(
        dir.path(),
        "bad-layout/en.hbs",
        "---\nsubject: Hi\nlayout: nope\n---\n<p>x</p>\n",
    );
    let (_, d) = Templates::load(dir.path(), "en");
    let text = d.to_string();
    for want in [
        "no-front/en.hbs:1:1: a template starts with front matter",
        "bad-front/en.hbs:2:1: unknown key `subjet`",
        "bad-front/en.hbs:2:1: front matter: missing `subject`",
        "bad-syntax/en.hbs:6:1: template syntax",
        "bad-layout/en.hbs:3:9: layout `nope` not found",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn a_text_part_overrides_the_derived_one() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "t/en.hbs",
        "---\nsubject: Hi\npreheader: Pre {{order.number}}\n---\n<p>Hello <b>{{customer.first_name}}</b></p>\n",
    );
    let (t, _) = Templates::load(dir.path(), "en");
    let data = sample_data(&Policies::default(), "t", None);
    let r = t.render("t", None, &data).unwrap();
    assert_eq!(r.preheader.as_deref(), Some("Pre 1001"));
    assert!(
        r.text.contains("Hello") && r.text.contains("Sam"),
        "{}",
        r.text
    );
    write(
        dir.path(),
        "t/en.txt.hbs",
        "Plain hello {{customer.first_name}}\n",
    );
    let (t, _) = Templates::load(dir.path(), "en");
    assert_eq!(
        t.render("t", None, &data).unwrap().text,
        "Plain hello Sam\n"
    );
}
