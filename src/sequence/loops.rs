//! Loops through `start`: sequence A's step `start: B`, and B, at some step,
//! `start: A`. Found when the folder loads, before anything runs.
//!
//! A `start` of a `once_per_order` or `once_per_customer` sequence enrolls at
//! most once (the enrollment key is taken), so only a cycle of `every_event`
//! sequences can go round again. Such a cycle is an error when one round can
//! take less than [`MIN_ROUND`] of waiting: it would mail a customer without
//! end (the engine also stops it at run time, by the per-customer ceiling).
//! Every other cycle is a warning, with its path. Events never come from a
//! sequence, so triggers cannot close a loop; a `wait_for` that goes on when
//! its event comes is paced by the shop's events, and counts as a bounded wait.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use chrono::TimeDelta;

use super::duration;
use super::model::{Catalog, EnrollMode, Sequence};
use super::plan::Op;
use crate::diagnostic::{Diagnostic, Diagnostics};

/// The least waiting one round of an `every_event` start cycle must have.
pub const MIN_ROUND: TimeDelta = TimeDelta::days(1);

/// Cycles listed as warnings at most; past this one line says how many more.
const MAX_LISTED: usize = 20;

/// One `start` step of a sequence, as an edge of the start graph.
#[derive(Debug, Clone)]
struct Edge {
    target: String,
    line: u64,
    col: u64,
    /// The least time an enrollment waits between its start and this step,
    /// or `None` when every way there waits for an event.
    wait: Option<TimeDelta>,
}

/// The `start` steps an enrollment of `seq` can reach, each with the least
/// waiting on the way. The plan only jumps to lower indices, so one pass
/// from the highest index down sees every way into a step before the step.
fn edges(seq: &Sequence) -> Vec<Edge> {
    let plan = &seq.plan;
    let n = plan.instrs.len();
    // Reached at all, and the least wait on a way that no event paces.
    let mut reached = vec![false; n];
    let mut least: Vec<Option<TimeDelta>> = vec![None; n];
    let Some(entry) = plan.entry else {
        return Vec::new();
    };
    reached[entry] = true;
    least[entry] = Some(TimeDelta::zero());
    let mut places = std::collections::HashMap::new();
    super::load::walk(&seq.steps, &mut |s| {
        places.insert(s.id.as_str(), (s.line, s.col));
    });
    let mut out = Vec::new();
    for i in (0..n).rev() {
        if !reached[i] {
            continue;
        }
        let here = least[i];
        let mut go = |to: Option<usize>, wait: Option<TimeDelta>| {
            if let Some(to) = to {
                reached[to] = true;
                if let Some(w) = wait {
                    least[to] = Some(least[to].map_or(w, |old| old.min(w)));
                }
            }
        };
        let after = |d: TimeDelta| here.map(|h| h.checked_add(&d).unwrap_or(TimeDelta::MAX));
        let instr = &plan.instrs[i];
        match &instr.op {
            Op::Email { .. } | Op::WaitUntil { .. } => go(instr.next, here),
            // A calendar month counts as 28 days (`Span::least`); `at` and
            // `on` only make a wait longer.
            Op::Wait { duration, .. } => go(instr.next, after(duration.least())),
            Op::WaitFor {
                within, timeout, ..
            } => {
                // The event's way is paced by the shop; the timeout's waits.
                go(instr.next, None);
                go(*timeout, after(within.least()));
            }
            Op::If {
                then, otherwise, ..
            } => {
                go(*then, here);
                go(*otherwise, here);
            }
            Op::Split(variants) => {
                for (_, weight, start) in variants {
                    if *weight > 0 {
                        go(*start, here);
                    }
                }
            }
            Op::Start(target) => {
                let (line, col) = places.get(instr.id.as_str()).copied().unwrap_or((1, 1));
                out.push(Edge {
                    target: target.clone(),
                    line,
                    col,
                    wait: here,
                });
                go(instr.next, here);
            }
            Op::Exit => {}
        }
    }
    out
}

