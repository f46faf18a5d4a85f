//! Template throughput: renders per second on one core.
//!
//! Run: `CARGO_TARGET_DIR=/tmp/bench-target cargo bench --bench templates`
//! (cwd = crate root). Target: >= 50,000 full renders/s per core.
//! Nothing here asserts on timing.
//!
//! A full render is subject + preheader + HTML body + layout + text part.
//! No shipped template has a `<locale>.txt.hbs`, so the text part is the
//! text template derived from the HTML template at load time (html2text
//! runs once per template, not per message). For comparison the bench also
//! renders the same template from a copy of `templates/` that adds a small
//! `hu.txt.hbs`, and measures `html_to_text` alone on the rendered body (what
//! each message paid for its text part before).

use std::hint::black_box;
use std::path::Path;

use aftercare::engine::state::Context;
use aftercare::template::data::{self, Origin, sample_data, sample_event};
use aftercare::template::{Parts, Templates, html_to_text};
use aftercare::validate;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The allocator the shipped binary renders with (`src/main.rs`): measured
/// on glibc's malloc, the bench would time an allocator no user runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TEXT_PART: &str =
    "{{#if customer.first_name}}Kedves {{customer.first_name}}!{{else}}Kedves Vásárlónk!{{/if}}

Köszönjük a rendelését! Rendelésszám: #{{order.number}}
{{#each order.items}}
- {{quantity}} x {{name}}: {{money unit_price ../order.currency}}
{{/each}}
Összesen: {{money order.total order.currency}}

Üdvözlettel:
{{sender.name}}
";

/// Copies `src` (two levels: template folders and their files) to `dst`.
fn copy_templates(src: &Path, dst: &Path) {
    for entry in std::fs::read_dir(src).expect("read templates/") {
        let entry = entry.expect("dir entry");
        let to = dst.join(entry.file_name());
        if entry.path().is_dir() {
            std::fs::create_dir_all(&to).expect("mkdir");
            for f in std::fs::read_dir(entry.path()).expect("read template dir") {
                let f = f.expect("dir entry");
                std::fs::copy(f.path(), to.join(f.file_name())).expect("copy");
            }
        } else {
            std::fs::copy(entry.path(), &to).expect("copy");
        }
    }
}

fn bench_templates(c: &mut Criterion) {
    let loaded = validate::load(Path::new("sequences"), Path::new("templates"));
    assert!(
        !loaded.diagnostics.has_errors(),
        "the shipped catalog has errors:\n{}",
        loaded.diagnostics
    );
    let catalog = &loaded.catalog;
    let tpl = &loaded.templates;

    // The same templates plus a text part for order-confirmation/hu.
    let dir = tempfile::tempdir().expect("tempdir");
    copy_templates(Path::new("templates"), dir.path());
    std::fs::write(dir.path().join("order-confirmation/hu.txt.hbs"), TEXT_PART).expect("write");
    let (tpl_text, diags) = Templates::load(dir.path(), &catalog.policies.default_locale);
    assert!(!diags.has_errors(), "copied templates:\n{diags}");

    let id = "order-confirmation";
    let data = sample_data(&catalog.policies, id, None);

    let full = tpl.render(id, Some("hu-HU"), &data).expect("renders");
    assert_eq!(full.locale, "hu");
    let with_text = tpl_text.render(id, Some("hu-HU"), &data).expect("renders");
    assert!(
        with_text.text.starts_with("Kedves Sam!"),
        "{}",
        with_text.text
    );
    assert_eq!(with_text.html, full.html);

    let mut g = c.benchmark_group("templates");
    g.throughput(Throughput::Elements(1));
    g.bench_function("render/order-confirmation/hu-HU(full, derived text)", |b| {
        b.iter(|| black_box(tpl.render(black_box(id), Some("hu-HU"), black_box(&data))))
    });
    // What the sender does: the data it built is moved in (its copy is made
    // outside the measurement; dropping it is measured).
    g.bench_function(
        "render_with/order-confirmation/hu-HU(full, derived text, data moved in)",
        |b| {
            b.iter_batched(
                || data.clone(),
                |d| black_box(tpl.render_with(black_box(id), Some("hu-HU"), d, Parts::All)),
                criterion::BatchSize::SmallInput,
            )
        },
    );
    g.bench_function(
        "render/order-confirmation/hu-HU(txt.hbs, no html2text)",
        |b| b.iter(|| black_box(tpl_text.render(black_box(id), Some("hu-HU"), black_box(&data)))),
    );
    // A short English template, the most common kind in the value sequences.
    let short = "review-request-short";
    let short_data = sample_data(&catalog.policies, short, None);
    tpl.render(short, Some("en-US"), &short_data)
        .expect("renders");
    g.bench_function(
        "render/review-request-short/en-US(full, derived text)",
        |b| {
            b.iter(|| {
                black_box(tpl.render(black_box(short), Some("en-US"), black_box(&short_data)))
            })
        },
    );
    g.finish();

    let mut p = c.benchmark_group("templates_parts");
    p.throughput(Throughput::Elements(1));
    let body = tpl
        .render_with(id, Some("hu-HU"), data.clone(), Parts::NoText)
        .expect("renders")
        .html;
    p.bench_function("html_to_text(order-confirmation/hu body)", |b| {
        b.iter(|| black_box(html_to_text(black_box(&body))))
    });
    p.bench_function("render_with(order-confirmation/hu-HU, NoText)", |b| {
        b.iter(|| {
            black_box(tpl.render_with(
                black_box(id),
                Some("hu-HU"),
                black_box(data.clone()),
                Parts::NoText,
            ))
        })
    });
    p.bench_function("resolve_locale(hu-HU)", |b| {
        b.iter(|| {
            black_box(
                tpl.resolve_locale(black_box(id), Some("hu-HU"))
                    .map(str::len),
            )
        })
    });
    p.bench_function("clone_template_data", |b| {
        b.iter(|| black_box(data.clone()))
    });
    let event = sample_event();
    let ctx = Context::of_event(&event);
    let ctx_now = event.occurred_at;
    p.bench_function("data::build(sample context)", |b| {
        b.iter(|| {
            black_box(data::build(
                black_box(ctx.view()),
                &catalog.policies,
                Origin {
                    sequence: "fulfilment",
                    step: "order-confirmation",
                },
                ctx_now,
            ))
        })
    });
    p.finish();
}

criterion_group!(benches, bench_templates);
criterion_main!(benches);
