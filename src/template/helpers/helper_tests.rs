//! Each helper rendered through a strict registry as the templates use it,
//! in the five shipped languages (en, hu, th, bg, zh) and a few more where a
//! rule shows only there (Turkish case, Polish plurals, German percent).

use handlebars::Handlebars;
use serde_json::{Value, json};

/// A registry as `Templates::load` makes them, strict; as the one for text
/// parts, it does not escape HTML (so that the tests read as the text does).
fn registry() -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    super::register(&mut hb);
    hb
}

/// Data for a customer in `locale` reading a template in the same locale,
/// rendered at 2026-11-20 10:00 UTC (11:00 in Budapest).
fn data(locale: &str) -> Value {
    json!({
        "_locale": locale,
        "_template_locale": locale,
        "_timezone": "Europe/Budapest",
        "_now": "2026-11-20T10:00:00Z",
        "customer": {"first_name": "anna", "nickname": null, "empty": "", "blank": "  ",
                     "orders_count": 3, "total_spent": "1234.5", "zero": 0,
                     "attributes": {"birthday": "1990-04-02"}},
        "order": {"placed_at": "2026-11-17T09:12:00Z", "total": "129.90",
                  "items": [{"name": "DSLR 200"}]},
        "review": {"rating": 4, "none": null},
    })
}

fn render_with(tpl: &str, data: &Value) -> Result<String, String> {
    registry()
        .render_template(tpl, data)
        .map_err(|e| match e.reason() {
            handlebars::RenderErrorReason::MissingVariable(Some(p)) => {
                format!("unknown variable `{p}`")
            }
            r => r.to_string(),
        })
}

fn render(tpl: &str, locale: &str) -> String {
    render_with(tpl, &data(locale)).unwrap_or_else(|e| panic!("{tpl} in {locale}: {e}"))
}

fn error(tpl: &str) -> String {
    match render_with(tpl, &data("en")) {
        Ok(out) => panic!("{tpl} rendered {out:?}, wanted an error"),
        Err(e) => e,
    }
}

/// The same template in each locale: `(locale, expected)`.
fn each(tpl: &str, want: &[(&str, &str)]) {
    for (locale, expected) in want {
        assert_eq!(render(tpl, locale), *expected, "{tpl} in {locale}");
    }
}

fn with(locale: &str, extra: Value) -> Value {
    let mut d = data(locale);
    crate::template::data::merge(&mut d, &extra);
    d
}

// --- letter case -----------------------------------------------------------

#[test]
fn upper_and_lower_by_the_language_rules() {
    let d = |l: &str, s: &str| with(l, json!({"s": s}));
    let up = |l: &str, s: &str| render_with("{{upper s}}", &d(l, s)).unwrap();
    let low = |l: &str, s: &str| render_with("{{lower s}}", &d(l, s)).unwrap();
    assert_eq!(up("hu", "árvíztűrő tükörfúrógép"), "ÁRVÍZTŰRŐ TÜKÖRFÚRÓGÉP");
    assert_eq!(up("bg", "благодарим ви"), "БЛАГОДАРИМ ВИ");
    assert_eq!(low("bg", "БЛАГОДАРИМ"), "благодарим");
    // Thai and Chinese have no letter case: the text is left as it is.
    assert_eq!(up("th", "ขอบคุณ abc"), "ขอบคุณ ABC");
    assert_eq!(up("zh", "谢谢 abc"), "谢谢 ABC");
    // The template's language decides: a Turkish `i` has a dot as a capital.
    assert_eq!(up("tr", "istanbul"), "İSTANBUL");
    assert_eq!(up("en", "istanbul"), "ISTANBUL");
    // Greek ends a word with a final sigma.
    assert_eq!(low("el", "ΟΔΟΣ"), "οδο\u{3c2}");
    assert_eq!(low("hu", "ÁRVÍZ"), "árvíz");
}

#[test]
fn capitalize_and_title_keep_the_rest_as_written() {
    let d = |l: &str, s: &str| with(l, json!({"s": s}));
    let cap = |l: &str, s: &str| render_with("{{capitalize s}}", &d(l, s)).unwrap();
    let title = |l: &str, s: &str| render_with("{{title s}}", &d(l, s)).unwrap();
    assert_eq!(cap("en", "élan vital"), "Élan vital");
    assert_eq!(cap("en", "mcDonald's"), "McDonald's");
    assert_eq!(
        cap("en", "\u{201c}quoted\u{201d}"),
        "\u{201c}Quoted\u{201d}"
    );
    assert_eq!(cap("hu", "ügyfél"), "Ügyfél");
    assert_eq!(cap("bg", "иван"), "Иван");
    assert_eq!(title("en", "mary-jane o'neil"), "Mary-Jane O'neil");
    assert_eq!(title("hu", "kovács anna"), "Kovács Anna");
    assert_eq!(title("bg", "иван петров"), "Иван Петров");
    assert_eq!(
        title("en", "3d printing for DSLR fans"),
        "3d Printing For DSLR Fans"
    );
    assert_eq!(title("th", "ขอบคุณ"), "ขอบคุณ");
    assert_eq!(title("zh", "谢谢"), "谢谢");
    // With `lower` first, the rest is lowered too.
    assert_eq!(
        render_with("{{title (lower s)}}", &d("en", "ANNA KOVÁCS")).unwrap(),
        "Anna Kovács"
    );
}