/// The start graph: for each sequence, its `start` edges to sequences that
/// exist, the least wait kept for each target.
fn graph(catalog: &Catalog) -> BTreeMap<&str, BTreeMap<&str, Edge>> {
    let mut g: BTreeMap<&str, BTreeMap<&str, Edge>> = BTreeMap::new();
    for (id, seq) in &catalog.sequences {
        let out = g.entry(id.as_str()).or_default();
        for e in edges(seq) {
            let Some((target, _)) = catalog.sequences.get_key_value(&e.target) else {
                continue; // reported by the check of `start` targets
            };
            match out.get(target.as_str()) {
                Some(old) if !less(e.wait, old.wait) => {}
                _ => {
                    out.insert(target.as_str(), e);
                }
            }
        }
    }
    g
}

/// Whether wait `a` is shorter than `b` (`None`: paced by an event, longest).
fn less(a: Option<TimeDelta>, b: Option<TimeDelta>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a < b,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Checks every start cycle of the catalog: errors for those that can go
/// round with less than [`MIN_ROUND`] of waiting, warnings for the others.
pub fn check(catalog: &Catalog) -> Diagnostics {
    let g = graph(catalog);
    let mut diags = Diagnostics::default();
    let mut fatal: BTreeSet<Vec<&str>> = BTreeSet::new();
    for (cycle, round) in fast_cycles(catalog, &g) {
        let text = match round {
            r if r.is_zero() => "without waiting at all".to_string(),
            r => format!("after only {} of waiting", duration::format(r)),
        };
        let first = &g[cycle[0]][cycle[1 % cycle.len()]];
        diags.push(Diagnostic::error(
            &catalog.sequences[cycle[0]].file,
            first.line,
            first.col,
            format!(
                "start cycle {} goes round again {text}: it would mail a customer without end; \
                 a cycle of every_event sequences must wait at least {} per round",
                path(catalog, &cycle),
                duration::format(MIN_ROUND)
            ),
        ));
        fatal.insert(cycle);
    }
    let all = cycles(&g);
    let listed = all.len().min(MAX_LISTED);
    for cycle in all.iter().take(listed) {
        if fatal.contains(cycle) {
            continue;
        }
        let first = &g[cycle[0]][cycle[1 % cycle.len()]];
        let repeats = cycle
            .iter()
            .all(|id| catalog.sequences[*id].enroll == EnrollMode::EveryEvent);
        let why = if !repeats {
            "a once_per_order or once_per_customer sequence in it stops the second round"
                .to_string()
        } else {
            let hops = (0..cycle.len()).map(|i| g[cycle[i]][cycle[(i + 1) % cycle.len()]].wait);
            match hops.sum::<Option<TimeDelta>>() {
                Some(round) => format!(
                    "it goes round every {} or more, for as long as the customer stays",
                    duration::format(round)
                ),
                None => "each round waits for an event of the shop".to_string(),
            }
        };
        diags.push(Diagnostic::warning(
            &catalog.sequences[cycle[0]].file,
            first.line,
            first.col,
            format!("start cycle {} ({why})", path(catalog, cycle)),
        ));
    }
    if all.len() > listed {
        let first = all[0][0];
        diags.push(Diagnostic::warning(
            &catalog.sequences[first].file,
            1,
            1,
            format!("and {} more start cycles", all.len() - listed),
        ));
    }
    diags
}

/// `a` (a.yaml) → `b` (b.yaml) → `a`
fn path(catalog: &Catalog, cycle: &[&str]) -> String {
    let mut parts: Vec<String> = cycle
        .iter()
        .map(|id| format!("`{id}` ({})", catalog.sequences[*id].file.display()))
        .collect();
    parts.push(format!("`{}`", cycle[0]));
    parts.join(" → ")
}

/// Every simple cycle, each once, starting at its smallest id.
fn cycles<'a>(g: &BTreeMap<&'a str, BTreeMap<&'a str, Edge>>) -> Vec<Vec<&'a str>> {
    fn walk<'a>(
        g: &BTreeMap<&'a str, BTreeMap<&'a str, Edge>>,
        start: &'a str,
        stack: &mut Vec<&'a str>,
        out: &mut Vec<Vec<&'a str>>,
    ) {
        // Enough to list and count; a catalog with more is a tangle anyway.
        if out.len() > 10 * MAX_LISTED {
            return;
        }
        let here = *stack.last().expect("never empty");
        for next in g.get(here).into_iter().flat_map(|m| m.keys()) {
            if *next == start {
                out.push(stack.clone());
            } else if *next > start && !stack.contains(next) {
                stack.push(next);
                walk(g, start, stack, out);
                stack.pop();
            }
        }
    }
    let mut out = Vec::new();
    for start in g.keys() {
        walk(g, start, &mut vec![start], &mut out);
    }
    out
}

