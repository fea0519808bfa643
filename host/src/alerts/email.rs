//! `[[alerts.email]]`: alerts as plain-text email over SMTP (lettre on the host's rustls).
//!
//! `smtp://host[:port]` (default port 25) talks plain SMTP and upgrades with STARTTLS when the
//! server offers it — and insists on it when ironhost logs in, so a password never goes out in
//! clear; `smtps://host[:port]` (default 465) is TLS from the first byte. The server's
//! certificate is checked against the system's roots, plus those of `ca-file` (a private CA).
//! The password is never in the file: `password-secret` names a secret in the store (read at
//! each send, so a rotation applies), `password-env` a variable read at start.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Deserialize;
use serde_json::Value;
use zeroize::Zeroizing;

use super::recommend::{self, Recommendation};

/// `[[alerts.email]]`: one set of recipients and the server to send through.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EmailConfig {
    /// Recipients' addresses.
    pub to: Vec<String>,
    /// The sender (default `ironhost@HOSTNAME`, or `ironhost@localhost` when the host name is
    /// not a domain).
    pub from: Option<String>,
    /// `smtp://host[:port]` or `smtps://host[:port]`.
    pub smtp: String,
    /// Log in as this user (with `password-secret` or `password-env`).
    pub username: Option<String>,
    /// The name of the secret (in the store, for this environment) holding the password.
    pub password_secret: Option<String>,
    /// The environment variable holding the password.
    pub password_env: Option<String>,
    /// Event types to send (default [`super::DEFAULT_EVENTS`]).
    pub events: Option<Vec<String>>,
    /// Per attempt, connecting and the SMTP exchange (default 10000).
    pub timeout_ms: Option<u64>,
    /// A PEM file of CA certificates to trust besides the system's (for a relay with a private
    /// CA or a self-signed certificate); relative to the configuration file.
    pub ca_file: Option<PathBuf>,
    /// The password read from `password-env` at start.
    #[serde(skip)]
    pub password_from_env: Option<Zeroizing<String>>,
    /// The certificates of `ca-file`, read at start.
    #[serde(skip)]
    pub ca_certificates: Option<Vec<u8>>,
}

/// How a server is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub host: String,
    pub port: u16,
    /// `smtps://`: TLS from the first byte.
    pub implicit_tls: bool,
}

/// `smtp://host[:port]` or `smtps://host[:port]`, nothing else.
pub fn parse_server(url: &str) -> Result<Server, String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let implicit_tls = match u.scheme() {
        "smtp" => false,
        "smtps" => true,
        other => {
            return Err(format!(
                "`{url}`: the scheme is `{other}`; use smtp://host[:port] (STARTTLS when offered) or smtps://host[:port] (TLS)"
            ));
        }
    };
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!(
            "`{url}` holds credentials: put the user in `username` and the password in the secrets store (`password-secret`)"
        ));
    }
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("`{url}` has no host"))?;
    if !matches!(u.path(), "" | "/") || u.query().is_some() || u.fragment().is_some() {
        return Err(format!("`{url}`: only a host and a port, no path or query"));
    }
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok(Server {
        host,
        port: u.port().unwrap_or(if implicit_tls { 465 } else { 25 }),
        implicit_tls,
    })
}

/// The sender when `from` is not set.
pub fn default_from() -> String {
    let host = crate::model::host_name();
    let candidate = format!("ironhost@{host}");
    if candidate.parse::<Address>().is_ok() && host.contains(|c: char| c.is_ascii_alphabetic()) {
        candidate
    } else {
        "ironhost@localhost".to_owned()
    }
}

