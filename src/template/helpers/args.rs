//! A helper's arguments, read with errors that name the helper, the
//! argument and how the helper is written; `validate` shows them with the
//! template's file, line and column.

use handlebars::{Handlebars, Helper, PathAndJson, RenderError, RenderErrorReason};
use rust_decimal::Decimal;
use serde_json::Value;

pub(super) struct Args<'a, 'rc> {
    h: &'a Helper<'rc>,
    name: &'static str,
    /// How the helper is written, for messages: `{{truncate text 40}}`.
    usage: &'static str,
    strict: bool,
}

impl<'a, 'rc> Args<'a, 'rc> {
    /// Checks that the helper got at most `params` arguments and only the
    /// options in `options`.
    pub fn new(
        h: &'a Helper<'rc>,
        r: &Handlebars,
        name: &'static str,
        usage: &'static str,
        params: usize,
        options: &[&str],
    ) -> Result<Self, RenderError> {
        let a = Args {
            h,
            name,
            usage,
            strict: r.strict_mode(),
        };
        if h.params().len() > params {
            return Err(a.fail(format!(
                "takes {} argument{}, not {}: {usage}",
                params,
                if params == 1 { "" } else { "s" },
                h.params().len()
            )));
        }
        if let Some(key) = h.hash().keys().find(|k| !options.contains(k)) {
            let known = match options {
                [] => "it takes no options".to_string(),
                _ => format!(
                    "it takes {}",
                    options
                        .iter()
                        .map(|o| format!("{o}="))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            return Err(a.fail(format!("unknown option `{key}=`; {known}")));
        }
        Ok(a)
    }

    /// An error of this helper: `truncate: …`.
    pub fn fail(&self, message: impl std::fmt::Display) -> RenderError {
        RenderErrorReason::Other(format!("{}: {message}", self.name)).into()
    }

    /// Argument `i`, which the helper needs; `what` names it in messages.
    pub fn param(&self, i: usize, what: &str) -> Result<&'a Value, RenderError> {
        let p = self.raw(i, what)?;
        self.present(p)
    }

    /// Argument `i` as written, even when it names nothing (for `default`).
    pub fn raw(&self, i: usize, what: &str) -> Result<&'a PathAndJson<'rc>, RenderError> {
        self.h
            .param(i)
            .ok_or_else(|| self.fail(format!("needs {what}: {}", self.usage)))
    }

    /// The value of `p`; in strict mode a name that is not in the data is
    /// the usual "unknown variable" error, inside a helper too.
    pub fn present(&self, p: &'a PathAndJson<'rc>) -> Result<&'a Value, RenderError> {
        if self.strict && p.is_value_missing() {
            return Err(RenderErrorReason::MissingVariable(p.relative_path().cloned()).into());
        }
        Ok(p.value())
    }

    /// Option `key=`, if given.
    pub fn option(&self, key: &str) -> Result<Option<&'a Value>, RenderError> {
        match self.h.hash_get(key) {
            None => Ok(None),
            Some(p) => self.present(p).map(Some),
        }
    }

    /// Option `key=` as a string.
    pub fn option_str(&self, key: &str) -> Result<Option<&'a str>, RenderError> {
        match self.option(key)? {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.fail(format!(
                "{key}= takes text in quotes, such as {key}=\"…\", not {other}"
            ))),
        }
    }

    /// Option `decimals=`: digits after the decimal point, 0 to 10.
    pub fn decimals(&self) -> Result<Option<u32>, RenderError> {
        let Some(v) = self.option("decimals")? else {
            return Ok(None);
        };
        match whole(v) {
            Some(n @ 0..=10) => Ok(Some(n as u32)),
            _ => Err(self.fail(format!(
                "decimals= takes a whole number from 0 to 10, such as decimals=2, not {}",
                shown(v)
            ))),
        }
    }
}

/// A number, or a string that holds one (money is a decimal string):
/// `None` for anything else.
pub(super) fn number(v: &Value) -> Option<Decimal> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    text.parse::<Decimal>()
        .ok()
        .or_else(|| Decimal::from_scientific(&text).ok())
}

/// A whole number (`3`, `"3"`, `3.0`).
pub(super) fn whole(v: &Value) -> Option<i64> {
    let d = number(v)?;
    (d.fract().is_zero())
        .then(|| i64::try_from(d).ok())
        .flatten()
}

/// Text for messages: a JSON value as a template author would write it.
pub(super) fn shown(v: &Value) -> String {
    let s = v.to_string();
    match s.chars().count() > 40 {
        true => format!("{}…", s.chars().take(40).collect::<String>()),
        false => s,
    }
}
