use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = aftercare::cli::Cli::parse();
    // The service logs what it does; one-shot commands only what goes wrong.
    let default = match cli.command {
        aftercare::cli::Command::Run { .. } => {
            // A long-running service keeps its footprint small; one-shot
            // commands (simulate) run faster with mimalloc's default.
            return_freed_memory_soon();
            "info"
        }
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match std::env::var("AFTERCARE_LOG_FORMAT").as_deref() {
        Ok("json") => logs.json().init(),
        Ok("text") | Err(_) => logs.init(),
        Ok(other) => {
            eprintln!("error: AFTERCARE_LOG_FORMAT={other:?}: use text or json");
            return ExitCode::from(2);
        }
    }
    match aftercare::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Colours only on a terminal: logs piped to a file, journald or a log
/// shipper would otherwise carry escape codes. `NO_COLOR` (no-color.org)
/// turns them off on a terminal too.
fn colour(stream: &impl std::io::IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// mimalloc rather than glibc's malloc: under the churn of many small
/// short-lived allocations (events, contexts, rendered parts) glibc spent a
/// third of `simulate`'s time searching fragmented free lists
/// (docs/BENCHMARKS.md), and it returns freed memory to the system sooner.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` option (`mi_option_purge_delay` in its header,
/// between `eager_commit_delay` = 14 and `use_numa_nodes` = 16, which the
/// sys crate names).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc's `arena_eager_commit` option (`mi_option_arena_eager_commit`,
/// the fifth of its header's options; the sys crate does not name it).
#[cfg(target_os = "linux")]
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// mimalloc commits the memory of each arena as soon as it reserves one (on
/// systems that overcommit, as Linux does), and that memory stays resident
/// whatever is freed. Committing pages only as they are used took 25-40 MiB
/// off the service's peak while ingesting a backlog and 18 MB off
/// `simulate`'s, at the same speed (docs/BENCHMARKS.md, section 9). The first
/// arena is reserved at the first allocation, before `main`: the option is
/// set by a function the loader runs before it (`.init_array`), which must
/// not allocate. `MIMALLOC_ARENA_EAGER_COMMIT` in the environment still
/// decides.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static COMMIT_ON_USE: extern "C" fn() = commit_on_use;

#[cfg(target_os = "linux")]
extern "C" fn commit_on_use() {
    unsafe extern "C" {
        fn getenv(name: *const std::ffi::c_char) -> *const std::ffi::c_char;
    }
    // SAFETY: `getenv` only reads the environment, which nothing changes
    // before `main`; the name is a NUL-terminated literal.
    let unset = unsafe { getenv(c"MIMALLOC_ARENA_EAGER_COMMIT".as_ptr()) }.is_null();
    if unset {
        // SAFETY: sets a plain integer option, without allocating.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
    }
}

/// By default mimalloc keeps freed pages for a while before giving them back;
/// between two ingest batches that held ~30 MiB more resident than needed
/// (docs/BENCHMARKS.md). The service gives them back after
/// [`SERVICE_PURGE_DELAY_MS`] instead, unless mimalloc's own
/// `MIMALLOC_PURGE_DELAY` (in milliseconds) says otherwise.
fn return_freed_memory_soon() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: sets a plain integer option; mimalloc reads it on each purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, SERVICE_PURGE_DELAY_MS) };
}

/// How long the service keeps freed pages before giving them back. At 0
/// (at once) the kernel calls that give back and take again the same pages
/// were 2.0-2.3 s of system time per 100,000 events ingested; at 10 ms,
/// 1.2-1.4 s, for a few MiB more at the peak; 20 ms and 100 ms saved little
/// more and held more (docs/BENCHMARKS.md, section 13).
const SERVICE_PURGE_DELAY_MS: std::ffi::c_long = 10;