/// The cycles of `every_event` sequences whose shortest round (by waiting
/// that no event paces) is under [`MIN_ROUND`], each once, with that round.
fn fast_cycles<'a>(
    catalog: &Catalog,
    g: &BTreeMap<&'a str, BTreeMap<&'a str, Edge>>,
) -> Vec<(Vec<&'a str>, TimeDelta)> {
    let every = |id: &str| catalog.sequences[id].enroll == EnrollMode::EveryEvent;
    let mut found: BTreeMap<Vec<&'a str>, TimeDelta> = BTreeMap::new();
    for &start in g.keys().filter(|id| every(id)) {
        // Dijkstra from `start` over every_event sequences; the shortest way
        // back to `start` is the shortest round through it.
        let mut best: BTreeMap<&str, (TimeDelta, Option<&str>)> = BTreeMap::new();
        let mut heap = BinaryHeap::new();
        heap.push(Reverse((TimeDelta::zero(), start)));
        let mut back: Option<(TimeDelta, &str)> = None;
        while let Some(Reverse((d, node))) = heap.pop() {
            if best.get(node).is_some_and(|(b, _)| *b < d) {
                continue;
            }
            for (next, e) in g.get(node).into_iter().flatten() {
                let Some(w) = e.wait else { continue };
                if !every(next) {
                    continue;
                }
                let nd = d.checked_add(&w).unwrap_or(TimeDelta::MAX);
                if *next == start {
                    if back.is_none_or(|(b, _)| nd < b) {
                        back = Some((nd, node));
                    }
                } else if best.get(next).is_none_or(|(b, _)| nd < *b) {
                    best.insert(next, (nd, Some(node)));
                    heap.push(Reverse((nd, next)));
                }
            }
        }
        let Some((round, last)) = back.filter(|(r, _)| *r < MIN_ROUND) else {
            continue;
        };
        let mut cycle = vec![last];
        let mut at = last;
        while at != start {
            at = best[at].1.expect("on a shortest path");
            cycle.push(at);
        }
        cycle.reverse();
        // The same cycle is found from each of its members: keep one form.
        let min = (0..cycle.len())
            .min_by_key(|i| cycle[*i])
            .expect("never empty");
        cycle.rotate_left(min);
        found.entry(cycle).or_insert(round);
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::sequence::load::parse_sequence;

    fn check_all(files: &[(&str, &str)]) -> Vec<String> {
        let seqs = files
            .iter()
            .map(|(f, t)| {
                let (s, d) = parse_sequence(Path::new(f), t);
                s.unwrap_or_else(|| panic!("{d}"))
            })
            .collect();
        let catalog = Catalog::new(seqs, Default::default());
        check(&catalog).0.iter().map(|d| d.to_string()).collect()
    }

    fn every(id: &str, steps: &str) -> String {
        format!("id: {id}\ncategory: value\nenroll: every_event\nsteps:\n{steps}")
    }

    #[test]
    fn a_loop_without_a_day_of_waiting_is_an_error() {
        // No wait at all; a wait_until (may be past) and a branch do not count.
        let a = every(
            "a",
            "  - wait_until: 'now'\n  - if: 'true'\n    then: [{wait: 2d}]\n  - start: a\n",
        );
        let got = check_all(&[("a.yaml", &a)]);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("a.yaml:8:12: start cycle `a` (a.yaml) → `a` goes round again without waiting at all"),
            "{got:?}"
        );
        // Three hops of 8h: 24h is the least a round may wait.
        let hop = |id: &str, next: &str| every(id, &format!("  - wait: 8h\n  - start: {next}\n"));
        let (p, q, r) = (hop("p", "q"), hop("q", "r"), hop("r", "p"));
        let got = check_all(&[("p.yaml", &p), ("q.yaml", &q), ("r.yaml", &r)]);
        assert_eq!(
            got,
            [
                "p.yaml:6:12: warning: start cycle `p` (p.yaml) → `q` (q.yaml) → `r` (r.yaml) → `p` \
              (it goes round every 1d or more, for as long as the customer stays)"
            ]
        );
        let q = every("q", "  - wait: 7h\n  - start: r\n");
        let got = check_all(&[("p.yaml", &p), ("q.yaml", &q), ("r.yaml", &r)]);
        assert!(
            got[0].contains("goes round again after only 23h of waiting"),
            "{got:?}"
        );
    }

    /// A calendar month counts as 28 days (the least it can be), a year
    /// as 365: a monthly loop is a warning, never an error.
    #[test]
    fn calendar_waits_count_their_least_length() {
        let a = every("a", "  - wait: 1mo\n  - start: a\n");
        assert_eq!(
            check_all(&[("a.yaml", &a)]),
            [
                "a.yaml:6:12: warning: start cycle `a` (a.yaml) → `a` (it goes round every 4w or more, for as long as the customer stays)"
            ]
        );
        let a = every(
            "a",
            "  - wait_for: shipment.shipped\n    within: 1y1mo\n  - start: a\n",
        );
        let got = check_all(&[("a.yaml", &a)]);
        assert!(got[0].contains("every 56w1d or more"), "{got:?}");
    }

    #[test]
    fn waiting_for_an_event_paces_a_loop_and_its_timeout_waits() {
        let a = every(
            "a",
            "  - wait_for: shipment.shipped\n    within: 2h\n    on_timeout: [{start: a}]\n  - start: a\n",
        );
        let got = check_all(&[("a.yaml", &a)]);
        // The timeout's way (2h) is the shortest round.
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("after only 2h of waiting"), "{got:?}");
        // A timeout without steps goes on to the next step, after `within`.
        let a = every(
            "a",
            "  - wait_for: shipment.shipped\n    within: 2d\n  - start: a\n",
        );
        assert_eq!(
            check_all(&[("a.yaml", &a)]),
            [
                "a.yaml:7:12: warning: start cycle `a` (a.yaml) → `a` (it goes round every 2d or more, for as long as the customer stays)"
            ]
        );
        let a = every(
            "a",
            "  - wait_for: shipment.shipped\n    within: 2h\n    on_timeout: [{exit: true}]\n  - start: a\n",
        );
        assert_eq!(
            check_all(&[("a.yaml", &a)]),
            [
                "a.yaml:8:12: warning: start cycle `a` (a.yaml) → `a` (each round waits for an event of the shop)"
            ]
        );
        // An exit before the start, or a split variant of weight 0: no loop.
        let a = every("a", "  - exit: true\n  - start: a\n");
        assert!(check_all(&[("a.yaml", &a)]).is_empty());
        let a = every(
            "a",
            "  - split:\n      - {name: x, weight: 0, steps: [{start: a}]}\n      - {name: y, weight: 1, steps: [{email: t}]}\n",
        );
        assert!(check_all(&[("a.yaml", &a)]).is_empty());
    }
}
