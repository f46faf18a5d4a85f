//! Open and click tracking: the HTML of an email gets an open pixel and its
//! links point at the click redirect; and which opens and clicks a machine
//! made.
//!
//! The HTML is rewritten with `lol_html`, a streaming HTML rewriter that
//! tokenizes as browsers do: attributes in any quoting, comments,
//! `<script>`/`<style>` text and conditional comments are handled as HTML,
//! not by patterns. Only `<a href>` with an absolute `http(s)` target is
//! rewritten; `mailto:`, `tel:`, anchors, relative links, this service's own
//! links (unsubscribe, tracking) and any link marked
//! `data-aftercare-track="off"` stay as they are.

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;

use chrono::{DateTime, Utc};
use lol_html::html_content::ContentType;
use lol_html::{RewriteStrSettings, element, end, rewrite_str};

use super::links::{Links, MAX_TRACKED_URL};

/// What to add to one email.
#[derive(Debug, Clone, Copy)]
pub struct Tracked<'a> {
    pub links: &'a Links,
    pub customer_id: &'a str,
    pub idempotency_key: &'a str,
    pub opens: bool,
    pub clicks: bool,
}

/// `html` with the open pixel (at the end of `<body>`, or of the document
/// when it has none) and the click redirects, as `t` asks.
pub fn rewrite(html: &str, t: &Tracked) -> Result<String, String> {
    if !t.opens && !t.clicks {
        return Ok(html.to_string());
    }
    let pixel = t.opens.then(|| {
        format!(
            "<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\" border=\"0\" \
             style=\"display:block;width:1px;height:1px;border:0;\">",
            t.links.open_url(t.customer_id, t.idempotency_key)
        )
    });
    // Links are selected as `a`, their `href` read in the handler: a
    // selector with an attribute condition (`a[href]`) made lol_html 3.0.3
    // panic on `<xmp\x0cd=><a></a>` (found by the fuzzer). Should the
    // rewriter panic on other markup, the email goes untracked.
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        rewrite_str(html, settings(t, pixel.as_deref()))
    }))
    .map_err(|_| "tracking links: the HTML rewriter failed on this markup".to_string())?
    .map_err(|e| format!("tracking links: {e}"))
}

/// The rewriter's handlers: click redirects on links, the pixel before
/// `</body>` (or at the end of a document whose body is never closed).
fn settings<'h>(t: &'h Tracked, pixel: Option<&str>) -> RewriteStrSettings<'h, 'h> {
    let placed = Rc::new(Cell::new(false));
    // Not strict: markup whose parse depends on the tree (`<select><xmp>`)
    // is rewritten on the rewriter's best reading rather than refused: at
    // worst a link there is not tracked.
    let mut settings = RewriteStrSettings::new().with_strict(false);
    if t.clicks {
        settings = settings.append_element_content_handler(element!("a", |el| {
            if let Some(off) = el.get_attribute("data-aftercare-track") {
                el.remove_attribute("data-aftercare-track");
                if off.eq_ignore_ascii_case("off") {
                    return Ok(());
                }
            }
            let Some(raw) = el.get_attribute("href") else {
                return Ok(());
            };
            let target = decode_entities(raw.trim());
            if trackable(&target, t.links) {
                let to = t.links.click_url(t.customer_id, t.idempotency_key, &target);
                // The redirect URL is base64url under the public URL: no `&`
                // or `"` to escape.
                el.set_attribute("href", &to)?;
            }
            Ok(())
        }));
    }
    if let Some(pixel) = pixel {
        // Before `</body>`; a body never closed (its end tag is what places
        // the pixel) leaves it to the end of the document.
        let at_body_end = (Rc::clone(&placed), pixel.to_string());
        let at_doc_end = (Rc::clone(&placed), pixel.to_string());
        settings = settings
            .append_element_content_handler(element!("body", move |el| {
                let (placed, pixel) = (Rc::clone(&at_body_end.0), at_body_end.1.clone());
                if let Some(handlers) = el.end_tag_handlers() {
                    let at_end: lol_html::EndTagHandler<'static> = Box::new(move |end| {
                        if !placed.get() {
                            end.before(&pixel, ContentType::Html);
                            placed.set(true);
                        }
                        Ok(())
                    });
                    handlers.push(at_end);
                }
                Ok(())
            }))
            .append_document_content_handler(end!(move |end| {
                if !at_doc_end.0.get() {
                    end.append(&at_doc_end.1, ContentType::Html);
                }
                Ok(())
            }));
    }
    settings
}

/// Whether a link's target is followed through the click redirect.
fn trackable(target: &str, links: &Links) -> bool {
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://"))
        && target.len() <= MAX_TRACKED_URL
        && !target.contains(['\n', '\r', '\t', ' '])
        && !links.is_own(target)
}

