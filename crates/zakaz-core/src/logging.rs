//! One tracing set-up for every binary.
//!
//! Under systemd (stderr is the journal stream named by `JOURNAL_STREAM`) each event is one
//! line with a syslog priority prefix (`<3>` error … `<7>` debug) and no timestamp, so
//! `journalctl -p err` works; on a terminal the format is human with timestamps. `LOG_FILE`
//! adds a plain file log. Every line passes through the secret redactor.

use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use clap::Args;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::error::config_error;

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log level or tracing filter directives (error, warn, info, debug, trace; or e.g.
    /// `info,zakaz_core=debug`).
    #[arg(long, env = "LOG_LEVEL", default_value = "info", global = true)]
    pub log_level: String,

    /// Also append log lines to this file (e.g. `logs/qtickets.log`), with timestamps.
    #[arg(long, env = "LOG_FILE", value_name = "PATH", global = true)]
    pub log_file: Option<PathBuf>,
}

/// Whether stderr is the journal stream systemd gave this process.
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    match std::fs::metadata("/proc/self/fd/2") {
        Ok(meta) => dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino()),
        // Without /proc, trust the variable.
        Err(_) => true,
    }
}

/// Install the global subscriber. Fails with a line naming `LOG_LEVEL` or `LOG_FILE`.
pub fn init(args: &LogArgs) -> anyhow::Result<()> {
    init_with(args, false)
}

/// `init`, optionally sending events to journald natively under systemd (each field an
/// upper-case journal field: `cid` → `CID`). Falls back to stderr lines when the journal
/// socket cannot be reached.
pub fn init_with(args: &LogArgs, journal_fields: bool) -> anyhow::Result<()> {
    let filter = parse_level(&args.log_level)?;
    let file_layer = match &args.log_file {
        None => None,
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    config_error(format!(
                        "cannot create directory for `LOG_FILE` `{}`: {e}",
                        path.display()
                    ))
                })?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    config_error(format!("cannot open `LOG_FILE` `{}`: {e}", path.display()))
                })?;
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_target(false)
                    .with_writer(Redacting(Mutex::new(file))),
            )
        }
    };
    let journal = stderr_is_journal();
    let native = if journal && journal_fields {
        tracing_journald::layer()
            .ok()
            .map(|l| l.with_field_prefix(None))
    } else {
        None
    };
    let journal_layer = (journal && native.is_none()).then(|| {
        tracing_subscriber::fmt::layer()
            .event_format(JournalFormat)
            .with_ansi(false)
            .with_writer(Redacting(io::stderr))
    });
    let terminal_layer = (!journal).then(|| {
        tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
            .with_writer(Redacting(io::stderr))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(journal_layer)
        .with(native)
        .with(terminal_layer)
        .with(file_layer)
        .try_init()
        .map_err(|e| anyhow::anyhow!("logging was already initialised: {e}"))?;
    Ok(())
}

/// A level (`info`) or directives (`info,zakaz_core=debug`). Stricter than `EnvFilter`,
/// which reads a typo such as `verbose` as a target name and silently logs everything.
fn parse_level(text: &str) -> anyhow::Result<EnvFilter> {
    const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];
    let bad = || {
        config_error(format!(
            "invalid `LOG_LEVEL` value `{text}`: expected one of {} or directives like `info,zakaz_core=debug`",
            LEVELS.join(", ")
        ))
    };
    for directive in text.split(',') {
        let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
        if !LEVELS.contains(&level.trim().to_ascii_lowercase().as_str()) {
            return Err(bad());
        }
    }
    EnvFilter::try_new(text).map_err(|_| bad())
}

/// `<N>message field=value`: the syslog priority prefix systemd-journald understands.
struct JournalFormat;

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", syslog_priority(*event.metadata().level()))?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

pub fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// A writer factory whose writers scrub registered secrets from each formatted event.
struct Redacting<M>(M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }
}

struct RedactingWriter<W>(W);

impl<W: Write> Write for RedactingWriter<W> {
    // The fmt layer hands over each formatted event in one buffer, so a secret is never split
    // across two calls.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(crate::secret::redact(&text).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_match_syslog() {
        assert_eq!(syslog_priority(Level::ERROR), 3);
        assert_eq!(syslog_priority(Level::WARN), 4);
        assert_eq!(syslog_priority(Level::INFO), 6);
        assert_eq!(syslog_priority(Level::DEBUG), 7);
    }

    #[test]
    fn log_levels_are_checked_strictly() {
        assert!(parse_level("debug").is_ok());
        assert!(parse_level("info,zakaz_core=trace").is_ok());
        let err = parse_level("verbose").unwrap_err().to_string();
        assert!(
            err.starts_with("invalid `LOG_LEVEL` value `verbose`"),
            "{err}"
        );
        assert!(parse_level("loud=").is_err());
    }

    #[test]
    fn redacting_writer_scrubs_secrets() {
        crate::secret::register("tok-123456");
        let mut out = RedactingWriter(Vec::new());
        out.write_all(b"<3>call failed: Bearer tok-123456\n")
            .unwrap();
        assert_eq!(
            String::from_utf8(out.0).unwrap(),
            "<3>call failed: Bearer ***\n"
        );
    }
}