#[test]
fn case_helpers_escape_html_and_render_null_empty() {
    // In the HTML part, what a helper gives is escaped like any value.
    let mut html = Handlebars::new();
    html.set_strict_mode(true);
    super::register(&mut html);
    let d = with("en", json!({"s": "<b>tom & jerry</b>"}));
    assert_eq!(
        html.render_template("{{upper s}} {{truncate s 9}}", &d)
            .unwrap(),
        "&lt;B&gt;TOM &amp; JERRY&lt;/B&gt; &lt;b&gt;tom &amp;…"
    );
    assert_eq!(render("[{{upper customer.nickname}}]", "en"), "[]");
    assert_eq!(render("{{upper customer.orders_count}}", "en"), "3");
}

#[test]
fn case_helper_errors_name_the_helper() {
    assert_eq!(
        error("{{upper customer.frist_name}}"),
        "unknown variable `customer.frist_name`"
    );
    assert!(
        error("{{lower order.items}}").starts_with("lower: takes text, not a list"),
        "{}",
        error("{{lower order.items}}")
    );
    assert!(error("{{title customer}}").starts_with("title: takes text, not an object"));
    assert!(error("{{upper}}").starts_with("upper: needs the text: {{upper text}}"));
    assert!(error("{{capitalize \"a\" \"b\"}}").starts_with("capitalize: takes 1 argument, not 2"));
}

// --- truncate --------------------------------------------------------------

fn cut(locale: &str, s: &str, n: usize) -> String {
    render_with(
        &format!("{{{{truncate s {n}}}}}"),
        &with(locale, json!({"s": s})),
    )
    .unwrap()
}

fn chars(s: &str) -> usize {
    super::text::characters(s)
}

#[test]
fn truncate_cuts_at_a_word_end_with_an_ellipsis() {
    let fox = "The quick brown fox jumps over the lazy dog";
    assert_eq!(cut("en", fox, 100), fox);
    assert_eq!(cut("en", fox, 43), fox, "exactly the length: not cut");
    assert_eq!(cut("en", fox, 20), "The quick brown fox…");
    assert_eq!(cut("en", fox, 15), "The quick…");
    // No comma or space before the ellipsis.
    assert_eq!(cut("en", "Hello, wonderful world", 8), "Hello…");
    // A word longer than the room is cut between two characters.
    assert_eq!(
        cut("en", "Supercalifragilisticexpialidocious", 10),
        "Supercali…"
    );
    // A word boundary that would keep less than half the room is not taken.
    assert_eq!(cut("en", "A Supercalifragilistic word", 12), "A Supercali…");
    assert_eq!(
        cut("hu", "Meglévő ügyfelei támogatása kifizetődő", 20),
        "Meglévő ügyfelei…"
    );
    assert_eq!(
        cut("bg", "Изграждането на стабилна и лоялна клиентела", 25),
        "Изграждането на стабилна…"
    );
    for n in [5, 12, 20, 30] {
        assert!(chars(&cut("en", fox, n)) <= n, "{n}");
    }
}

#[test]
fn truncate_finds_thai_and_chinese_words_without_spaces() {
    // Thai writes words without spaces, and a consonant carries its vowel
    // and tone marks (ต้ is one character of two code points).
    let th = "ต้องการขยายธุรกิจของคุณอย่างจริงจังหรือไม่";
    let out = cut("th", th, 16);
    assert_eq!(out, "ต้องการขยายธุรกิจ…");
    let words = ["ต้องการ", "ขยาย", "ธุรกิจ", "ของ", "คุณ", "อย่าง", "จริงจัง"];
    for n in 4..30 {
        let out = cut("th", th, n);
        assert!(chars(&out) <= n, "{n}: {out}");
        let kept = out.trim_end_matches('…');
        // Whole words, or (a long first word) whole characters.
        let mut rest = kept;
        for w in words {
            match rest.strip_prefix(w) {
                Some(r) => rest = r,
                None => break,
            }
        }
        assert!(
            rest.is_empty() || kept.chars().count() < words[0].chars().count() + 6,
            "{n}: {out} ends inside a word"
        );
        let last = kept.chars().last().unwrap();
        assert!(
            !('\u{0E31}'..='\u{0E3A}').contains(&last) || th.starts_with(kept),
            "{n}: {out}"
        );
        assert!(th.starts_with(kept), "{n}: {out}");
    }
    // A mark is never cut from its letter.
    assert_eq!(cut("th", "ที่ผ่านมา", 2), "ที่…");
    let zh = "每个企业需要源源不断的新的潜在顾客的到来。";
    let out = cut("zh", zh, 8);
    assert_eq!(out, "每个企业需要…");
    assert!(chars(&out) <= 8);
}

