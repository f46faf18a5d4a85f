//! The CEL library's messages in a marketer's words: which field, what was
//! expected, what to write instead. `invalid argument to has() macro` says
//! that `has()` needs a field; `No such key: totl` which object lacks it and
//! the nearest name it has; `no matching overload for '_>_' applied to
//! '(google.protobuf.Timestamp, string)'` that a timestamp cannot be compared
//! with a string, and how to write one.

use crate::diagnostic::closest;

/// The fields of each variable a condition sees (`condition.rs` builds them).
const FIELDS: &[(&str, &[&str])] = &[
    ("customer", &super::condition::CUSTOMER_FIELDS),
    ("order", &super::condition::ORDER_FIELDS),
    (
        "item",
        &[
            "sku",
            "name",
            "category",
            "quantity",
            "unit_price",
            "replenish_every_days",
        ],
    ),
    (
        "shipment",
        &["id", "carrier", "tracking_number", "tracking_url"],
    ),
    ("review", &["rating"]),
    ("event", &super::condition::EVENT_FIELDS),
];

/// Fields that are there only when set: a condition tests them with has().
const OPTIONAL: &[&str] = &[
    "first_name",
    "locale",
    "timezone",
    "first_order_at",
    "last_order_at",
    "last_order_id",
    "total_spent",
    "total_spent_currency",
    "last_review_at",
    "last_rating",
    "last_email_at",
    "number",
    "placed_at",
    "currency",
    "total",
    "replenish_every_days",
    "name",
    "category",
    "unit_price",
    "carrier",
    "tracking_number",
    "tracking_url",
    "rating",
];

/// A parse error of the CEL parser.
pub fn syntax(msg: &str) -> String {
    if msg.contains("invalid argument to has() macro") {
        return "`has()` needs a field, e.g. `has(review.rating)`: it tells whether a field \
                is set, so it takes `variable.field`, not a whole variable such as \
                `has(review)`"
            .into();
    }
    let msg = msg.strip_prefix("Syntax error: ").unwrap_or(msg);
    // The parser lists every token it could have taken: too much to read.
    let msg = match msg.find(" expecting ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    if let Some(token) = msg
        .strip_prefix("mismatched input ")
        .or_else(|| msg.strip_prefix("extraneous input "))
    {
        let token = token.strip_prefix('\'').unwrap_or(token);
        let token = token.strip_suffix('\'').unwrap_or(token);
        return match token {
            "<EOF>" => "the condition ends too early: something is missing at its end \
                        (after an operator such as `>` or `&&`, or a closing bracket)"
                .into(),
            "and" | "AND" => "unexpected `and`: CEL writes `&&` for and".into(),
            "or" | "OR" => "unexpected `or`: CEL writes `||` for or".into(),
            "not" | "NOT" => "unexpected `not`: CEL writes `!` for not".into(),
            t => format!("unexpected `{t}`"),
        };
    }
    if let Some(token) = msg.strip_prefix("token recognition error at: ") {
        let token = token.trim_matches('\'').trim();
        return match token {
            "=" => "`=` is not an operator: compare with `==`".into(),
            t => format!("`{t}` is not part of a condition"),
        };
    }
    msg.to_string()
}

/// An error of an evaluation of `source`.
pub fn evaluation(msg: &str, source: &str) -> String {
    if let Some(key) = msg.strip_prefix("No such key: ") {
        return no_such_key(key, source);
    }
    if let Some(rest) = msg.strip_prefix("found no matching overload for '") {
        return overload(rest).unwrap_or_else(|| msg.to_string());
    }
    if let Some(rest) = msg.strip_prefix("Error executing function 'timestamp': ") {
        return format!(
            "timestamp() needs an RFC 3339 timestamp such as \"2026-11-20T10:00:00Z\" ({rest})"
        );
    }
    if let Some(rest) = msg.strip_prefix("Error executing function 'duration': ") {
        return format!(
            "duration() needs a duration such as \"72h\" or \"30m\" ({rest}); days(3) is 3 days"
        );
    }
    msg.to_string()
}

/// `No such key: totl`: the object (found in the source), what it has.
fn no_such_key(key: &str, source: &str) -> String {
    let parent = parent_of(key, source);
    let Some(parent) = parent else {
        return format!("no field `{key}` here");
    };
    if parent == "customer.attributes" || parent.ends_with(".data") || parent == "event.data" {
        return format!(
            "`{parent}` has no `{key}` here: what a shop sends there varies, so test it \
             first: `has({parent}.{key}) && …`"
        );
    }
    let last = parent.rsplit('.').next().unwrap_or(&parent);
    let fields = FIELDS
        .iter()
        .find(|(name, _)| *name == last)
        .or_else(|| {
            // A comprehension's variable (`order.items.exists(i, i.nmae …)`)
            // is an item.
            (!FIELDS.iter().any(|(n, _)| *n == last))
                .then(|| FIELDS.iter().find(|(n, _)| *n == "item"))
                .flatten()
        })
        .map(|(_, f)| *f);
    match fields {
        Some(f) if f.contains(&key) && OPTIONAL.contains(&key) => format!(
            "`{parent}.{key}` is not set here (it is optional): test it first, \
             `has({parent}.{key}) && …`"
        ),
        Some(f) => {
            let hint = closest(key, f)
                .map(|c| format!(" (did you mean `{c}`?)"))
                .unwrap_or_default();
            format!(
                "`{parent}` has no field `{key}`{hint}; it has {}",
                f.join(", ")
            )
        }
        None => format!("`{parent}` has no field `{key}`"),
    }
}

/// The path before `.key` in the source, e.g. `order` for `order.totl`.
fn parent_of(key: &str, source: &str) -> Option<String> {
    let ident = |c: char| c.is_alphanumeric() || c == '_' || c == '.';
    let needle = format!(".{key}");
    for (i, _) in source.match_indices(&needle) {
        let after = source[i + needle.len()..].chars().next();
        if after.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let start = source[..i]
            .char_indices()
            .rev()
            .take_while(|(_, c)| ident(*c))
            .last()
            .map(|(j, _)| j)?;
        let parent = &source[start..i];
        if !parent.is_empty() && !parent.starts_with('.') {
            return Some(parent.to_string());
        }
    }
    None
}

/// `'_>_' applied to '(google.protobuf.Timestamp, string)'`.
fn overload(rest: &str) -> Option<String> {
    let (op, rest) = rest.split_once("' applied to '")?;
    let types = rest.strip_suffix('\'')?;
    let op_shown = match op {
        "_>_" => ">",
        "_<_" => "<",
        "_>=_" => ">=",
        "_<=_" => "<=",
        "_==_" => "==",
        "_!=_" => "!=",
        "_+_" => "+",
        "_-_" => "-",
        "_*_" => "*",
        "_/_" => "/",
        "_%_" => "%",
        "_&&_" => "&&",
        "_||_" => "||",
        "!_" => "!",
        "-_" => "-",
        f => f,
    };
    // A method call: `list.(string)`, the target before the dot.
    if let Some((target, args)) = types.split_once(".(") {
        let target = kind(target);
        let args: Vec<String> = args
            .trim_end_matches(')')
            .split(", ")
            .filter(|a| !a.is_empty())
            .map(kind)
            .collect();
        let hint = match (op, target.as_str()) {
            ("contains", "a list") => ": for a list, write `\"vip\" in customer.tags`",
            _ => "",
        };
        return Some(format!(
            "`{op_shown}()` does not work on {target} with {}{hint}",
            args.join(" and ")
        ));
    }
    let args: Vec<String> = types
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(", ")
        .map(kind)
        .collect();
    let hint = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["a timestamp", "a string"] | ["a string", "a timestamp"] => {
            ": write the time as timestamp(\"2026-11-20T10:00:00Z\")"
        }
        ["a duration", "a whole number"] | ["a whole number", "a duration"] => {
            ": write the duration as days(3) or duration(\"72h\")"
        }
        ["a string", "a whole number"]
        | ["a whole number", "a string"]
        | ["a string", "a number"]
        | ["a number", "a string"] => ": a number is written without quotes",
        _ => "",
    };
    Some(match args.len() {
        1 => format!("`{op_shown}` does not work on {}{hint}", args[0]),
        _ => format!("`{op_shown}` does not work on {}{hint}", args.join(" and ")),
    })
}