/// An attribute value as written in HTML, with its character references
/// decoded: numeric ones (`&#61;`, `&#x3D;`, as Handlebars writes `=`) and
/// the named ones that occur in URLs (`&amp;`, `&quot;`, `&apos;`, `&lt;`,
/// `&gt;`, `&equals;`, `&sol;`, `&quest;`, `&num;`, `&percnt;`). Another
/// named reference is left as written.
pub fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest[1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
            .map(|e| e + 1)
            .unwrap_or(rest.len());
        let name = &rest[1..end];
        let decoded = if let Some(num) = name.strip_prefix('#') {
            let n = match num.strip_prefix(['x', 'X']) {
                Some(h) => u32::from_str_radix(h, 16).ok(),
                None => num.parse::<u32>().ok(),
            };
            n.and_then(char::from_u32).filter(|c| *c != '\0')
        } else {
            match name {
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "equals" => Some('='),
                "sol" => Some('/'),
                "quest" => Some('?'),
                "num" => Some('#'),
                "percnt" => Some('%'),
                _ => None,
            }
        };
        match decoded {
            Some(c) => {
                out.push(c);
                let skip = if rest[end..].starts_with(';') {
                    end + 1
                } else {
                    end
                };
                rest = &rest[skip..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// How soon after sending an open or a click is taken for a machine's: no
/// person receives, opens and reads an email within this, but a link
/// scanner at the receiving server or a privacy proxy fetching every image
/// on delivery does.
pub const MACHINE_WITHIN: chrono::Duration = chrono::Duration::seconds(10);

/// User agents of known machine fetchers, matched case-insensitively as
/// substrings: security scanners and link checkers that follow every link,
/// and HTTP libraries. (Gmail's and Yahoo's image proxies fetch when the
/// customer opens the email, so their opens are human and not listed.)
const MACHINE_AGENTS: &[&str] = &[
    "bot",
    "crawler",
    "spider",
    "preview",
    "scanner",
    "barracuda",
    "proofpoint",
    "mimecast",
    "safelinks",
    "symantec",
    "forcepoint",
    "trendmicro",
    "sophos",
    "fortiguard",
    "python-requests",
    "python-urllib",
    "go-http-client",
    "curl/",
    "wget/",
    "okhttp",
    "java/",
    "libwww",
    "headlesschrome",
];

/// Whether an open or click was made by a machine, not the customer:
///
/// - no `User-Agent` at all, or one of [`MACHINE_AGENTS`];
/// - Apple Mail Privacy Protection's proxy, which loads every image of every
///   email on delivery whether or not it is read: its user agent is exactly
///   `Mozilla/5.0` with nothing after it;
/// - a `HEAD` request (link checkers ask for headers only);
/// - within [`MACHINE_WITHIN`] of sending (`sent_at`, the outbox row's last
///   hand-over to the transport).
///
/// A machine's open or click is recorded, marked, and does not count as
/// engagement (the sunset rule ignores it).
pub fn is_machine(
    user_agent: Option<&str>,
    head: bool,
    sent_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    if head {
        return true;
    }
    let Some(ua) = user_agent.map(str::trim).filter(|u| !u.is_empty()) else {
        return true;
    };
    if ua == "Mozilla/5.0" {
        return true;
    }
    let lower = ua.to_ascii_lowercase();
    if MACHINE_AGENTS.iter().any(|m| lower.contains(m)) {
        return true;
    }
    sent_at.is_some_and(|s| now - s < MACHINE_WITHIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::send::token::Token;

    fn links() -> Links {
        Links::new("https://m.shop.example", b"0123456789abcdef", None).unwrap()
    }

    fn tracked(l: &Links) -> Tracked<'_> {
        Tracked {
            links: l,
            customer_id: "c1",
            idempotency_key: "k1",
            opens: true,
            clicks: true,
        }
    }

    /// The target each rewritten link redirects to, in order.
    fn targets(l: &Links, html: &str) -> Vec<String> {
        let mut out = Vec::new();
        for part in html.split("https://m.shop.example/t/c/").skip(1) {
            let token: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            match l.verify(&token).unwrap() {
                Token::Click { url, .. } => out.push(url),
                other => panic!("{other:?}"),
            }
        }
        out
    }

    #[test]
    fn links_are_rewritten_as_html_not_as_text() {
        let l = links();
        let unsubscribe = l.unsubscribe_url("c1");
        let html = format!(
            r##"<html><body>
<!-- <a href="https://in.a.comment/">x</a> -->
<p>See <A HREF='https://shop.example/p?a=1&amp;b&#x3D;2'>this</A> and
<a class="btn" href=https://shop.example/unquoted>that</a>,
<a href="mailto:help@shop.example">mail</a>, <a href="#top">top</a>, <a href="/relative">rel</a>,
<a href="{unsubscribe}">unsubscribe</a>,
<a data-aftercare-track="off" href="https://shop.example/private">private</a>.</p>
<script>var s = '<a href="https://in.a.script/">';</script>
<p title='<a href="https://in.an.attribute/">'>text with href="https://not.a.link/"</p>
</body></html>"##
        );
        let out = rewrite(&html, &tracked(&l)).unwrap();
        assert_eq!(
            targets(&l, &out),
            [
                "https://shop.example/p?a=1&b=2",
                "https://shop.example/unquoted"
            ]
        );
        for kept in [
            "<!-- <a href=\"https://in.a.comment/\">x</a> -->",
            "href=\"mailto:help@shop.example\"",
            "href=\"#top\"",
            "href=\"/relative\"",
            "<a href=\"https://shop.example/private\">",
            "'<a href=\"https://in.a.script/\">'",
            "href=\"https://not.a.link/\"",
            "title='<a href=\"https://in.an.attribute/\">'",
        ] {
            assert!(out.contains(kept), "{kept} missing in\n{out}");
        }
        assert!(out.contains(&format!("href=\"{unsubscribe}\"")));
        assert!(!out.contains("data-aftercare-track"));
        // The pixel closes the body, once.
        assert_eq!(out.matches("/t/o/").count(), 1);
        assert!(out.contains("\"></body>"), "{out}");
    }

    #[test]
    fn the_pixel_goes_at_the_end_without_a_body_and_nothing_is_added_when_off() {
        let l = links();
        let out = rewrite("<p><a href=\"https://x.example/\">x</a></p>", &tracked(&l)).unwrap();
        assert!(out.ends_with("\">"), "{out}");
        assert_eq!(out.matches("/t/o/").count(), 1);
        let off = Tracked {
            opens: false,
            clicks: false,
            ..tracked(&l)
        };
        let html = "<p><a href=\"https://x.example/\">x</a></p>";
        assert_eq!(rewrite(html, &off).unwrap(), html);
        let clicks_only = Tracked {
            opens: false,
            ..tracked(&l)
        };
        let out = rewrite(html, &clicks_only).unwrap();
        assert!(!out.contains("/t/o/") && out.contains("/t/c/"), "{out}");
    }

    /// Markup a streaming parser cannot be sure of is still rewritten.
    #[test]
    fn ambiguous_markup_is_not_refused() {
        let l = links();
        let html = "<body><select><xmp><a href=\"https://x.example/\">x</a></xmp></select>\
                    <a href=\"https://y.example/\">y</a></body>";
        let out = rewrite(html, &tracked(&l)).unwrap();
        assert!(
            targets(&l, &out).contains(&"https://y.example/".to_string()),
            "{out}"
        );
        assert_eq!(out.matches("/t/o/").count(), 1);
    }

    /// Markup on which lol_html panicked with an `a[href]` selector (found
    /// by the fuzzer) is rewritten: links tracked, the pixel in.
    #[test]
    fn markup_the_rewriter_once_panicked_on_is_rewritten() {
        let l = links();
        let html = "<xmp\x0cd=><a></a><body><a href=\"https://y.example/\">y</a></body>";
        let out = rewrite(html, &tracked(&l)).unwrap();
        assert_eq!(out.matches("/t/o/").count(), 1, "{out}");
    }

    #[test]
    fn entities_are_decoded() {
        assert_eq!(decode_entities("a&amp;b&#x3D;c&#61;d"), "a&b=c=d");
        assert_eq!(decode_entities("&unknown; & &amp"), "&unknown; & &");
        assert_eq!(decode_entities("&#0;&#xFFFFFFFF;"), "&#0;&#xFFFFFFFF;");
    }

    #[test]
    fn machines_are_told_apart() {
        let sent: DateTime<Utc> = "2026-11-20T10:00:00Z".parse().unwrap();
        let later = sent + chrono::Duration::hours(2);
        let safari = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15";
        assert!(!is_machine(Some(safari), false, Some(sent), later));
        assert!(is_machine(Some("Mozilla/5.0"), false, Some(sent), later));
        assert!(is_machine(None, false, Some(sent), later));
        assert!(is_machine(Some(safari), true, Some(sent), later));
        assert!(is_machine(
            Some(safari),
            false,
            Some(sent),
            sent + chrono::Duration::seconds(3)
        ));
        assert!(is_machine(
            Some("Mozilla/5.0 (compatible; Barracuda Sentinel)"),
            false,
            Some(sent),
            later
        ));
        // Gmail's image proxy fetches when the customer opens.
        let gmail = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)";
        assert!(!is_machine(Some(gmail), false, Some(sent), later));
    }

    proptest::proptest! {
        /// Any HTML: the rewriter answers (never panics), adds one pixel,
        /// and every redirect it makes names a target found in the input.
        #[test]
        fn any_html_is_rewritten_safely(html in "(<a href=\"https?://[a-z./?=&;#]{0,20}\">|</a>|<body>|</body>|<!--|-->|<script>|[a-z <>=\"'&;#/]){0,40}") {
            let l = links();
            if let Ok(out) = rewrite(&html, &tracked(&l)) {
                proptest::prop_assert_eq!(out.matches("/t/o/").count(), 1);
                for target in targets(&l, &out) {
                    proptest::prop_assert!(trackable(&target, &l));
                }
            }
        }

        /// Any string as a token: refused or read, never a panic.
        #[test]
        fn any_token_is_refused_or_read(token in "[A-Za-z0-9_%=+/-]{0,200}") {
            let l = links();
            let _ = l.verify(&token);
        }
    }
}