impl EmailConfig {
    /// Why this configuration cannot work: `(field, reason)`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.to.is_empty() {
            return Err(("to", "is empty; name at least one address".to_owned()));
        }
        for a in &self.to {
            a.parse::<Address>()
                .map_err(|e| ("to", format!("`{a}` is not an email address: {e}")))?;
        }
        if let Some(from) = &self.from {
            from.parse::<Mailbox>().map_err(|e| {
                (
                    "from",
                    format!("`{from}` is not an address or `Name <address>`: {e}"),
                )
            })?;
        }
        parse_server(&self.smtp).map_err(|e| ("smtp", e))?;
        match (&self.username, &self.password_secret, &self.password_env) {
            (_, Some(_), Some(_)) => {
                return Err((
                    "password-secret",
                    "and password-env are both set; choose one".to_owned(),
                ));
            }
            (None, Some(_), None) => {
                return Err((
                    "username",
                    "is missing: password-secret needs it".to_owned(),
                ));
            }
            (None, None, Some(_)) => {
                return Err(("username", "is missing: password-env needs it".to_owned()));
            }
            (Some(_), None, None) => {
                return Err((
                    "username",
                    "needs a password: name a secret in `password-secret` (or a variable in `password-env`)".to_owned(),
                ));
            }
            _ => {}
        }
        if let Some(name) = &self.password_secret {
            crate::secrets::validate_name(name).map_err(|e| ("password-secret", e.to_string()))?;
        }
        if self.timeout_ms == Some(0) {
            return Err(("timeout-ms", "must be more than 0".to_owned()));
        }
        Ok(())
    }

    /// Read `ca-file` (relative to `base`, the configuration file's folder): it must hold at
    /// least one PEM certificate.
    pub fn read_ca_file(&mut self, base: &Path) -> Result<(), String> {
        let Some(name) = &self.ca_file else {
            return Ok(());
        };
        let path = base.join(name);
        let pem =
            std::fs::read(&path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        let count = pem
            .windows(CERT_BEGIN.len())
            .filter(|w| *w == CERT_BEGIN)
            .count();
        if count == 0 {
            return Err(format!(
                "`{}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
                path.display()
            ));
        }
        Certificate::from_pem(&pem)
            .map_err(|e| format!("`{}` is not a readable PEM file: {e}", path.display()))?;
        self.ca_certificates = Some(pem);
        Ok(())
    }

    /// The channel name in `sent_alerts`: the recipients, sorted.
    pub fn channel(&self) -> String {
        let mut to: Vec<String> = self.to.iter().map(|a| a.to_ascii_lowercase()).collect();
        to.sort();
        to.dedup();
        format!("email:{}", to.join(","))
    }

    /// Where mail goes, for logs.
    pub fn shown(&self) -> String {
        format!("{} via {}", self.to.join(", "), self.smtp)
    }
}

const CERT_BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";