/// A condition that gives a value of type `t` where true or false is due.
pub fn not_true_or_false(source: &str, t: &str) -> String {
    let what = kind(t);
    let hint = match what.as_str() {
        "a number" | "a whole number" => format!("compare it, e.g. `{source} > 0`"),
        "a string" => format!("compare it, e.g. `{source} == \"…\"`"),
        "a list" | "a map" => format!("test its size, e.g. `size({source}) > 0`"),
        _ => "compare it with something".into(),
    };
    format!("condition `{source}` gives {what}, not true or false: {hint}")
}

/// A CEL type name (`google.protobuf.Timestamp`, `Float`) in plain words.
pub fn kind(t: &str) -> String {
    match t.trim() {
        "google.protobuf.Timestamp" | "Timestamp" => "a timestamp",
        "google.protobuf.Duration" | "Duration" => "a duration",
        "int" | "uint" | "Int" | "UInt" => "a whole number",
        "double" | "Float" => "a number",
        "string" | "String" => "a string",
        "bool" | "Bool" => "true or false",
        "list" | "List" => "a list",
        "map" | "Map" => "a map",
        "null_type" | "Null" => "null",
        other => return format!("a {other}"),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cel_messages_become_plain_words() {
        assert!(
            syntax("invalid argument to has() macro")
                .starts_with("`has()` needs a field, e.g. `has(review.rating)`")
        );
        assert_eq!(
            syntax("Syntax error: mismatched input 'and' expecting {<EOF>, '==', '&&'}"),
            "unexpected `and`: CEL writes `&&` for and"
        );
        assert_eq!(
            syntax("Syntax error: token recognition error at: '= '"),
            "`=` is not an operator: compare with `==`"
        );
        assert_eq!(
            evaluation("No such key: totl", "order.totl > 0.0"),
            "`order` has no field `totl` (did you mean `total`?); it has id, number, placed_at, \
             currency, total, items, replenish_every_days"
        );
        assert_eq!(
            evaluation("No such key: number", "order.number == '1'"),
            "`order.number` is not set here (it is optional): test it first, `has(order.number) && …`"
        );
        assert_eq!(
            evaluation("No such key: vip", "customer.attributes.vip == true"),
            "`customer.attributes` has no `vip` here: what a shop sends there varies, so test it \
             first: `has(customer.attributes.vip) && …`"
        );
        assert_eq!(
            evaluation(
                "found no matching overload for '_>_' applied to '(google.protobuf.Timestamp, string)'",
                "order.placed_at > '2026-01-01'"
            ),
            "`>` does not work on a timestamp and a string: write the time as \
             timestamp(\"2026-11-20T10:00:00Z\")"
        );
        assert_eq!(
            evaluation(
                "found no matching overload for 'contains' applied to 'list.(string)'",
                "customer.tags.contains('vip')"
            ),
            "`contains()` does not work on a list with a string: for a list, write `\"vip\" in customer.tags`"
        );
    }
}