#[test]
fn truncate_counts_what_a_reader_sees_as_one_character() {
    // A family emoji is five code points joined, one character to a reader.
    let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}";
    let s = format!("{family}{family}{family}{family}");
    assert_eq!(cut("en", &s, 4), s);
    assert_eq!(cut("en", &s, 3), format!("{family}{family}…"));
}

#[test]
fn len_counts_characters_as_truncate_does() {
    let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}";
    let d = with(
        "en",
        json!({"th": "สวัสดี", "zh": "你好", "hu": "Árvíztűrő", "bg": "Здравей",
               "emoji": family, "empty": "", "items": [1, 2, 3], "map": {"a": 1, "b": 2},
               "n": 42, "none": null}),
    );
    let len = |path: &str| render_with(&format!("{{{{len {path}}}}}"), &d).unwrap();
    // สวัสดี is six code points, 18 bytes, and four characters to a reader.
    assert_eq!(len("th"), "4");
    assert_eq!(len("zh"), "2");
    assert_eq!(len("hu"), "9");
    assert_eq!(len("bg"), "7");
    assert_eq!(len("emoji"), "1");
    assert_eq!(len("empty"), "0");
    // The rest as handlebars' own: items, keys, 0 for anything else.
    assert_eq!(len("items"), "3");
    assert_eq!(len("map"), "2");
    assert_eq!(len("n"), "0");
    assert_eq!(len("none"), "0");
    // What it counts, `truncate` keeps: no cut at the length it says.
    let th = render_with("{{truncate th (len th)}}", &d).unwrap();
    assert_eq!(th, "สวัสดี");
    assert_eq!(
        render_with("{{#if (gt (len th) 5)}}long{{else}}short{{/if}}", &d).unwrap(),
        "short"
    );
    // A missing field is an error in a strict registry, as before.
    assert!(render_with("{{len nothing}}", &d).is_err());
}

#[test]
fn truncate_takes_another_ellipsis() {
    let d = with("en", json!({"s": "The quick brown fox jumps"}));
    let r = |t: &str| render_with(t, &d).unwrap();
    assert_eq!(r("{{truncate s 12 ellipsis=\"...\"}}"), "The quick...");
    assert_eq!(r("{{truncate s 9 ellipsis=\"\"}}"), "The quick");
    assert_eq!(r("{{truncate s 2 ellipsis=\"...\"}}"), "..");
    // Composes: the name of the first item, upper case, at most 6.
    assert_eq!(
        render("{{truncate (upper order.items.0.name) 6}}", "en"),
        "DSLR…"
    );
    assert_eq!(render("[{{truncate customer.nickname 5}}]", "en"), "[]");
}

#[test]
fn truncate_errors_say_what_is_wrong() {
    assert!(
        error("{{truncate order.total \"forty\"}}").starts_with(
            "truncate: the length is a whole number of characters above 0, such as 40, not \"forty\""
        ),
        "{}",
        error("{{truncate order.total \"forty\"}}")
    );
    assert!(error("{{truncate order.total 0}}").contains("above 0"));
    assert!(error("{{truncate order.total}}").starts_with("truncate: needs the length"));
    assert!(
        error("{{truncate order.total 5 elipsis=\"..\"}}")
            .starts_with("truncate: unknown option `elipsis=`; it takes ellipsis=")
    );
    assert!(error("{{truncate order.total 5 ellipsis=3}}").contains("ellipsis= takes text"));
    assert_eq!(
        error("{{truncate order.titel 5}}"),
        "unknown variable `order.titel`"
    );
}

// --- default ---------------------------------------------------------------

#[test]
fn default_fills_null_empty_and_missing_attributes() {
    let t = |v: &str| render(&format!("{{{{default {v} \"there\"}}}}"), "en");
    assert_eq!(t("customer.first_name"), "anna");
    assert_eq!(t("customer.nickname"), "there");
    assert_eq!(t("customer.empty"), "there");
    assert_eq!(t("customer.blank"), "there");
    assert_eq!(t("customer.zero"), "0", "zero is a value");
    assert_eq!(t("customer.attributes.birthday"), "1990-04-02");
    assert_eq!(t("customer.attributes.nickname"), "there");
    assert_eq!(
        render(
            "{{#with customer.attributes}}{{default pet \"x\"}}{{/with}}",
            "en"
        ),
        "x"
    );
    // The fallback may be a variable, and the result composes.
    assert_eq!(
        render(
            "{{upper (default customer.nickname customer.first_name)}}",
            "en"
        ),
        "ANNA"
    );
    assert_eq!(
        render("{{number (default review.none 0) decimals=1}}", "hu"),
        "0,0"
    );
}

