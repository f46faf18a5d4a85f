//! The days of the week a wait may end on: `on: [mon, tue, wed, thu, fri]`.

use chrono::Weekday;

use crate::diagnostic::closest;

/// The names `on:` takes, Monday first.
pub const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A set of weekdays, never empty once read from a sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Weekdays(u8);

impl Weekdays {
    pub fn contains(self, day: Weekday) -> bool {
        self.0 & (1 << day.num_days_from_monday()) != 0
    }

    pub fn insert(&mut self, day: Weekday) {
        self.0 |= 1 << day.num_days_from_monday();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// One of [`NAMES`]; otherwise an error that names the closest one.
    pub fn day(name: &str) -> Result<Weekday, String> {
        let n = name.trim();
        if let Some(i) = NAMES.iter().position(|d| *d == n) {
            return Ok(Weekday::try_from(i as u8).expect("0..7"));
        }
        let lower = n.to_lowercase();
        // `Monday`, `tues`, `THU`: the day they start with; else the nearest.
        let hint = NAMES
            .iter()
            .find(|d| lower.len() >= 3 && lower.starts_with(**d))
            .copied()
            .or_else(|| closest(&lower, &NAMES))
            .map(|d| format!("did you mean `{d}`? "))
            .unwrap_or_default();
        Err(format!(
            "`{n}` is not a day of the week; {hint}write one of {}",
            NAMES.join(", ")
        ))
    }

    /// The days as written, Monday first: `mon, wed, fri`.
    pub fn names(self) -> Vec<&'static str> {
        NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, d)| *d)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_misspellings() {
        assert_eq!(Weekdays::day("mon"), Ok(Weekday::Mon));
        assert_eq!(Weekdays::day("sun"), Ok(Weekday::Sun));
        for (bad, hint) in [
            ("monday", "did you mean `mon`?"),
            ("Tue", "did you mean `tue`?"),
            ("thurs", "did you mean `thu`?"),
            ("frii", "did you mean `fri`?"),
            ("sat_", "did you mean `sat`?"),
        ] {
            let e = Weekdays::day(bad).unwrap_err();
            assert!(e.contains(hint), "{bad}: {e}");
            assert!(e.contains("mon, tue, wed, thu, fri, sat, sun"), "{e}");
        }
        let e = Weekdays::day("holiday").unwrap_err();
        assert!(!e.contains("did you mean"), "{e}");
    }

    #[test]
    fn a_set_of_days() {
        let mut w = Weekdays::default();
        assert!(w.is_empty());
        w.insert(Weekday::Fri);
        w.insert(Weekday::Mon);
        assert!(w.contains(Weekday::Mon) && w.contains(Weekday::Fri));
        assert!(!w.contains(Weekday::Tue));
        assert_eq!(w.names(), ["mon", "fri"]);
    }
}