/// A ready sender for one `[[alerts.email]]`.
#[derive(Clone)]
pub struct Mailer {
    pub config: EmailConfig,
    server: Server,
    from: Mailbox,
    to: Vec<Mailbox>,
    tls: Tls,
    hello: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("to", &self.config.to)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// Build the sender of a checked configuration.
    pub fn new(config: &EmailConfig) -> Result<Mailer, String> {
        let server = parse_server(&config.smtp)?;
        let from = config
            .from
            .clone()
            .unwrap_or_else(default_from)
            .parse::<Mailbox>()
            .map_err(|e| format!("alerts email from: {e}"))?;
        let to = config
            .to
            .iter()
            .map(|a| a.parse::<Mailbox>().map_err(|e| format!("`{a}`: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        // Root certificates are read once; STARTTLS and smtps verify the server's name.
        let mut params = TlsParameters::builder(server.host.clone());
        if let Some(pem) = &config.ca_certificates {
            params = params.add_root_certificate(
                Certificate::from_pem(pem).map_err(|e| format!("alerts email ca-file: {e}"))?,
            );
        }
        let params = params
            .build()
            .map_err(|e| format!("alerts email {}: TLS set-up: {e}", config.smtp))?;
        let tls = if server.implicit_tls {
            Tls::Wrapper(params)
        } else if config.username.is_some() {
            // Logging in: no STARTTLS, no password on the wire.
            Tls::Required(params)
        } else {
            Tls::Opportunistic(params)
        };
        let host = crate::model::host_name();
        let hello = if host.contains(|c: char| c.is_ascii_alphabetic()) {
            host
        } else {
            "localhost".to_owned()
        };
        Ok(Mailer {
            config: config.clone(),
            server,
            from,
            to,
            tls,
            hello,
        })
    }

    fn transport(&self, password: Option<Zeroizing<String>>) -> AsyncSmtpTransport<Tokio1Executor> {
        let timeout = Duration::from_millis(self.config.timeout_ms.unwrap_or(10_000));
        let mut b =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(self.server.host.clone())
                .port(self.server.port)
                .timeout(Some(timeout))
                .hello_name(ClientId::Domain(self.hello.clone()))
                .tls(self.tls.clone());
        if let (Some(user), Some(pass)) = (&self.config.username, password) {
            b = b.credentials(Credentials::new(user.clone(), pass.to_string()));
        }
        b.build()
    }

    /// Send one message: `Ok` once the server accepted it. `password` is the one to log in
    /// with, if the configuration names one.
    pub async fn send(
        &self,
        subject: &str,
        body: &str,
        password: Option<Zeroizing<String>>,
    ) -> Result<(), String> {
        let mut m = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            m = m.to(to.clone());
        }
        let message = m
            .body(body.to_owned())
            .map_err(|e| format!("cannot build the message: {e}"))?;
        let transport = self.transport(password);
        let overall = Duration::from_millis(self.config.timeout_ms.unwrap_or(10_000) * 3);
        match tokio::time::timeout(overall, transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(explain(&e.to_string())),
            Err(_) => Err(format!("no answer within {} s", overall.as_secs())),
        }
    }
}

/// lettre's error, with what to do about the two an operator meets first.
fn explain(error: &str) -> String {
    let error = error.replace("Connection error: Connection error:", "connection error:");
    if error.contains("invalid peer certificate") {
        format!(
            "{error} (the server's certificate is not trusted: if it comes from a private CA, name that CA's PEM file in `ca-file`)"
        )
    } else if error.contains("STARTTLS is not supported") {
        format!(
            "{error} (ironhost logs in only over TLS: use a server that offers STARTTLS, or smtps://)"
        )
    } else {
        error
    }
}

/// What an alert email says about an agent beyond the event.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The agent's name, if the store knows it.
    pub name: Option<String>,
    /// Its last progress report: done, total, unit.
    pub progress: Option<(u64, Option<u64>, Option<String>)>,
}

fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// The recommended action for a budget event (`budget_warning`, `budget_exceeded`), from its
/// detail and the agent's progress; `None` for other events or a detail without a limit.
pub fn recommended_action(event: &Value, ctx: &Context) -> Option<Recommendation> {
    let kind = text(event, "type")?;
    if !matches!(kind, "budget_warning" | "budget_exceeded") {
        return None;
    }
    let detail = event.get("detail")?;
    let limit = num(detail, "limit_usd")?;
    let spent = num(detail, "spent_usd").or_else(|| num(detail, "committed_usd"))?;
    let projected = ctx
        .progress
        .as_ref()
        .and_then(|(done, total, _)| recommend::projection(spent, *done, *total));
    Some(recommend::recommend(limit, projected))
}

/// The subject and plain-text body of the alert for `event` (as the WebSocket streams it).
pub fn compose(event: &Value, ctx: &Context) -> (String, String) {
    let kind = text(event, "type").unwrap_or("event");
    let agent = text(event, "agent_id").unwrap_or("?");
    let detail = event.get("detail").cloned().unwrap_or(Value::Null);
    let when = event
        .get("ts_ms")
        .and_then(Value::as_i64)
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "unknown".to_owned());
    let mut lines = vec![match &ctx.name {
        Some(name) => format!("Agent: {agent} ({name})"),
        None => format!("Agent: {agent}"),
    }];
    lines.push(format!(
        "Event: {kind} ({} severity) at {when}",
        text(event, "severity").unwrap_or("unknown")
    ));
    let spent = num(&detail, "spent_usd").or_else(|| num(&detail, "committed_usd"));
    let limit = num(&detail, "limit_usd");
    let subject = match kind {
        "budget_warning" | "budget_exceeded" => {
            let spent = spent.unwrap_or(0.0);
            let limit = limit.unwrap_or(0.0);
            let percent = num(&detail, "percent_used").unwrap_or(if limit > 0.0 {
                spent * 100.0 / limit
            } else {
                100.0
            });
            let threshold = num(&detail, "threshold").unwrap_or(0.9);
            if kind == "budget_warning" {
                lines.push(format!(
                    "What happened: the agent's spend crossed {:.0}% of its budget.",
                    threshold * 100.0
                ));
            } else {
                lines.push(format!(
                    "What happened: a call was refused: it could cost up to ${:.4} and would pass the limit.",
                    num(&detail, "estimate_usd").unwrap_or(0.0)
                ));
            }
            lines.push(format!(
                "Spend: ${spent:.2} / ${limit:.2} ({percent:.1}% used)"
            ));
            if let Some((done, total, unit)) = &ctx.progress {
                let unit = unit.as_deref().unwrap_or("units");
                if let Some(p) = total.and_then(|t| recommend::projection(spent, *done, Some(t))) {
                    lines.push(format!(
                        "Projection: ${p:.2} total ({done} of {} {unit} done, ${:.4} per {})",
                        total.unwrap_or(0),
                        spent / *done as f64,
                        unit.trim_end_matches('s')
                    ));
                } else {
                    lines.push(format!("Progress: {done} {unit} done"));
                }
            }
            if let Some(r) = recommended_action(event, ctx) {
                lines.push(format!("Recommended action: {r}"));
            }
            if kind == "budget_warning" {
                format!("[ironhost] {agent}: budget {percent:.0}% used (${spent:.2} / ${limit:.2})")
            } else {
                format!(
                    "[ironhost] {agent}: budget exceeded (${spent:.2} / ${limit:.2}), a call was refused"
                )
            }
        }
        "circuit_opened" => {
            let service = text(&detail, "service").unwrap_or("a service");
            lines.push(format!(
                "What happened: the circuit for {service} opened after {} failures; calls to it get the fallback until it recovers.",
                detail.get("failures").and_then(Value::as_u64).unwrap_or(0)
            ));
            format!("[ironhost] {agent}: circuit opened for {service}")
        }
        "policy_failure" => {
            let policy = text(event, "policy").unwrap_or("a policy");
            let failure = text(event, "failure").unwrap_or("failure");
            lines.push(format!(
                "What happened: policy {policy} failed in {} ({failure}): {}",
                text(event, "hook").unwrap_or("a hook"),
                text(event, "message").unwrap_or("")
            ));
            format!("[ironhost] {agent}: policy {policy} failed ({failure})")
        }
        other => {
            lines.push(format!("What happened: {other}"));
            format!("[ironhost] {agent}: {other}")
        }
    };
    lines.push(String::new());
    lines.push("The event:".to_owned());
    lines.push(serde_json::to_string_pretty(event).unwrap_or_default());
    (subject, lines.join("\n") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(to: &[&str], smtp: &str) -> EmailConfig {
        EmailConfig {
            to: to.iter().map(|s| s.to_string()).collect(),
            from: None,
            smtp: smtp.to_owned(),
            username: None,
            password_secret: None,
            password_env: None,
            events: None,
            timeout_ms: None,
            ca_file: None,
            password_from_env: None,
            ca_certificates: None,
        }
    }

    #[test]
    fn an_untrusted_certificate_and_a_missing_starttls_say_what_to_do() {
        let e =
            explain("Connection error: Connection error: invalid peer certificate: UnknownIssuer");
        assert!(
            e.starts_with("connection error: invalid peer certificate"),
            "{e}"
        );
        assert!(e.contains("`ca-file`"), "{e}");
        let e = explain("internal client error: STARTTLS is not supported on this server");
        assert!(e.contains("logs in only over TLS"), "{e}");
        assert_eq!(explain("timed out"), "timed out");
    }

    #[test]
    fn servers_are_smtp_or_smtps_with_default_ports() {
        assert_eq!(
            parse_server("smtp://mail.example.com").expect("plain"),
            Server {
                host: "mail.example.com".into(),
                port: 25,
                implicit_tls: false
            }
        );
        assert_eq!(
            parse_server("smtps://mail.example.com").expect("tls").port,
            465
        );
        assert_eq!(
            parse_server("smtp://127.0.0.1:2525").expect("port").port,
            2525
        );
        assert!(parse_server("http://mail").unwrap_err().contains("scheme"));
        assert!(
            parse_server("smtp://u:p@mail")
                .unwrap_err()
                .contains("secrets store")
        );
        assert!(
            parse_server("smtp://mail/x")
                .unwrap_err()
                .contains("no path")
        );
        assert!(parse_server("mail.example.com").is_err());
    }

    #[test]
    fn bad_email_settings_name_the_field() {
        assert_eq!(email(&[], "smtp://m").check().unwrap_err().0, "to");
        let (field, reason) = email(&["ops at company"], "smtp://m").check().unwrap_err();
        assert_eq!(field, "to");
        assert!(
            reason.contains("`ops at company` is not an email address"),
            "{reason}"
        );
        assert_eq!(
            email(&["ops@company.com"], "ftp://m")
                .check()
                .unwrap_err()
                .0,
            "smtp"
        );
        let mut c = email(&["ops@company.com"], "smtp://m");
        c.username = Some("ops".into());
        assert_eq!(c.check().unwrap_err().0, "username");
        c.password_secret = Some("SMTP_PASSWORD".into());
        c.check().expect("user and secret");
        c.password_env = Some("SMTP_PASSWORD".into());
        assert_eq!(c.check().unwrap_err().0, "password-secret");
        c.password_env = None;
        c.password_secret = Some("bad name".into());
        assert_eq!(c.check().unwrap_err().0, "password-secret");
        let mut c = email(&["ops@company.com"], "smtp://m");
        c.from = Some("not an address".into());
        assert_eq!(c.check().unwrap_err().0, "from");
        c.from = Some("Ironhost <alerts@company.com>".into());
        c.check().expect("named sender");
        c.timeout_ms = Some(0);
        assert_eq!(c.check().unwrap_err().0, "timeout-ms");
    }

    #[test]
    fn the_channel_is_the_sorted_recipients() {
        assert_eq!(
            email(&["b@x.io", "A@x.io"], "smtp://m").channel(),
            email(&["a@x.io", "b@x.io"], "smtps://other").channel()
        );
        assert!(default_from().parse::<Address>().is_ok());
    }

    #[test]
    fn a_budget_warning_email_says_spend_projection_and_action() {
        let event = serde_json::json!({
            "seq": 7, "ts_ms": 1_700_000_000_000_i64, "agent_id": "lg-7a3f9c2d",
            "severity": "medium", "type": "budget_warning", "policy": "budget",
            "detail": {"spent_usd": 45.0, "limit_usd": 50.0, "percent_used": 90.0, "threshold": 0.9}
        });
        let (subject, body) = compose(&event, &Context::default());
        assert_eq!(
            subject,
            "[ironhost] lg-7a3f9c2d: budget 90% used ($45.00 / $50.00)"
        );
        assert!(
            body.contains("Spend: $45.00 / $50.00 (90.0% used)"),
            "{body}"
        );
        assert!(
            body.contains("Recommended action: Approve $25 increase"),
            "{body}"
        );
        assert!(!body.contains("Projection"), "{body}");
        let ctx = Context {
            name: Some("lead_gen".into()),
            progress: Some((85, Some(100), Some("leads".into()))),
        };
        let (_, body) = compose(&event, &ctx);
        assert!(
            body.starts_with("Agent: lg-7a3f9c2d (lead_gen)\n"),
            "{body}"
        );
        // $45 for 85 of 100 leads: $52.94 in all, $2.94 short → $5.
        assert!(
            body.contains("Projection: $52.94 total (85 of 100 leads done"),
            "{body}"
        );
        assert!(
            body.contains("Recommended action: Approve $5 increase"),
            "{body}"
        );
        let ctx = Context {
            name: None,
            progress: Some((95, Some(100), None)),
        };
        let (_, body) = compose(&event, &ctx);
        assert!(
            body.contains("Recommended action: No increase needed: projected $47.37 of $50.00"),
            "{body}"
        );
    }

    #[test]
    fn a_circuit_email_names_the_service() {
        let event = serde_json::json!({
            "seq": 3, "ts_ms": 1_700_000_000_000_i64, "agent_id": "lg-1", "severity": "medium",
            "type": "circuit_opened", "policy": "circuit-breaker",
            "detail": {"service": "linkedin", "failures": 5, "blocked": 0}
        });
        let (subject, body) = compose(&event, &Context::default());
        assert_eq!(subject, "[ironhost] lg-1: circuit opened for linkedin");
        assert!(body.contains("after 5 failures"), "{body}");
        assert!(recommended_action(&event, &Context::default()).is_none());
    }
}