#[test]
fn default_still_catches_a_misspelled_name() {
    assert_eq!(
        error("{{default customer.frist_name \"there\"}}"),
        "unknown variable `customer.frist_name`"
    );
    assert_eq!(
        error("{{default customer.nickname customer.nick}}"),
        "unknown variable `customer.nick`"
    );
    assert!(error("{{default customer.nickname}}").starts_with("default: needs the fallback"));
}

// --- numbers ---------------------------------------------------------------

#[test]
fn number_uses_the_locale_separators() {
    each(
        "{{number 1234567.891}}",
        &[
            ("en", "1,234,567.891"),
            ("hu", "1\u{a0}234\u{a0}567,891"),
            ("th", "1,234,567.891"),
            ("bg", "1\u{a0}234\u{a0}567,891"),
            ("zh", "1,234,567.891"),
            ("de", "1.234.567,891"),
        ],
    );
    // Money is a decimal string; at most three decimals unless asked.
    each(
        "{{number customer.total_spent}} {{number customer.total_spent decimals=2}}",
        &[
            ("en", "1,234.5 1,234.50"),
            // Hungarian groups no number of four digits (CLDR).
            ("hu", "1234,5 1234,50"),
            ("zh", "1,234.5 1,234.50"),
        ],
    );
    each("{{number 2.0005}} {{number -0.0001}}", &[("en", "2.001 0")]);
    each(
        "{{number 7 decimals=0}} {{number 7.5 decimals=0}}",
        &[("en", "7 8")],
    );
    // The customer's locale sets the format (as for `money`), whatever the template's.
    let d = with("en", json!({"_locale": "hu-HU"}));
    assert_eq!(
        render_with("{{number 12345.5}}", &d).unwrap(),
        "12\u{a0}345,5"
    );
    assert_eq!(render("[{{number customer.nickname}}]", "en"), "[]");
}

#[test]
fn percent_uses_the_locale_pattern() {
    each(
        "{{percent 0.15}}",
        &[
            ("en", "15%"),
            ("hu", "15%"),
            ("th", "15%"),
            ("bg", "15%"),
            ("zh", "15%"),
            ("de", "15\u{a0}%"),
        ],
    );
    each(
        "{{percent 0.155 decimals=1}} {{percent 12.345}} {{percent \"0.005\"}}",
        &[
            ("en", "15.5% 1,235% 1%"),
            ("hu", "15,5% 1235% 1%"),
            ("bg", "15,5% 1235% 1%"),
        ],
    );
}

#[test]
fn number_errors_say_what_is_wrong() {
    assert!(error("{{number \"abc\"}}").starts_with("number: \"abc\" is not a number"));
    assert!(
        error("{{percent \"15%\"}}")
            .starts_with("percent: \"15%\" is not a number (a fraction: 0.15 is 15%)")
    );
    assert!(
        error("{{number 1 decimals=11}}")
            .starts_with("number: decimals= takes a whole number from 0 to 10")
    );
    assert!(error("{{number 1 digits=2}}").starts_with("number: unknown option `digits=`"));
    assert_eq!(
        error("{{number order.totl}}"),
        "unknown variable `order.totl`"
    );
}

// --- plural ----------------------------------------------------------------

fn plural(locale: &str, n: &str) -> String {
    render(
        &format!(
            "{{{{plural {n} zero=\"zero\" one=\"one\" two=\"two\" few=\"few\" many=\"many\" other=\"other\"}}}}"
        ),
        locale,
    )
}

#[test]
fn plural_follows_the_cldr_categories_of_each_language() {
    let table: &[(&str, &[(&str, &str)])] = &[
        // English and Bulgarian: one for 1, other for the rest (1.5 too).
        (
            "en",
            &[
                ("0", "other"),
                ("1", "one"),
                ("2", "other"),
                ("21", "other"),
                ("1.5", "other"),
            ],
        ),
        (
            "bg",
            &[
                ("0", "other"),
                ("1", "one"),
                ("2", "other"),
                ("21", "other"),
            ],
        ),
        // Hungarian: CLDR gives 1 `one` as well (nouns do not change after a
        // number, so a template may give `other` alone: see below).
        ("hu", &[("0", "other"), ("1", "one"), ("5", "other")]),
        // Thai and Chinese: one form for every count.
        ("th", &[("0", "other"), ("1", "other"), ("2", "other")]),
        ("zh", &[("0", "other"), ("1", "other"), ("2", "other")]),
        // Polish: few and many; Arabic all six.
        (
            "pl",
            &[
                ("1", "one"),
                ("2", "few"),
                ("5", "many"),
                ("22", "few"),
                ("25", "many"),
            ],
        ),
        (
            "ar",
            &[
                ("0", "zero"),
                ("1", "one"),
                ("2", "two"),
                ("3", "few"),
                ("11", "many"),
                ("100", "other"),
            ],
        ),
    ];
    for (locale, cases) in table {
        for (n, want) in *cases {
            assert_eq!(plural(locale, n), *want, "{n} in {locale}");
        }
    }
}

