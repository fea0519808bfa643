//! Log output: `[HH:MM:SS] AGENT-ID LEVEL message` for people, one JSON object per line for
//! machines. The agent id is on every line once an agent runs.

use std::fmt::Write as _;
use std::sync::OnceLock;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;

static AGENT_ID: OnceLock<String> = OnceLock::new();

/// Put `id` on every line from now on.
pub fn set_agent_id(id: &str) {
    let _ = AGENT_ID.set(id.to_owned());
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.rest
                .push((field.name().to_owned(), format!("{value:?}")));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.rest.push((field.name().to_owned(), value.to_owned()));
        }
    }
}

/// The event formatter for both formats.
#[derive(Debug, Clone, Copy)]
pub struct Format(pub LogFormat);

impl<S, N> FormatEvent<S, N> for Format
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = *event.metadata().level();
        let agent = AGENT_ID.get().map(String::as_str);
        match self.0 {
            LogFormat::Human => {
                let now = chrono::Local::now().format("%H:%M:%S");
                write!(writer, "[{now}] ")?;
                if let Some(id) = agent {
                    write!(writer, "{id} ")?;
                }
                if level != tracing::Level::INFO {
                    write!(writer, "{level} ")?;
                }
                write!(writer, "{}", fields.message)?;
                for (k, v) in &fields.rest {
                    write!(writer, " {k}={v}")?;
                }
                writeln!(writer)
            }
            LogFormat::Json => {
                let mut obj = serde_json::Map::new();
                obj.insert("ts".into(), chrono::Local::now().to_rfc3339().into());
                obj.insert("level".into(), level.to_string().into());
                if let Some(id) = agent {
                    obj.insert("agent_id".into(), id.into());
                }
                obj.insert("target".into(), event.metadata().target().into());
                obj.insert("message".into(), fields.message.into());
                for (k, v) in fields.rest {
                    obj.insert(k, v.into());
                }
                writeln!(writer, "{}", serde_json::Value::Object(obj))
            }
        }
    }
}

/// Log to stderr in `format`; `verbose` shows debug lines. `IRONHOST_LOG` (a filter such as
/// `ironhost=trace`) overrides the level.
pub fn init(format: LogFormat, verbose: bool) {
    init_at(format, if verbose { "debug" } else { "info" });
}

/// Like [`init`], with ironhost's own lines from `level` up (`IRONHOST_LOG` still wins).
pub fn init_at(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IRONHOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("warn,ironhost={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(Format(format))
        .try_init();
}
