//! `aftercare ingest FILE.jsonl`: backfills through the same ingest path, in
//! batches, with a progress bar on a terminal. Bad lines are dead-lettered
//! with their line number and reported; the rest goes on.

use std::io::{BufRead, IsTerminal};
use std::path::Path;

use crate::clock::Clock;
use crate::sequence::model::Catalog;
use crate::store::{IngestReport, Store};

pub const BATCH: usize = 1000;

#[derive(Debug, Default)]
pub struct FileReport {
    pub ingested: IngestReport,
    pub invalid: usize,
}

pub async fn ingest_file<S: Store>(
    store: &S,
    catalog: &Catalog,
    clock: &dyn Clock,
    path: &Path,
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
    let reader = std::io::BufReader::new(file);
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        bar.inc(line.len() as u64 + 1);
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') || text.starts_with("//") {
            continue;
        }
        match super::parse(text.as_bytes()) {
            Ok(ev) => batch.push(ev),
            Err(reason) => {
                report.invalid += 1;
                let origin = format!("{}:{}", path.display(), i + 1);
                bar.suspend(|| eprintln!("{origin}: skipped: {reason}"));
                let letter = super::dead("file", reason, text.as_bytes(), Some(origin));
                store.dead_letter(&letter, clock.now()).await?;
            }
        }
        if batch.len() >= BATCH {
            let r = super::ingest_batch(store, catalog, &batch, "file", clock.now()).await?;
            report.ingested.add(r);
            batch.clear();
            bar.set_message(format!("{} events", report.ingested.applied));
        }
    }
    if !batch.is_empty() {
        let r = super::ingest_batch(store, catalog, &batch, "file", clock.now()).await?;
        report.ingested.add(r);
    }
    bar.finish_and_clear();
    Ok(report)
}