#[test]
fn plural_falls_back_to_other_and_writes_the_count_for_hash() {
    each(
        "{{plural customer.orders_count one=\"order\" other=\"orders\"}}",
        &[("en", "orders")],
    );
    each(
        "{{plural 1 one=\"order\" other=\"orders\"}}",
        &[
            ("en", "order"),
            ("bg", "order"),
            ("th", "orders"),
            ("zh", "orders"),
        ],
    );
    // A language with one form gives `other` alone.
    each("{{plural 1 other=\"rendelés\"}}", &[("hu", "rendelés")]);
    each(
        "{{plural 12345 one=\"# order\" other=\"# orders\"}}",
        &[("en", "12,345 orders"), ("hu", "12\u{a0}345 orders")],
    );
    each("{{plural 3 other=\"#个订单\"}}", &[("zh", "3个订单")]);
    // The words follow the template's language: an English template sent
    // to a Thai customer still says "1 order".
    let d = with("th", json!({"_template_locale": "en"}));
    assert_eq!(
        render_with("{{plural 1 one=\"order\" other=\"orders\"}}", &d).unwrap(),
        "order"
    );
    assert_eq!(render("[{{plural review.none other=\"x\"}}]", "en"), "[]");
}

#[test]
fn plural_errors_name_the_category() {
    assert!(
        error("{{plural 1 one=\"a\"}}").starts_with("plural: needs other=\"…\""),
        "{}",
        error("{{plural 1 one=\"a\"}}")
    );
    assert!(error("{{plural 1 onee=\"a\" other=\"b\"}}").starts_with(
        "plural: unknown option `onee=`; it takes zero=, one=, two=, few=, many=, other="
    ));
    assert!(error("{{plural \"x\" other=\"b\"}}").starts_with("plural: \"x\" is not a number"));
    assert!(error("{{plural 1 other=2}}").starts_with("plural: other= takes text in quotes"));
}

// --- ranges and comparisons --------------------------------------------------

#[test]
fn range_gives_the_numbers_from_first_to_last() {
    assert_eq!(
        render("{{#each (range 1 5)}}{{this}}{{/each}}", "en"),
        "12345"
    );
    assert_eq!(render("{{#each (range 3 1)}}x{{/each}}", "en"), "");
    assert_eq!(
        render("{{#each (range -1 1)}}[{{this}}]{{/each}}", "en"),
        "[-1][0][1]"
    );
    assert_eq!(
        render("{{#each (range 1 review.rating)}}★{{/each}}", "en"),
        "★★★★"
    );
    assert_eq!(
        render("{{#each (range 1 review.none)}}★{{/each}}", "en"),
        ""
    );
    assert_eq!(render("{{len (range 1 1000)}}", "en"), "1000");
}

#[test]
fn range_errors() {
    assert!(error("{{range 1 1001}}").starts_with("range: 1 to 1001 is more than 1000 numbers"));
    assert!(
        error("{{range 1 2.5}}").starts_with("range: the last number is a whole number, not 2.5")
    );
    assert!(error("{{range 1}}").starts_with("range: needs the last number"));
}

#[test]
fn built_in_comparisons_work_in_if() {
    let t = |tpl: &str| render(tpl, "en");
    assert_eq!(
        t("{{#if (gte customer.orders_count 3)}}loyal{{else}}new{{/if}}"),
        "loyal"
    );
    assert_eq!(
        t("{{#if (lt customer.orders_count 3)}}new{{else}}loyal{{/if}}"),
        "loyal"
    );
    // Money is a decimal string: compared with a number, it is a number.
    assert_eq!(t("{{#if (gt customer.total_spent 1000)}}big{{/if}}"), "big");
    assert_eq!(
        t("{{#if (and (eq review.rating 4) (not customer.nickname))}}yes{{/if}}"),
        "yes"
    );
    assert_eq!(
        t("{{#if (or (eq customer.zero 1) (ne customer.first_name \"x\"))}}yes{{/if}}"),
        "yes"
    );
}

// --- dates -----------------------------------------------------------------

