//! `aftercare ingest FILE.jsonl`: feeds a file through the same ingest path,
//! in batches, with a progress bar on a terminal. A line that cannot be used
//! (not UTF-8, not JSON, not a valid event, longer than an event may be, or
//! refused by the store) is dead-lettered with its line number and reported;
//! the rest goes on.
//!
//! `aftercare ingest --backfill FILE.jsonl` imports history: the events are
//! read customer by customer, each customer's in `occurred_at` order (the
//! file need not be sorted), each marked as history
//! ([`crate::event::Event::history`]) so that it is replayed on its own time,
//! and once the file is done every customer in it is caught up to now
//! ([`crate::schedule::catch_up`]). Customer by customer, so that one
//! customer's history is applied within seconds, not spread over the whole
//! import: a scheduler running beside it (which catches a customer's history
//! up a minute after it last moved) never catches a customer up halfway.

use std::io::{BufRead, IsTerminal, Read};
use std::path::Path;

use crate::clock::Clock;
use crate::event::limits;
use crate::ingest::listened::{Watch, kinds_taken};
use crate::sequence::model::Catalog;
use crate::store::{DeadLetter, IngestReport, Store};

pub const BATCH: usize = 1000;

#[derive(Debug, Default)]
pub struct FileReport {
    pub ingested: IngestReport,
    pub invalid: usize,
    /// Customers a backfill caught up to now.
    pub customers: usize,
    /// Events of types no sequence listens to and not documented.
    pub unknown_types: usize,
}

/// How a file is fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Events as they come, in file order, live.
    #[default]
    Live,
    /// History: customer by customer in `occurred_at` order, replayed on
    /// their own time.
    Backfill,
}

/// One line of a JSON-lines file, as bytes: a file may hold anything.
#[derive(Debug)]
pub struct Line {
    /// From 1.
    pub number: usize,
    /// Where the line starts in the file.
    pub offset: u64,
    /// Bytes the line takes in the file, its end of line included.
    pub len: usize,
    /// The line without its end of line, cut after `max` bytes.
    pub bytes: Vec<u8>,
}

impl Line {
    /// The text to parse, or why there is none: `None` for a blank line
    /// or a comment (`#`, `//`).
    pub fn text(&self, max: usize) -> Option<Result<&str, String>> {
        let trimmed = self.bytes.trim_ascii();
        if trimmed.is_empty() || trimmed.starts_with(b"#") || trimmed.starts_with(b"//") {
            return None;
        }
        if self.bytes.len() > max {
            return Some(Err(format!(
                "the line is longer than the limit of {max} bytes for an event"
            )));
        }
        Some(std::str::from_utf8(trimmed).map_err(|e| {
            format!(
                "the line is not UTF-8 text (an invalid byte at column {})",
                e.valid_up_to() + 1
            )
        }))
    }
}

/// Reads a file line by line as bytes, holding at most `max + 1` bytes of a
/// line (the rest of a longer line is skipped, counted in [`Line::len`]).
pub struct Lines<R> {
    reader: R,
    max: usize,
    number: usize,
    offset: u64,
}

impl<R: BufRead> Lines<R> {
    pub fn new(reader: R, max: usize) -> Self {
        Self {
            reader,
            max,
            number: 0,
            offset: 0,
        }
    }

    /// Lines of a reader that starts `offset` bytes into a file, at the
    /// start of a line: offsets are the file's, numbers count from 1 there.
    pub fn starting_at(reader: R, max: usize, offset: u64) -> Self {
        Self {
            offset,
            ..Self::new(reader, max)
        }
    }

    pub fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        let mut bytes = Vec::new();
        let mut n = <&mut R as Read>::take(&mut self.reader, self.max as u64 + 1)
            .read_until(b'\n', &mut bytes)?;
        if n == 0 {
            return Ok(None);
        }
        if bytes.last() != Some(&b'\n') && n > self.max {
            n += self.reader.skip_until(b'\n')?;
        }
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        self.number += 1;
        let line = Line {
            number: self.number,
            offset: self.offset,
            len: n,
            bytes,
        };
        self.offset += n as u64;
        Ok(Some(line))
    }
}

/// Lines of a file grouped by customer, each customer's in `occurred_at`
/// order (stable; lines without a readable customer and time first, where
/// they are dead-lettered as usual), read back one by one: only each line's
/// place, customer and time are held.
struct ByCustomer {
    file: std::fs::File,
    order: std::vec::IntoIter<(usize, u64, usize)>,
    max: usize,
}

impl ByCustomer {
    fn open(path: &Path, max: usize) -> anyhow::Result<Self> {
        #[derive(serde::Deserialize)]
        struct Who {
            id: String,
        }
        #[derive(serde::Deserialize)]
        struct Head {
            occurred_at: chrono::DateTime<chrono::Utc>,
            customer: Who,
        }
        let file = std::fs::File::open(path)?;
        let mut lines = Lines::new(std::io::BufReader::new(&file), max);
        let mut index = Vec::new();
        while let Some(line) = lines.next_line()? {
            let key = match line.text(max) {
                None => continue,
                Some(Ok(text)) => serde_json::from_str::<Head>(text)
                    .ok()
                    .map(|h| (h.customer.id, h.occurred_at)),
                Some(Err(_)) => None,
            };
            index.push((key, (line.number, line.offset, line.len)));
        }
        index.sort_by(|a, b| a.0.cmp(&b.0));
        let order: Vec<_> = index.into_iter().map(|(_, place)| place).collect();
        Ok(Self {
            file,
            order: order.into_iter(),
            max,
        })
    }

    fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        use std::os::unix::fs::FileExt;
        let Some((number, offset, len)) = self.order.next() else {
            return Ok(None);
        };
        let mut bytes = vec![0; len.min(self.max + 1)];
        self.file.read_exact_at(&mut bytes, offset)?;
        while matches!(bytes.last(), Some(b'\n' | b'\r')) {
            bytes.pop();
        }
        Ok(Some(Line {
            number,
            offset,
            len,
            bytes,
        }))
    }
}

/// Where a file's lines come from: in file order, or in time order.
enum Source<R> {
    InOrder(Lines<R>),
    ByCustomer(ByCustomer),
}

impl<R: BufRead> Source<R> {
    fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        match self {
            Source::InOrder(l) => l.next_line(),
            Source::ByCustomer(t) => t.next_line(),
        }
    }
}

pub async fn ingest_file<S: Store>(
    store: &S,
    catalog: &Catalog,
    clock: &dyn Clock,
    path: &Path,
    mode: Mode,
) -> anyhow::Result<FileReport> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(size);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut report = FileReport::default();
    let mut batch = Vec::with_capacity(BATCH);
    // The line number of each event in the batch.
    let mut numbers = Vec::with_capacity(BATCH);
    // Dead letters not yet kept (a batch's worth at a time, in one transaction).
    let mut letters: Vec<DeadLetter> = Vec::new();
    let mut held = 0; // their payloads' bytes
    let mut lines = match mode {
        Mode::Live => Source::InOrder(Lines::new(
            std::io::BufReader::new(file),
            limits::EVENT_BYTES,
        )),
        Mode::Backfill => Source::ByCustomer(ByCustomer::open(path, limits::EVENT_BYTES)?),
    };
    // The customers a backfill catches up once the file is done.
    let mut customers = std::collections::BTreeSet::new();
    // When the backfill's history begins.
    let mut earliest: Option<chrono::DateTime<chrono::Utc>> = None;
    let origin = |n: usize| format!("{}:{n}", path.display());
    // Event types nobody listens to: said as the service says them, and
    // what is left at the end of the file.
    let watch = Watch::new(catalog);
    let mut done = false;
    while !done {
        match lines.next_line()? {
            None => done = true,
            Some(line) => {
                bar.inc(line.len as u64);
                let parsed = match line.text(limits::EVENT_BYTES) {
                    None => continue,
                    Some(text) => text.and_then(|t| super::parse(t.as_bytes())),
                };
                match parsed {
                    Ok(mut ev) => {
                        if mode == Mode::Backfill {
                            ev.history = true;
                            customers.insert(ev.customer.id.clone());
                            earliest =
                                Some(earliest.map_or(ev.occurred_at, |t| t.min(ev.occurred_at)));
                        }
                        batch.push(ev);
                        numbers.push(line.number);
                    }
                    Err(reason) => {
                        report.invalid += 1;
                        let origin = origin(line.number);
                        bar.suspend(|| eprintln!("{origin}: skipped: {reason}"));
                        let letter = super::dead("file", reason, &line.bytes, Some(origin));
                        held += letter.payload.len();
                        letters.push(letter);
                    }
                }
            }
        }
        if batch.len() >= BATCH || (done && !batch.is_empty()) {
            let r = super::ingest_batch(store, catalog, &batch, "file", clock.now()).await?;
            for refused in &r.refused {
                // As parsed: the line itself is no longer held.
                let origin = origin(numbers[refused.index]);
                bar.suspend(|| eprintln!("{origin}: skipped: {}", refused.reason));
                let payload = serde_json::to_string(&batch[refused.index])?;
                let reason = refused.reason.clone();
                let letter = super::dead("file", reason, payload.as_bytes(), Some(origin));
                held += letter.payload.len();
                letters.push(letter);
            }
            report.invalid += r.refused.len();
            let taken = kinds_taken(&batch, &r.refused);
            let unheard = bar.suspend(|| watch.note(taken, clock.now()));
            report.unknown_types += unheard.unknown.iter().map(|u| u.events).sum::<usize>();
            report.ingested.add(r);
            batch.clear();
            numbers.clear();
            bar.set_message(format!("{} events", report.ingested.applied));
        }
        if letters.len() >= BATCH
            || held >= 16 * limits::EVENT_BYTES
            || (done && !letters.is_empty())
        {
            store.keep_dead_letters(&letters, clock.now()).await?;
            crate::telemetry::dead_letters(&letters);
            letters.clear();
            held = 0;
        }
    }
    bar.finish_and_clear();
    if mode == Mode::Backfill {
        let customers: Vec<String> = customers.into_iter().collect();
        let since = earliest.unwrap_or_else(|| clock.now());
        report.ingested.emails +=
            crate::schedule::catch_up(store, catalog, &customers, since, clock.now()).await?;
        report.customers = customers.len();
    }
    watch.flush();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_as_bytes_and_cut_at_the_limit() {
        let data = b"one\r\n\xff\xfe\n0123456789abcdef\nlast";
        let mut lines = Lines::new(&data[..], 8);
        let mut got = Vec::new();
        while let Some(l) = lines.next_line().unwrap() {
            got.push((
                l.number,
                l.offset,
                l.len,
                l.bytes.clone(),
                l.text(8).map(|t| t.map(str::to_string)),
            ));
        }
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], (1, 0, 5, b"one".to_vec(), Some(Ok("one".into()))));
        assert_eq!(
            got[1].4,
            Some(Err(
                "the line is not UTF-8 text (an invalid byte at column 1)".into()
            ))
        );
        assert_eq!((got[2].1, got[2].2, got[2].3.len()), (8, 17, 9));
        assert_eq!(
            got[2].4,
            Some(Err(
                "the line is longer than the limit of 8 bytes for an event".into()
            ))
        );
        assert_eq!(
            got[3],
            (4, 25, 4, b"last".to_vec(), Some(Ok("last".into())))
        );
    }
}
