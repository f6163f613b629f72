//! The process-wide `tracing` subscriber.

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

/// Why the subscriber could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `LOG_LEVEL` is not a valid `EnvFilter` directive list.
    #[error("invalid log level {level:?}: {reason}")]
    BadFilter {
        /// The rejected filter string.
        level: String,
        /// The parser's explanation.
        reason: String,
    },
    /// A global subscriber (or `log` logger) was already installed, e.g. by an earlier `init`.
    #[error("a global tracing subscriber is already installed: {0}")]
    AlreadyInitialized(String),
}

/// Installs the global subscriber: an `EnvFilter` built from `level` (e.g. `info` or
/// `switchyard=debug,info`; empty means `info`), JSON lines when `json` is true (everything
/// outside `dev`), a compact human format otherwise; output goes to stderr so that stdout stays
/// free for command output. Returns an error, never panics, on a bad filter or a second call.
/// Records from the `log` crate (e.g. fred's) are routed into `tracing` as well.
pub fn init(level: &str, json: bool) -> Result<(), TelemetryError> {
    let ansi = !json && std::io::stderr().is_terminal();
    let subscriber = build(level, json, ansi, std::io::stderr)?;
    // `try_init` also installs the `log` -> `tracing` bridge.
    subscriber
        .try_init()
        .map_err(|e| TelemetryError::AlreadyInitialized(e.to_string()))
}

/// Builds the subscriber [`init`] installs, writing to `writer`, without installing it (for tests
/// and `tracing::subscriber::with_default`); no ANSI colours.
pub fn subscriber<W>(
    level: &str,
    json: bool,
    writer: W,
) -> Result<Box<dyn Subscriber + Send + Sync + 'static>, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    build(level, json, false, writer)
}

/// The subscriber, with ANSI colours in the human format when `ansi` is true.
fn build<W>(
    level: &str,
    json: bool,
    ansi: bool,
    writer: W,
) -> Result<Box<dyn Subscriber + Send + Sync + 'static>, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = parse_filter(level)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    Ok(if json {
        Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(true)
                .finish(),
        )
    } else {
        Box::new(builder.compact().finish())
    })
}

/// Parses `level` as an `EnvFilter`; an empty or blank string means `info`.
fn parse_filter(level: &str) -> Result<EnvFilter, TelemetryError> {
    let level = level.trim();
    let level = if level.is_empty() { "info" } else { level };
    EnvFilter::builder()
        .parse(level)
        .map_err(|e| TelemetryError::BadFilter {
            level: level.to_owned(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A `MakeWriter` that appends to a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().map(|b| b.clone()).unwrap_or_default())
                .unwrap_or_default()
        }
    }

    #[test]
    fn bad_filters_are_errors() {
        for bad in ["info,switchyard=loud", "=debug[", "switchyard=[{"] {
            let err = subscriber(bad, true, Buffer::default()).err();
            assert!(
                matches!(err, Some(TelemetryError::BadFilter { .. })),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn good_filters_parse() {
        for good in [
            "info",
            "switchyard=debug,info",
            "warn,switchyard_bus=trace",
            "",
            "  ",
        ] {
            assert!(subscriber(good, false, Buffer::default()).is_ok(), "{good}");
        }
    }

    #[test]
    fn json_lines_carry_fields_and_spans() {
        let buf = Buffer::default();
        let sub = subscriber("info", true, buf.clone()).expect("subscriber");
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("request", request_id = "r-1");
            let _guard = span.enter();
            tracing::info!(job_id = "j-1", "claimed");
            tracing::debug!("filtered out");
        });
        let text = buf.text();
        let line = text.lines().next().expect("one line");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
        for needle in [
            "\"message\":\"claimed\"",
            "\"job_id\":\"j-1\"",
            "\"request_id\":\"r-1\"",
            "\"level\":\"INFO\"",
        ] {
            assert!(line.contains(needle), "{needle} missing in {line}");
        }
    }

    #[test]
    fn compact_format_is_not_json() {
        let buf = Buffer::default();
        let sub = subscriber("switchyard=debug,warn", false, buf.clone()).expect("subscriber");
        tracing::subscriber::with_default(sub, || {
            tracing::debug!(target: "switchyard::queue", pool = "p", "woke");
            tracing::info!(target: "other", "hidden");
        });
        let text = buf.text();
        assert!(
            text.contains("woke") && text.contains("pool=\"p\""),
            "{text}"
        );
        assert!(!text.contains("hidden"), "{text}");
        assert!(!text.trim_start().starts_with('{'), "{text}");
    }

    #[test]
    fn init_twice_is_an_error_not_a_panic() {
        // The first call may fail if another test in this binary installed a subscriber first;
        // the second must fail either way.
        let _ = init("info", false);
        assert!(matches!(
            init("info", true),
            Err(TelemetryError::AlreadyInitialized(_))
        ));
        assert!(matches!(
            init("info,x=[", true),
            Err(TelemetryError::BadFilter { .. })
        ));
    }
}