#[test]
fn date_add_moves_a_timestamp() {
    let t = |tpl: &str| render(tpl, "en");
    assert_eq!(
        t("{{date_add order.placed_at \"30d\"}}"),
        "2026-12-17T09:12:00Z"
    );
    assert_eq!(
        t("{{date_add order.placed_at \"-7d\"}}"),
        "2026-11-10T09:12:00Z"
    );
    assert_eq!(
        t("{{date_add order.placed_at \"1d12h\"}}"),
        "2026-11-18T21:12:00Z"
    );
    assert_eq!(
        t("{{date_add order.placed_at \"2w\"}}"),
        "2026-12-01T09:12:00Z"
    );
    // Calendar months in the customer's time zone: the end of a short month,
    // and the same local time of day across the change to summer time.
    let d = |at: &str| with("en", json!({"t": at}));
    let r = |tpl: &str, at: &str| render_with(tpl, &d(at)).unwrap();
    assert_eq!(
        r("{{date_add t \"1mo\"}}", "2026-01-31T10:00:00Z"),
        "2026-02-28T10:00:00Z"
    );
    assert_eq!(
        r("{{date_add t \"1mo\"}}", "2026-03-15T10:00:00Z"),
        "2026-04-15T09:00:00Z"
    );
    assert_eq!(
        r("{{date_add t \"30d\"}}", "2026-03-15T10:00:00Z"),
        "2026-04-14T10:00:00Z"
    );
    assert_eq!(
        r("{{date_add t \"-1y\"}}", "2024-02-29T10:00:00Z"),
        "2023-02-28T10:00:00Z"
    );
    // A date alone is midnight in the customer's time zone.
    assert_eq!(
        t("{{date_add customer.attributes.birthday \"1y\"}}"),
        "1991-04-01T22:00:00Z"
    );
    assert_eq!(t("[{{date_add review.none \"1d\"}}]"), "[]");
}

#[test]
fn date_add_composes_with_date_and_relative() {
    each(
        "{{date (date_add order.placed_at \"30d\")}}",
        &[
            ("en", "17 December 2026"),
            ("hu", "2026. december 17."),
            ("zh", "2026年12月17日"),
        ],
    );
    each(
        "{{relative (date_add order.placed_at \"30d\")}}",
        &[("en", "in 3 weeks"), ("hu", "3 hét múlva")],
    );
}

#[test]
fn date_add_errors() {
    assert!(
        error("{{date_add order.placed_at \"30x\"}}").starts_with(
            "date_add: \"30x\" is not a duration; write e.g. 30m, 2h, 3d or 2w, 1mo or 1y"
        ),
        "{}",
        error("{{date_add order.placed_at \"30x\"}}")
    );
    assert!(error("{{date_add order.placed_at \"1mo2d\"}}").contains("not a duration"));
    assert!(error("{{date_add order.placed_at \"121mo\"}}").contains("longer than 10 years"));
    assert!(
        error("{{date_add order.placed_at 30}}")
            .starts_with("date_add: the duration is text in quotes such as \"30d\", not 30")
    );
    assert!(error("{{date_add order.placed_at}}").starts_with("date_add: needs a duration"));
    assert!(error("{{date_add \"yesterday\" \"1d\"}}").contains("is not a timestamp (RFC 3339"));
}

