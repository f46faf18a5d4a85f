//! The send policy: for one candidate email and the customer's history, when
//! it may go, or why it is skipped. Exactly the rules of DESIGN.md:
//!
//! - a suppressed address gets nothing;
//! - transactional mail goes at once and never counts toward a cap;
//! - value and promo need marketing consent, stop after `sunset` unopened
//!   marketing emails in a row, go at the earliest time at or after the due
//!   time that is outside quiet hours and within the frequency cap;
//! - a promo goes only if, counting it, promos are at most `max_percent` of
//!   all emails sent in the window ending when it goes.

use std::fmt;

use chrono::{DateTime, NaiveTime, TimeDelta, Utc};
use chrono_tz::Tz;

use super::localtime;
use crate::sequence::model::{Category, Policies, QuietHours};

/// One email already sent to the customer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sent {
    pub at: DateTime<Utc>,
    pub category: Category,
    /// `Some(true)` opened, `Some(false)` tracked and not opened, `None` not
    /// known (the message carried no open tracking). Only known-unopened mail
    /// counts toward sunset.
    pub opened: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recipient {
    pub marketing_consent: bool,
    /// Unsubscribed from promo mail only ("no more offers").
    pub promo_unsubscribed: bool,
    pub suppressed: bool,
    pub timezone: Tz,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Skip {
    Suppressed,
    NoConsent,
    /// The customer asked for no more offers: promo mail only.
    NoOffers,
    Sunset {
        unopened: u32,
    },
    PromoShare {
        promos: usize,
        total: usize,
        max_percent: u32,
    },
    /// The rules put the earliest slot past the dates aftercare can hold.
    NoSlot,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Skip::Suppressed => f.write_str("address suppressed (bounce or complaint)"),
            Skip::NoConsent => f.write_str("no marketing consent"),
            Skip::NoOffers => f.write_str("unsubscribed from offers (promo mail)"),
            Skip::Sunset { unopened } => {
                write!(f, "sunset: {unopened} marketing emails in a row unopened")
            }
            Skip::PromoShare {
                promos,
                total,
                max_percent,
            } => write!(
                f,
                "promo share: {promos} of {total} emails would be promos, above {max_percent}%"
            ),
            Skip::NoSlot => f.write_str("no time to send it before the year 9999 (frequency cap)"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    SendAt(DateTime<Utc>),
    Skip(Skip),
}

/// Decides for one email of `category` due at `due`. `history` is every email
/// already sent to the customer, in any order.
pub fn decide(
    policies: &Policies,
    category: Category,
    due: DateTime<Utc>,
    to: &Recipient,
    history: &[Sent],
) -> Decision {
    if to.suppressed {
        return Decision::Skip(Skip::Suppressed);
    }
    if !category.is_marketing() {
        return Decision::SendAt(due);
    }
    if !to.marketing_consent {
        return Decision::Skip(Skip::NoConsent);
    }
    if category == Category::Promo && to.promo_unsubscribed {
        return Decision::Skip(Skip::NoOffers);
    }
    if let Some(n) = policies.sunset_after_unopened {
        let unopened = unopened_streak(history);
        if unopened >= n {
            return Decision::Skip(Skip::Sunset { unopened });
        }
    }
    let Some(at) = earliest_slot(policies, due, to.timezone, history) else {
        return Decision::Skip(Skip::NoSlot);
    };
    if category == Category::Promo
        && let Some(share) = policies.promo_share
    {
        let from = window_start(at, share.window);
        let in_window = history.iter().filter(|s| s.at > from && s.at <= at);
        let (mut total, mut promos) = (1usize, 1usize);
        for s in in_window {
            total += 1;
            promos += usize::from(s.category == Category::Promo);
        }
        if promos * 100 > share.max_percent as usize * total {
            return Decision::Skip(Skip::PromoShare {
                promos,
                total,
                max_percent: share.max_percent,
            });
        }
    }
    Decision::SendAt(at)
}

/// Marketing emails sent most recently and known to be unopened, in a row;
/// mail whose opening cannot be known is left out of the count.
fn unopened_streak(history: &[Sent]) -> u32 {
    let mut marketing: Vec<&Sent> = history
        .iter()
        .filter(|s| s.category.is_marketing() && s.opened.is_some())
        .collect();
    marketing.sort_by_key(|s| s.at);
    marketing
        .iter()
        .rev()
        .take_while(|s| s.opened == Some(false))
        .count() as u32
}

/// The start of the window of length `len` ending at `at`; checked, so that
/// a window reaching before the calendar begins counts everything.
fn window_start(at: DateTime<Utc>, len: TimeDelta) -> DateTime<Utc> {
    at.checked_sub_signed(len)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The earliest time at or after `due` outside quiet hours and within the
/// cap; `None` when the cap pushes it past the dates aftercare can hold.
fn earliest_slot(
    policies: &Policies,
    due: DateTime<Utc>,
    tz: Tz,
    history: &[Sent],
) -> Option<DateTime<Utc>> {
    let mut marketing: Vec<DateTime<Utc>> = history
        .iter()
        .filter(|s| s.category.is_marketing())
        .map(|s| s.at)
        .collect();
    marketing.sort();
    let mut t = due;
    // Each round moves t forward to satisfy one rule; both hold after a round
    // that moves nothing. A cap can push at most `max` times per send, and
    // quiet hours once per day, so this converges quickly.
    for _ in 0..64 {
        let mut moved = false;
        if let Some(q) = policies.quiet_hours {
            let out = leave_quiet_hours(t, tz, q);
            moved |= out != t;
            t = out;
        }
        if let Some(cap) = policies.frequency_cap {
            let from = window_start(t, cap.per);
            let recent: Vec<&DateTime<Utc>> = marketing
                .iter()
                .filter(|s| **s > from && **s <= t)
                .collect();
            if recent.len() >= cap.max as usize {
                // Wait until enough of them have left the window.
                let oldest_to_leave = recent[recent.len() - cap.max as usize];
                t = super::later(*oldest_to_leave, cap.per)?;
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    Some(t)
}

pub fn in_quiet_hours(local: NaiveTime, q: QuietHours) -> bool {
    if q.start == q.end {
        false
    } else if q.start < q.end {
        local >= q.start && local < q.end
    } else {
        local >= q.start || local < q.end
    }
}

/// `t` itself when it is outside quiet hours, else the end of the quiet hours
/// it falls in, in the customer's local time.
pub fn leave_quiet_hours(t: DateTime<Utc>, tz: Tz, q: QuietHours) -> DateTime<Utc> {
    let local = t.with_timezone(&tz).time();
    if !in_quiet_hours(local, q) {
        return t;
    }
    let end = localtime::next_at(t, tz, q.end);
    // A DST gap can make the resolved end land back inside the window's
    // local span; it cannot make it earlier than t, which next_at ensures.
    debug_assert!(end >= t);
    end.max(t)
}

#[cfg(test)]
mod tests;
