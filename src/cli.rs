//! The command line: `validate`, `schema`, `preview`, `simulate`, `demo`,
//! `run`, `ingest`, `migrate`, `explain` and `dkim-record`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use crate::clock::SystemClock;
use crate::config::{DatabaseArgs, ServiceArgs};
use crate::engine::state::Context;
use crate::event::Event;
use crate::sequence::duration;
use crate::service;
use crate::simulate::{self, Totals, Until};
use crate::store::Store as _;
use crate::template::check;
use crate::template::data::{self, Origin};
use crate::validate::{self, Loaded};

#[derive(Debug, Parser)]
#[command(name = "aftercare", version, about = "Post-purchase lifecycle email")]
pub struct Cli {
    /// Folder of sequence YAML files and _policies.yaml.
    #[arg(
        long,
        global = true,
        env = "AFTERCARE_SEQUENCES",
        default_value = "./sequences"
    )]
    pub sequences: PathBuf,
    /// Folder of email templates.
    #[arg(
        long,
        global = true,
        env = "AFTERCARE_TEMPLATES",
        default_value = "./templates"
    )]
    pub templates: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check sequences, policies and templates; errors as file:line:col.
    Validate {
        /// Also check a JSON-lines events file: every line against the event
        /// schema (errors as FILE:LINE), and its event types against the
        /// sequences (warnings for types nothing listens to).
        #[arg(long)]
        events: Option<PathBuf>,
    },
    /// Print the JSON Schema of events (docs/event.schema.json).
    Schema,
    /// Render one template for one locale and print it.
    Preview {
        /// Template id (a folder under the templates folder).
        template: String,
        /// Locale to render (falls back hu-HU -> hu -> default).
        #[arg(long)]
        locale: Option<String>,
        /// An event (JSON) to render with, or template data merged over the sample.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Print the HTML part too.
        #[arg(long)]
        html: bool,
    },
    /// Run events through the real engine and policies on a virtual clock.
    Simulate {
        /// JSON-lines file of events.
        #[arg(long)]
        events: PathBuf,
        /// Stop at a duration after the last event (e.g. 120d) or at an RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// Also print skipped emails and enrollment notes on stderr.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Render a template and send it to one address through the configured
    /// transport (AFTERCARE_SMTP_URL, else an .eml file), marked as a test:
    /// never counted toward caps, never tracked, not in the outbox.
    SendTest {
        /// Template id (a folder under the templates folder).
        template: String,
        /// Where to send it.
        #[arg(long)]
        to: String,
        /// Locale to render (falls back hu-HU -> hu -> default).
        #[arg(long)]
        locale: Option<String>,
        /// An event (JSON) to render with, or template data merged over the sample.
        #[arg(long)]
        data: Option<PathBuf>,
        // The transport's settings are `run`'s.
        #[command(flatten)]
        service: Box<ServiceArgs>,
    },
    /// The service: Kafka and HTTP ingest, scheduler, sender.
    Run {
        // Boxed: the service's settings outweigh every other command's.
        #[command(flatten)]
        service: Box<ServiceArgs>,
    },
    /// Feed a JSON-lines file of events through the ingest path.
    Ingest {
        file: PathBuf,
        /// The file is history: replay it on its own time, so each customer
        /// ends where they would be now; emails that were due before now are
        /// recorded as skipped (`backfill`), never sent.
        #[arg(long)]
        backfill: bool,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Why did (not) a customer get an email: their timeline of events,
    /// decisions and emails as the database keeps them, and with --template
    /// the answer.
    Explain {
        /// The customer's id (as the shop sends it).
        customer: String,
        /// Only this order (and what of the customer names no order).
        #[arg(long)]
        order: Option<String>,
        /// Did the customer get this template, and if not, why.
        #[arg(long)]
        template: Option<String>,
        /// Print JSON (the shape of GET /v1/admin/customers/{id}/journey).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Apply the database migrations.
    Migrate {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Print the DNS TXT record that publishes the configured DKIM key.
    DkimRecord {
        #[command(flatten)]
        dkim: crate::send::dkim::DkimArgs,
    },
    /// Feed the sample events through the shipped sequences; write .eml files.
    Demo {
        /// Event files (JSON lines), taken together; the default: the
        /// fulfilment examples and the retention examples (win-back,
        /// anniversaries, birthdays, the survey, winter boots).
        #[arg(
            long,
            num_args = 1..,
            default_values = ["examples/events.jsonl", "examples/retention-events.jsonl"]
        )]
        events: Vec<PathBuf>,
        #[arg(long, env = "AFTERCARE_OUTBOX_DIR", default_value = "./outbox")]
        outbox: PathBuf,
    },
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { events } => {
            validate_cmd(&cli.sequences, &cli.templates, events.as_deref())
        }
        Command::Schema => {
            print!("{}", crate::schema::event_schema_text());
            Ok(ExitCode::SUCCESS)
        }
        Command::Preview {
            template,
            locale,
            data,
            html,
        } => preview(
            &cli.sequences,
            &cli.templates,
            &template,
            locale.as_deref(),
            data.as_deref(),
            html,
        ),
        Command::Simulate {
            events,
            until,
            verbose,
        } => simulate_cmd(
            &cli.sequences,
            &cli.templates,
            &events,
            until.as_deref(),
            verbose,
        ),
        Command::DkimRecord { dkim } => dkim_record(&dkim),
        Command::Demo { events, outbox } => demo(&cli.sequences, &cli.templates, &events, &outbox),
        Command::SendTest {
            template,
            to,
            locale,
            data,
            service,
        } => {
            let loaded = match load_or_fail(&cli.sequences, &cli.templates) {
                Ok(l) => l,
                Err(code) => return Ok(code),
            };
            let Data { value, wanted, .. } =
                template_data(&loaded, &template, locale.as_deref(), data.as_deref())?;
            runtime()?.block_on(send_test(
                &loaded,
                &service,
                &template,
                &to,
                wanted.as_deref(),
                value,
            ))
        }
        Command::Run { service } => {
            let loaded = match load_or_fail(&cli.sequences, &cli.templates) {
                Ok(l) => l,
                Err(code) => return Ok(code),
            };
            let loaded = service::Loaded {
                catalog: loaded.catalog,
                templates: loaded.templates,
            };
            runtime()?.block_on(service::run(*service, loaded))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingest { file, backfill, db } => {
            let loaded = match load_or_fail(&cli.sequences, &cli.templates) {
                Ok(l) => l,
                Err(code) => return Ok(code),
            };
            let mode = if backfill {
                crate::ingest::file::Mode::Backfill
            } else {
                crate::ingest::file::Mode::Live
            };
            runtime()?.block_on(ingest_cmd(&db.database_url, &loaded.catalog, &file, mode))
        }
        Command::Explain {
            customer,
            order,
            template,
            json,
            db,
        } => {
            let loaded = match load_or_fail(&cli.sequences, &cli.templates) {
                Ok(l) => l,
                Err(code) => return Ok(code),
            };
            let filter = crate::journey::Filter { order, template };
            runtime()?.block_on(explain(
                &db.database_url,
                &loaded.catalog,
                &customer,
                &filter,
                json,
            ))
        }
        Command::Migrate { db } => runtime()?.block_on(async {
            crate::with_store!(&db.database_url, |store| {
                store.migrate().await?;
                println!("migrations applied to {}", redact(&db.database_url));
                Ok(ExitCode::SUCCESS)
            })
        }),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(a), Some(b)) if b > a => {
            let creds = &url[a + 3..b];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..a + 3], &url[b..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

async fn ingest_cmd(
    url: &str,
    catalog: &crate::sequence::model::Catalog,
    file: &Path,
    mode: crate::ingest::file::Mode,
) -> anyhow::Result<ExitCode> {
    crate::with_store!(url, |store| {
        store.migrate().await?;
        let r = crate::ingest::file::ingest_file(&store, catalog, &SystemClock, file, mode).await?;
        match mode {
            crate::ingest::file::Mode::Live => eprintln!(
                "{} events applied, {} duplicate, {} invalid (dead-lettered); {} emails enqueued",
                r.ingested.applied, r.ingested.duplicates, r.invalid, r.ingested.emails
            ),
            crate::ingest::file::Mode::Backfill => eprintln!(
                "{} events replayed as history, {} duplicate, {} invalid (dead-lettered); \
                 {} customers caught up to now; {} emails that were due before now recorded \
                 as skipped (backfill), none sent",
                r.ingested.applied,
                r.ingested.duplicates,
                r.invalid,
                r.customers,
                r.ingested.emails
            ),
        }
        if r.unknown_types > 0 {
            eprintln!(
                "{} events of types no sequence listens to and not documented (see the warnings above; \
                 aftercare validate --events {} lists them)",
                r.unknown_types,
                file.display()
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `explain`: reads the customer's rows and prints their journey.
async fn explain(
    url: &str,
    catalog: &crate::sequence::model::Catalog,
    customer: &str,
    filter: &crate::journey::Filter,
    json: bool,
) -> anyhow::Result<ExitCode> {
    crate::with_store!(url, |store| {
        // Reading only: a database behind the program is not migrated here.
        if let Err(e) = store.ready().await {
            bail!(
                "the database at {} cannot answer: {e} (aftercare migrate applies the migrations)",
                redact(url)
            );
        }
        let rows = store.journey(customer).await?;
        if rows.is_empty() {
            eprintln!(
                "nothing is stored about customer {customer:?} in {}",
                redact(url)
            );
            return Ok(ExitCode::from(1));
        }
        let journey = crate::journey::assemble(catalog, customer, &rows, filter);
        let mut out = std::io::stdout().lock();
        if json {
            serde_json::to_writer_pretty(&mut out, &journey)?;
            writeln!(out)?;
        } else {
            write!(out, "{}", crate::journey::render(&journey))?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn validate_cmd(
    sequences: &Path,
    templates: &Path,
    events: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let loaded = validate::load(sequences, templates);
    let mut d = loaded.diagnostics.clone();
    let mut counted = String::new();
    if let Some(file) = events {
        let checked = validate::check_events(file, &loaded.catalog)
            .with_context(|| format!("reading {}", file.display()))?;
        counted = format!(", {} event(s)", checked.events);
        d.extend(checked.diagnostics);
    }
    eprint!("{d}");
    let errors = d.errors().count();
    let warnings = d.0.len() - errors;
    if errors > 0 {
        eprintln!("{errors} error(s), {warnings} warning(s)");
        Ok(ExitCode::from(1))
    } else {
        println!(
            "ok: {} sequence(s), {} template(s){counted}, {warnings} warning(s)",
            loaded.catalog.sequences.len(),
            loaded.templates.ids().count()
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// Loads and checks; any error stops the command with every problem listed.
fn load_or_fail(sequences: &Path, templates: &Path) -> Result<Loaded, ExitCode> {
    let loaded = validate::load(sequences, templates);
    if loaded.diagnostics.has_errors() {
        for d in loaded.diagnostics.errors() {
            eprintln!("{d}");
        }
        eprintln!("fix these errors first (aftercare validate lists them too)");
        return Err(ExitCode::from(1));
    }
    Ok(loaded)
}

fn preview(
    sequences: &Path,
    templates: &Path,
    id: &str,
    locale: Option<&str>,
    data_file: Option<&Path>,
    html: bool,
) -> anyhow::Result<ExitCode> {
    let loaded = match load_or_fail(sequences, templates) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let Data {
        value,
        wanted,
        given,
    } = template_data(&loaded, id, locale, data_file)?;
    // How the file fits the template: warnings, not errors.
    if let (Some(g), Some(file)) = (&given, data_file) {
        let locale = loaded.templates.resolve_locale(id, wanted.as_deref())?;
        let given = check::DataFile {
            file,
            text: &g.text,
            json: &g.json,
            event: g.event,
        };
        eprint!(
            "{}",
            loaded.templates.data_notes(id, locale, &given, &value)
        );
    }
    let r = loaded.templates.render(id, wanted.as_deref(), &value)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "Locale: {}", r.locale)?;
    writeln!(out, "Subject: {}", r.subject)?;
    if let Some(p) = &r.preheader {
        writeln!(out, "Preheader: {p}")?;
    }
    writeln!(out, "\n{}", r.text.trim_end())?;
    if html {
        writeln!(out, "\n----- HTML -----\n{}", r.html)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The data a template is rendered with for `preview` and `send-test`.
struct Data {
    /// The template's sample, or an event, or data merged over the sample.
    value: serde_json::Value,
    /// The locale wanted (`--locale`, else the data's customer's).
    wanted: Option<String>,
    /// What `--data` gave.
    given: Option<Given>,
}

struct Given {
    text: String,
    json: serde_json::Value,
    /// An event, not data merged over the sample.
    event: bool,
}

fn template_data(
    loaded: &Loaded,
    id: &str,
    locale: Option<&str>,
    data_file: Option<&Path>,
) -> anyhow::Result<Data> {
    let policies = &loaded.catalog.policies;
    if !loaded.templates.contains(id) {
        let known: Vec<&str> = loaded.templates.ids().map(String::as_str).collect();
        bail!("unknown template `{id}`; known: {}", known.join(", "));
    }
    let origin = Origin {
        sequence: "preview",
        step: id,
    };
    let mut given = None;
    let mut value = match data_file {
        None => data::sample_data(policies, id, loaded.templates.sample(id)),
        Some(f) => {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "{}:{}:{}: invalid JSON: {e}",
                    f.display(),
                    e.line(),
                    e.column()
                )
            })?;
            let event = json.get("type").is_some() && json.get("occurred_at").is_some();
            let value = if event {
                let event = Event::parse(&text).map_err(|e| {
                    // The field at fault, where the file writes it.
                    let place = e
                        .message
                        .split_once(": ")
                        .and_then(|(path, _)| check::locate_field(&text, path))
                        .map(|(l, c)| format!(":{l}:{c}"))
                        .unwrap_or_default();
                    anyhow::anyhow!("{}{place}: {e}", f.display())
                })?;
                data::build(
                    Context::of_event(&event).view(),
                    policies,
                    origin,
                    event.occurred_at,
                )
            } else {
                let wrong = check::sample_types(f, &text, &json);
                if wrong.has_errors() {
                    bail!(
                        "the data has fields of the wrong type:\n{}",
                        wrong.to_string().trim_end()
                    );
                }
                let mut base = data::sample_data(policies, id, loaded.templates.sample(id));
                data::merge(&mut base, &json);
                base
            };
            given = Some(Given { text, json, event });
            value
        }
    };
    let wanted = data::preview_locale(&mut value, locale);
    Ok(Data {
        value,
        wanted,
        given,
    })
}

async fn send_test(
    loaded: &Loaded,
    args: &ServiceArgs,
    template: &str,
    to: &str,
    locale: Option<&str>,
    value: serde_json::Value,
) -> anyhow::Result<ExitCode> {
    let transport = service::outbound(args)?;
    let (_, bounces) = args.sending()?;
    let policies = &loaded.catalog.policies;
    let content = loaded.templates.render(template, locale, &value)?;
    let dkim = args.dkim.load()?;
    let m = crate::send::test_message(
        policies,
        template,
        to,
        bounces.as_deref(),
        dkim.as_ref(),
        Utc::now(),
        &content,
    )?;
    use crate::send::transport::Transport as _;
    let deadline = transport.deadline();
    let sent = match tokio::time::timeout(deadline, transport.deliver(&m)).await {
        Ok(r) => r,
        Err(_) => Err(crate::send::transport::Error::Transient(format!(
            "the transport did not answer within {deadline:?}"
        ))),
    };
    match sent {
        Ok(reply) => {
            println!(
                "sent {template} ({}) to {to}: {reply}\nSubject: {}",
                content.locale, content.subject
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("not sent: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

fn read_events(file: &Path) -> anyhow::Result<(Vec<Event>, usize)> {
    let f = std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    let max = crate::event::limits::EVENT_BYTES;
    let mut lines = crate::ingest::file::Lines::new(std::io::BufReader::new(f), max);
    let (mut events, mut bad) = (Vec::new(), 0);
    while let Some(line) = lines
        .next_line()
        .with_context(|| format!("reading {}", file.display()))?
    {
        let parsed = match line.text(max) {
            None => continue,
            Some(text) => text.and_then(|t| Event::parse(t).map_err(|e| e.message)),
        };
        match parsed {
            Ok(ev) => events.push(ev),
            Err(message) => {
                bad += 1;
                eprintln!("{}:{}: skipped: {message}", file.display(), line.number);
            }
        }
    }
    Ok((events, bad))
}

fn parse_until(s: &str, last_event: Option<DateTime<Utc>>) -> anyhow::Result<Until> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Until::At(t.with_timezone(&Utc)));
    }
    let d = duration::parse(s).map_err(|e| anyhow::anyhow!("--until: {e}, or an RFC 3339 time"))?;
    let last = last_event.unwrap_or_else(Utc::now);
    Ok(Until::At(last + d))
}

/// An events file read in `occurred_at` order without holding it in memory:
/// a first pass notes each line's time, id, customer and place; the events
/// are then read back one by one in order. A line that cannot be used is
/// reported on stderr with its number and skipped.
struct EventIndex {
    path: PathBuf,
    /// Sorted by time (stable).
    lines: Vec<IndexedLine>,
    bad: usize,
    /// Later lines with an id first seen for another customer.
    duplicates: usize,
    last: Option<DateTime<Utc>>,
}

struct IndexedLine {
    at: DateTime<Utc>,
    customer: String,
    line_no: usize,
    offset: u64,
    len: usize,
}

impl EventIndex {
    fn open(path: &Path) -> anyhow::Result<Self> {
        let file =
            std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        let size = file.metadata()?.len();
        // Two halves read side by side, cut at a line's start: reading each
        // line's head is most of the pass, and the shards wait for it.
        let mid = line_start_from(&file, size / 2)?;
        let (first, second) = std::thread::scope(|s| {
            let second = s.spawn(|| heads(path, mid, size));
            let first = heads(path, 0, mid);
            let second = second
                .join()
                .expect("reading an events file does not panic");
            (first, second)
        });
        let (first, second) = (
            first.with_context(|| format!("reading {}", path.display()))?,
            second.with_context(|| format!("reading {}", path.display()))?,
        );
        let mut lines = first.lines;
        let bad = first.bad.len() + second.bad.len();
        for (half, before) in [(&first.bad, 0), (&second.bad, first.count)] {
            for (line_no, message) in half {
                eprintln!(
                    "{}:{}: skipped: {message}",
                    path.display(),
                    before + line_no
                );
            }
        }
        lines.extend(second.lines.into_iter().map(|(id, mut l)| {
            l.line_no += first.count;
            (id, l)
        }));
        lines.sort_by_key(|(_, l)| l.at);
        // A customer's duplicates reach the same shard, whose store counts
        // them as the service would. An id reused for another customer would
        // reach another shard: the first customer's line is the event, as
        // one store would have it, and the later ones are duplicates here.
        let mut owner: std::collections::HashMap<String, String> =
            std::collections::HashMap::with_capacity(lines.len());
        let before = lines.len();
        let lines: Vec<IndexedLine> = lines
            .into_iter()
            .filter_map(|(id, l)| {
                let first = owner.entry(id).or_insert_with(|| l.customer.clone());
                (*first == l.customer).then_some(l)
            })
            .collect();
        let duplicates = before - lines.len();
        let last = lines.last().map(|l| l.at);
        Ok(Self {
            path: path.to_path_buf(),
            lines,
            bad,
            duplicates,
            last,
        })
    }

    /// Cuts the events into `n` streams by customer, each in time order.
    fn shards(self, n: usize, bad: &Arc<AtomicUsize>) -> anyhow::Result<Vec<ShardEvents>> {
        let mut parts: Vec<Vec<Place>> = (0..n).map(|_| Vec::new()).collect();
        for l in self.lines {
            let shard = simulate::shard_of(&l.customer, n);
            parts[shard].push(Place {
                line_no: l.line_no,
                offset: l.offset,
                len: l.len,
            });
        }
        parts
            .into_iter()
            .map(|lines| {
                Ok(ShardEvents {
                    path: self.path.clone(),
                    file: std::fs::File::open(&self.path)?,
                    lines: lines.into_iter(),
                    bad: bad.clone(),
                })
            })
            .collect()
    }
}

/// The heads of the lines of `file` between the offsets `from` (a line's
/// start) and `to`, numbered from 1 there.
struct Heads {
    lines: Vec<(String, IndexedLine)>,
    /// Lines that cannot be used: number and why.
    bad: Vec<(usize, String)>,
    /// Lines read.
    count: usize,
}

fn heads(path: &Path, from: u64, to: u64) -> std::io::Result<Heads> {
    use std::io::{Read, Seek};
    #[derive(serde::Deserialize)]
    struct Who {
        id: String,
    }
    #[derive(serde::Deserialize)]
    struct Head {
        id: String,
        occurred_at: DateTime<Utc>,
        customer: Who,
    }
    // A file of its own: a clone would share the other half's position.
    let mut part = std::fs::File::open(path)?;
    part.seek(std::io::SeekFrom::Start(from))?;
    let max = crate::event::limits::EVENT_BYTES;
    let reader = std::io::BufReader::new(part.take(to - from));
    let mut reader = crate::ingest::file::Lines::starting_at(reader, max, from);
    let mut out = Heads {
        lines: Vec::new(),
        bad: Vec::new(),
        count: 0,
    };
    while let Some(line) = reader.next_line()? {
        out.count = line.number;
        let head = match line.text(max) {
            None => continue,
            Some(Err(message)) => Err(message),
            Some(Ok(l)) => serde_json::from_str::<Head>(l)
                .map_err(|_| Event::parse(l).err().map(|e| e.message).unwrap_or_default()),
        };
        match head {
            Ok(h) => out.lines.push((
                h.id,
                IndexedLine {
                    at: h.occurred_at,
                    customer: h.customer.id,
                    line_no: line.number,
                    offset: line.offset,
                    len: line.len,
                },
            )),
            Err(message) => out.bad.push((line.number, message)),
        }
    }
    Ok(out)
}

/// The offset of the first line that starts at or after `at` (the file's
/// size if none does).
fn line_start_from(file: &std::fs::File, at: u64) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    if at == 0 {
        return Ok(0);
    }
    // The line before `at` ends at or after `at - 1`.
    let mut pos = at - 1;
    let mut buf = [0u8; 8192];
    loop {
        let n = file.read_at(&mut buf, pos)?;
        if n == 0 {
            return Ok(pos);
        }
        if let Some(i) = buf[..n].iter().position(|b| *b == b'\n') {
            return Ok(pos + i as u64 + 1);
        }
        pos += n as u64;
    }
}

/// One shard's events, read back from the file in time order.
struct ShardEvents {
    path: PathBuf,
    file: std::fs::File,
    lines: std::vec::IntoIter<Place>,
    bad: Arc<AtomicUsize>,
}

/// Where a shard's event is in the file: all a shard keeps of each of its
/// lines while it runs (not the customer id the index cut them by).
struct Place {
    line_no: usize,
    offset: u64,
    len: usize,
}

impl Iterator for ShardEvents {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        use std::os::unix::fs::FileExt;
        for l in self.lines.by_ref() {
            let mut buf = vec![0; l.len];
            let text = match self.file.read_exact_at(&mut buf, l.offset) {
                // The index read the line as text: no copy to make.
                Ok(()) => String::from_utf8(buf)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
                Err(e) => format!("unreadable: {e}"),
            };
            match Event::parse(text.trim()) {
                Ok(ev) => return Some(ev),
                Err(e) => {
                    self.bad.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "{}:{}: skipped: {}",
                        self.path.display(),
                        l.line_no,
                        e.message
                    );
                }
            }
        }
        None
    }
}

/// Prints `simulate`'s lines as they come and counts what `summary` says.
struct Printer<W: Write> {
    out: W,
    verbose: bool,
    sent: usize,
    skipped: std::collections::BTreeMap<String, usize>,
    error: Option<std::io::Error>,
}

impl<W: Write> simulate::Sink for Printer<W> {
    fn sent(&mut self, email: simulate::Delivered) {
        self.sent += 1;
        let r = serde_json::to_writer(&mut self.out, &email.line)
            .map_err(std::io::Error::from)
            .and_then(|_| self.out.write_all(b"\n"));
        if let Err(e) = r {
            self.error.get_or_insert(e);
        }
    }

    fn skipped(&mut self, s: simulate::Skipped) {
        if self.verbose {
            eprintln!(
                "{} skipped {} {} {}: {}",
                s.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                s.customer_id,
                s.sequence,
                s.step,
                s.reason
            );
        }
        *self.skipped.entry(reason_kind(&s.reason)).or_default() += 1;
    }

    fn note(&mut self, at: DateTime<Utc>, n: crate::engine::dispatch::Note) {
        if self.verbose {
            eprintln!(
                "{} {} {}: {}",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                n.sequence,
                n.enrollment_key,
                n.message
            );
        }
    }
}

fn simulate_cmd(
    sequences: &Path,
    templates: &Path,
    events_file: &Path,
    until: Option<&str>,
    verbose: bool,
) -> anyhow::Result<ExitCode> {
    let loaded = match load_or_fail(sequences, templates) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let index = EventIndex::open(events_file)?;
    let until = match until {
        Some(u) => parse_until(u, index.last)?,
        // Every shard runs to the same end: that of the whole file.
        None => Until::At(
            index.last.unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
                + chrono::Duration::days(simulate::horizon_days(&loaded.catalog)),
        ),
    };
    let (bad_first, duplicates) = (index.bad, index.duplicates);
    let bad_later = Arc::new(AtomicUsize::new(0));
    let streams = index.shards(simulate::SHARDS, &bad_later)?;
    let mut printer = Printer {
        out: std::io::BufWriter::new(std::io::stdout().lock()),
        verbose,
        sent: 0,
        skipped: Default::default(),
        error: None,
    };
    let mut totals = simulate::run_sharded(
        &loaded.catalog,
        &loaded.templates,
        streams,
        until,
        &mut printer,
    );
    totals.duplicates += duplicates;
    if let Some(e) = printer.error.take() {
        return Err(e.into());
    }
    printer.out.flush()?;
    let skipped: usize = printer.skipped.values().sum();
    let bad = bad_first + bad_later.load(Ordering::Relaxed);
    eprintln!(
        "{}",
        summary(totals, bad, printer.sent, skipped, &printer.skipped)
    );
    Ok(ExitCode::SUCCESS)
}

/// What the summary counts a skip under: its reason up to the first colon.
fn reason_kind(reason: &str) -> String {
    reason.split(':').next().unwrap_or("").to_string()
}

fn summary(
    totals: Totals,
    bad: usize,
    sent: usize,
    skipped: usize,
    reasons: &std::collections::BTreeMap<String, usize>,
) -> String {
    let reasons: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    format!(
        "{} events applied, {} invalid, {} duplicate; {} emails sent, {} skipped{}; {} enrollments still waiting",
        totals.events,
        bad,
        totals.duplicates,
        sent,
        skipped,
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        },
        totals.pending
    )
}

fn demo(
    sequences: &Path,
    templates: &Path,
    events_files: &[PathBuf],
    outbox: &Path,
) -> anyhow::Result<ExitCode> {
    let loaded = match load_or_fail(sequences, templates) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let (mut events, mut bad) = (Vec::new(), 0);
    for file in events_files {
        let (more, wrong) = read_events(file)?;
        events.extend(more);
        bad += wrong;
    }
    let sim = simulate::demo(&loaded.catalog, &loaded.templates, events, outbox);
    println!(
        "{:<20}  {:<22}  {:<14}  {:<6}  subject",
        "sent at (UTC)", "to", "sequence", "locale"
    );
    for d in sim.sorted_delivered() {
        println!(
            "{:<20}  {:<22}  {:<14}  {:<6}  {}",
            d.at.format("%Y-%m-%d %H:%M"),
            d.line.to,
            d.line.sequence,
            d.line.locale,
            d.line.subject
        );
    }
    for s in &sim.skipped {
        println!(
            "{:<20}  {:<22}  {:<14}  skipped {}: {}",
            s.at.format("%Y-%m-%d %H:%M"),
            s.customer_id,
            s.sequence,
            s.step,
            s.reason
        );
    }
    let mut reasons = std::collections::BTreeMap::new();
    for s in &sim.skipped {
        *reasons.entry(reason_kind(&s.reason)).or_default() += 1;
    }
    let totals = Totals {
        events: sim.events,
        duplicates: sim.duplicates,
        pending: sim.pending,
    };
    eprintln!(
        "{}",
        summary(
            totals,
            bad,
            sim.delivered.len(),
            sim.skipped.len(),
            &reasons
        )
    );
    println!(
        "\n{} .eml files in {}",
        sim.delivered.len(),
        outbox.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `dkim-record`: the TXT record for the key `run` would sign with.
fn dkim_record(args: &crate::send::dkim::DkimArgs) -> anyhow::Result<ExitCode> {
    let Some(signer) = args.load()? else {
        bail!(
            "DKIM is not configured: set AFTERCARE_DKIM_SELECTOR, AFTERCARE_DKIM_DOMAIN and \
             AFTERCARE_DKIM_KEY_FILE (README: DKIM)"
        );
    };
    let r = signer.record();
    println!("name:  {}", r.name);
    println!("type:  TXT");
    println!("value: {}", r.value);
    println!("zone file:\n{r}");
    Ok(ExitCode::SUCCESS)
}