#[test]
fn relative_in_five_languages() {
    // Now is 2026-11-20 11:00 in Budapest.
    let cases: &[(&str, &str, [&str; 5])] = &[
        // order.placed_at: three calendar days before.
        (
            "2026-11-17T09:12:00Z",
            "",
            [
                "3 days ago",
                "3 nappal ezelőtt",
                "3 วันที่ผ่านมา",
                "преди 3 дни",
                "3天前",
            ],
        ),
        (
            "2026-11-23T12:00:00Z",
            "",
            [
                "in 3 days",
                "3 nap múlva",
                "ในอีก 3 วัน",
                "след 3 дни",
                "3天后",
            ],
        ),
        (
            "2026-11-19T08:00:00Z",
            "",
            ["yesterday", "tegnap", "เมื่อวาน", "вчера", "昨天"],
        ),
        (
            "2026-11-21T12:00:00Z",
            "",
            ["tomorrow", "holnap", "พรุ่งนี้", "утре", "明天"],
        ),
        (
            "2026-11-20T09:59:40Z",
            "",
            ["now", "most", "ขณะนี้", "сега", "现在"],
        ),
        (
            "2026-11-20T09:55:00Z",
            "",
            [
                "5 minutes ago",
                "5 perccel ezelőtt",
                "5 นาทีที่ผ่านมา",
                "преди 5 минути",
                "5分钟前",
            ],
        ),
        (
            "2026-11-20T14:30:00Z",
            "",
            [
                "in 4 hours",
                "4 óra múlva",
                "ในอีก 4 ชั่วโมง",
                "след 4 часа",
                "4小时后",
            ],
        ),
        (
            "2026-11-05T10:00:00Z",
            "",
            [
                "2 weeks ago",
                "2 héttel ezelőtt",
                "2 สัปดาห์ที่ผ่านมา",
                "преди 2 седмици",
                "2周前",
            ],
        ),
        (
            "2026-09-10T10:00:00Z",
            "",
            [
                "2 months ago",
                "2 hónappal ezelőtt",
                "2 เดือนที่ผ่านมา",
                "преди 2 месеца",
                "2个月前",
            ],
        ),
        (
            "2029-01-01T10:00:00Z",
            "",
            [
                "in 2 years",
                "2 év múlva",
                "ในอีก 2 ปี",
                "след 2 години",
                "2年后",
            ],
        ),
        // A unit asked for.
        (
            "2026-09-10T10:00:00Z",
            "day",
            [
                "71 days ago",
                "71 nappal ezelőtt",
                "71 วันที่ผ่านมา",
                "преди 71 дни",
                "71天前",
            ],
        ),
        (
            "2026-11-20T12:00:00Z",
            "day",
            ["today", "ma", "วันนี้", "днес", "今天"],
        ),
    ];
    for (at, unit, want) in cases {
        let tpl = match *unit {
            "" => "{{relative t}}".to_string(),
            u => format!("{{{{relative t unit=\"{u}\"}}}}"),
        };
        for (locale, want) in ["en", "hu", "th", "bg", "zh"].iter().zip(want) {
            let got = render_with(&tpl, &with(locale, json!({"t": at}))).unwrap();
            assert_eq!(&got, want, "{at} {unit} in {locale}");
        }
    }
}

#[test]
fn relative_counts_calendar_days_in_the_customers_time_zone() {
    // 23:30 the evening before in Budapest, 30 minutes earlier than a
    // render at 00:30: 1 hour ago, and by the day, yesterday.
    let d = |tz: &str| {
        with(
            "en",
            json!({"_now": "2026-11-19T23:30:00Z", "_timezone": tz, "t": "2026-11-19T22:30:00Z"}),
        )
    };
    let r = |tpl: &str, tz: &str| render_with(tpl, &d(tz)).unwrap();
    assert_eq!(r("{{relative t}}", "Europe/Budapest"), "1 hour ago");
    assert_eq!(
        r("{{relative t unit=\"day\"}}", "Europe/Budapest"),
        "yesterday"
    );
    assert_eq!(r("{{relative t unit=\"day\"}}", "UTC"), "today");
}

#[test]
fn relative_follows_the_template_language_and_falls_back_to_english() {
    let d = with("zh", json!({"_template_locale": "en"}));
    assert_eq!(
        render_with("{{relative order.placed_at}}", &d).unwrap(),
        "3 days ago"
    );
    // A language CLDR has no words for gets English, not the root's `-3 d`.
    let d = with("en", json!({"_template_locale": "xx"}));
    assert_eq!(
        render_with("{{relative order.placed_at}}", &d).unwrap(),
        "3 days ago"
    );
    assert_eq!(render("[{{relative review.none}}]", "en"), "[]");
}

#[test]
fn relative_errors() {
    let mut d = data("en");
    d.as_object_mut().unwrap().remove("_now");
    let e = render_with("{{relative order.placed_at}}", &d).unwrap_err();
    assert!(e.starts_with("relative: the data has no `_now`"), "{e}");
    assert!(
        error("{{relative order.placed_at unit=\"fortnight\"}}").starts_with(
            "relative: unit=\"fortnight\" is not a unit; use minute, hour, day, week, month or year"
        )
    );
    assert!(error("{{relative 5}}").starts_with("relative: 5 is not a timestamp"));
    assert_eq!(
        error("{{relative order.placed}}"),
        "unknown variable `order.placed`"
    );
}

// --- through the templates and validate --------------------------------------

#[test]
fn validate_reports_a_helper_error_at_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let write = |f: &str, text: &str| {
        let p = d.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "seq/a.yaml",
        "id: a\ncategory: transactional\ntrigger: {event: order.placed}\nsteps:\n  - email: hello\n",
    );
    write(
        "tpl/hello/en.hbs",
        "---\nsubject: Hi {{default customer.first_name \"there\"}}\n---\n<p>Hello</p>\n<p>{{truncate order.number \"forty\"}}</p>\n",
    );
    write(
        "tpl/hello/hu.hbs",
        "---\nsubject: Szia\n---\n<p>{{plural customer.orders_count one=\"rendelés\"}}</p>\n",
    );
    let loaded = crate::validate::load(&d.join("seq"), &d.join("tpl"));
    let all = loaded.diagnostics.to_string();
    let p = |f: &str| d.join(f).display().to_string();
    for want in [
        format!(
            "{}:5:4: with the sample data: truncate: the length is a whole number",
            p("tpl/hello/en.hbs")
        ),
        format!(
            "{}:4:4: with the sample data: plural: needs other=",
            p("tpl/hello/hu.hbs")
        ),
    ] {
        assert!(all.contains(&want), "missing {want:?} in:\n{all}");
    }
}

#[test]
fn the_renderer_gives_the_helpers_the_template_language_and_now() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("t")).unwrap();
    std::fs::write(
        d.join("t/en.hbs"),
        "---\nsubject: \"{{relative order.placed_at}}\"\n---\n<p>{{plural 1 one=\"order\" other=\"orders\"}} {{number 1234.5}}</p>\n",
    )
    .unwrap();
    let (t, diags) = crate::template::Templates::load(d, "en");
    assert!(!diags.has_errors(), "{diags}");
    let data =
        crate::template::data::sample_data(&crate::sequence::model::Policies::default(), "t", None);
    // A Thai customer, for want of a Thai template, reads the English one:
    // English words, Thai number format; the sample is rendered at its
    // event's time, two days after the order.
    let r = t.render("t", Some("th-TH"), &data).unwrap();
    assert_eq!(r.subject, "2 days ago");
    assert!(r.html.contains("order 1,234.5"), "{}", r.html);
    let r = t.render("t", Some("hu"), &data).unwrap();
    assert!(r.html.contains("order 1234,5"), "{}", r.html);
}

#[test]
fn a_misspelled_name_in_a_comparison_is_reported_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("t")).unwrap();
    std::fs::write(
        d.join("t/en.hbs"),
        "---\nsubject: Hi\n---\n<p>\n{{#if (gte customer.order_count 3)}}loyal{{/if}}</p>\n",
    )
    .unwrap();
    let (t, diags) = crate::template::Templates::load(d, "en");
    assert!(!diags.has_errors(), "{diags}");
    let data =
        crate::template::data::sample_data(&crate::sequence::model::Policies::default(), "t", None);
    let e = t.render("t", Some("en"), &data).unwrap_err().to_string();
    assert!(
        e.ends_with(
            "t/en.hbs:5:1: gte: argument 1 is missing or names nothing in the data \
             (rendering is strict: check the name)"
        ),
        "{e}"
    );
}

#[test]
fn templates_with_helpers_keep_a_derived_text_part() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("t")).unwrap();
    std::fs::write(
        d.join("t/hu.hbs"),
        "---\nsubject: '{{capitalize (default customer.first_name \"vásárlónk\")}}'\n---\n\
         <p>Kedves {{title customer.first_name}}!</p>\n\
         <p>{{#if (gte customer.orders_count 3)}}Már {{customer.orders_count}} \
         {{plural customer.orders_count other=\"rendelés\"}}.{{/if}}</p>\n\
         <p>{{#each (range 1 review.rating)}}*{{/each}} {{truncate order.items.0.name 6}} \
         {{number customer.total_spent decimals=2}} {{percent 0.15}} \
         {{relative order.placed_at}}, {{date (date_add order.placed_at \"30d\")}}</p>\n",
    )
    .unwrap();
    let (t, diags) = crate::template::Templates::load(d, "en");
    assert!(!diags.has_errors(), "{diags}");
    assert_eq!(
        t.sets["t"].locales["hu"].text,
        crate::template::TextPart::Derived
    );
    let data =
        crate::template::data::sample_data(&crate::sequence::model::Policies::default(), "t", None);
    let r = t.render("t", Some("hu"), &data).unwrap();
    assert_eq!(r.subject, "Sam");
    let text: String = r.text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(
        text,
        // CLDR's Hungarian has a word for two days ago.
        "Kedves Sam! Már 3 rendelés. ***** DSLR… 389,70 15% tegnapelőtt, 2026. december 18."
    );
}

#[test]
fn the_data_carries_the_time_it_is_rendered_at() {
    use crate::template::data::{Origin, build, sample_data, sample_event};
    let p = crate::sequence::model::Policies::default();
    let ctx = crate::engine::state::Context::of_event(&sample_event());
    let at = "2027-01-02T03:04:05Z".parse().unwrap();
    let origin = Origin {
        sequence: "s",
        step: "e",
    };
    assert_eq!(
        build(ctx.view(), &p, origin, at)["_now"],
        "2027-01-02T03:04:05Z"
    );
    // The sample is rendered at its event's time, whatever the day.
    assert_eq!(sample_data(&p, "t", None)["_now"], "2026-11-20T10:00:00Z");
    let own = json!({"_now": "2026-12-24T18:00:00Z"});
    assert_eq!(
        sample_data(&p, "t", Some(&own))["_now"],
        "2026-12-24T18:00:00Z"
    );
}
