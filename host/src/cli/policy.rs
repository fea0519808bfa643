//! `ironhost policy list | check | run`.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use super::CliError;
use crate::model::{
    AgentInfo, CallContext, Capability, Denial, Hook, LlmOutcome, LlmRequest, LlmResponse,
    PolicyInfo, ProviderError, ToolCall, ToolError, ToolOutcome, Usage,
};
use crate::policy::admission::{self, PROBE_AGENT};
use crate::policy::bundle::{Bundle, PolicyEntry};
use crate::policy::chain::{Chain, ChainRun, ChainStream, Outcome};
use crate::policy::engine::{EngineOptions, PolicyEngine};
use crate::policy::host::HostServices;
use crate::policy::inspect::{self, ComponentSummary};
use crate::policy::instance::{CallTarget, LoadedPolicy};

/// `ironhost policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// List the policies of a bundle in chain order, with their metadata.
    List(ListArgs),
    /// Check that a file is a policy component this host can run; show its imports and exports.
    Check(CheckArgs),
    /// Feed JSON inputs through one hook of a component or bundle and print what happens.
    Run(RunArgs),
    /// Create a policy crate that builds with `cargo build --release --target wasm32-wasip2`.
    New(NewArgs),
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The policy's name: lower-case letters, digits, `-` or `_`, starting with a letter.
    pub name: String,
    /// Where to create the crate directory.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The bundle directory (holding bundle.toml), or `default` (the default: the bundle built
    /// into ironhost).
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The component file.
    #[arg(value_name = "FILE.wasm")]
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A single component (granted every capability it imports, fail-closed).
    #[arg(
        value_name = "FILE.wasm",
        required_unless_present = "bundle",
        conflicts_with = "bundle"
    )]
    pub file: Option<PathBuf>,
    /// A bundle directory (or `default`) instead of a single component.
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// The hook: agent-start, llm-request, llm-response, llm-chunk, tool-call, tool-result.
    #[arg(long, value_parser = parse_hook)]
    pub hook: Hook,
    /// JSON Lines input, one value per line (`-` for stdin).
    #[arg(long, value_name = "FILE.jsonl")]
    pub input: PathBuf,
    /// The config of a single component, as a JSON object.
    #[arg(long, value_name = "JSON", requires = "file")]
    pub config: Option<String>,
    /// Agent id the calls are made for.
    #[arg(long, default_value = "local-run")]
    pub agent: String,
    /// Make secret NAME available to the policies, with the value of the environment variable
    /// of the same name (so values stay out of shell history). Repeatable.
    #[arg(long = "secret", value_name = "NAME")]
    pub secrets: Vec<String>,
}

/// Secrets for `policy run`, taken from the runner's environment.
struct EnvSecrets(std::collections::BTreeMap<String, String>);

impl crate::policy::host::SecretResolver for EnvSecrets {
    fn get(&self, _environment: &str, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

fn parse_hook(s: &str) -> Result<Hook, String> {
    Hook::parse(s).ok_or_else(|| {
        let all: Vec<_> = Hook::ALL.iter().map(|h| h.as_str()).collect();
        format!("unknown hook `{s}` (expected one of: {})", all.join(", "))
    })
}

pub fn run(cmd: PolicyCommand) -> Result<u8, CliError> {
    match cmd {
        PolicyCommand::List(a) => list(a),
        PolicyCommand::Check(a) => check(a),
        PolicyCommand::Run(a) => run_inputs(a),
        PolicyCommand::New(a) => {
            let dir = super::scaffold::new_policy(&a.name, &a.dir)?;
            println!(
                "created {}: build it with `cargo build --release --target wasm32-wasip2` in that directory",
                dir.display()
            );
            Ok(0)
        }
    }
}

fn engine() -> Result<PolicyEngine, CliError> {
    engine_with(HostServices::default())
}

fn engine_with(services: HostServices) -> Result<PolicyEngine, CliError> {
    let options = EngineOptions::from_env().map_err(CliError::input)?;
    PolicyEngine::new(options, services).map_err(CliError::failure)
}

/// `--bundle default` (or no `--bundle`) is the built-in default bundle; anything else is a
/// directory holding bundle.toml (use `./default` for a directory of that name).
fn load_bundle(dir: Option<&Path>, engine: &PolicyEngine) -> Result<Chain, CliError> {
    let bundle = match dir {
        None => crate::policy::defaults::default_bundle(),
        Some(d) if d.as_os_str() == crate::policy::defaults::DEFAULT_BUNDLE_NAME => {
            crate::policy::defaults::default_bundle()
        }
        Some(d) => Bundle::load(d),
    }
    .map_err(CliError::input)?;
    admission::admit_bundle(engine, &bundle).map_err(CliError::input)
}

/// One row of `policy list`.
#[derive(Debug, Serialize)]
struct ListRow {
    order: usize,
    name: String,
    version: String,
    wit_version: String,
    description: String,
    hooks: Vec<Hook>,
    capabilities: CapabilityRow,
    failure_mode: &'static str,
    enabled: bool,
    deadline_ms: u64,
    memory_mib: u64,
    verdict_kib: u64,
    component: PathBuf,
    sha256: String,
}

#[derive(Debug, Serialize)]
struct CapabilityRow {
    /// Declared in `describe` or imported by the component.
    requested: BTreeSet<Capability>,
    granted: BTreeSet<Capability>,
}

fn row(order: usize, p: &LoadedPolicy, enabled: bool) -> ListRow {
    let mut requested: BTreeSet<Capability> = p.info.capabilities.iter().copied().collect();
    requested.extend(p.summary.capabilities.iter().copied());
    ListRow {
        order,
        name: p.name.clone(),
        version: p.info.version.clone(),
        wit_version: p.summary.wit_version.clone().unwrap_or_default(),
        description: p.info.description.clone(),
        hooks: p.info.hooks.clone(),
        capabilities: CapabilityRow {
            requested,
            granted: p.entry.capabilities.clone(),
        },
        failure_mode: p.entry.failure_mode.as_str(),
        enabled,
        deadline_ms: p.entry.deadline_ms,
        memory_mib: p.entry.memory_mib,
        verdict_kib: p.entry.verdict_kib,
        component: p.entry.component.clone(),
        sha256: p.sha256.clone(),
    }
}

fn join<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let v: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    if v.is_empty() {
        "-".to_owned()
    } else {
        v.join(",")
    }
}

fn list(args: ListArgs) -> Result<u8, CliError> {
    let engine = engine()?;
    let chain = load_bundle(args.bundle.as_deref(), &engine)?;
    let state = chain.snapshot();
    let rows: Vec<ListRow> = state
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| row(i + 1, &m.policy, m.enabled))
        .collect();
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        serde_json::to_writer_pretty(&mut out, &rows)
            .map_err(std::io::Error::from)
            .and_then(|_| writeln!(out))
    } else {
        print_table(&mut out, &state.bundle, &rows)
    };
    written.map_err(CliError::failure)?;
    Ok(0)
}

fn print_table(out: &mut impl Write, bundle: &str, rows: &[ListRow]) -> std::io::Result<()> {
    writeln!(out, "bundle {bundle}: {} policies", rows.len())?;
    let header = [
        "#",
        "NAME",
        "VERSION",
        "WIT",
        "MODE",
        "HOOKS",
        "REQUESTED",
        "GRANTED",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                format!("{}{}", r.order, if r.enabled { "" } else { " (off)" }),
                r.name.clone(),
                r.version.clone(),
                r.wit_version.clone(),
                r.failure_mode.to_owned(),
                join(&r.hooks),
                join(&r.capabilities.requested),
                join(&r.capabilities.granted),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for c in &cells {
        for (w, cell) in widths.iter_mut().zip(c) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cols: &[&str]| -> std::io::Result<()> {
        let mut s = String::new();
        for (i, (col, w)) in cols.iter().zip(widths).enumerate() {
            if i + 1 == cols.len() {
                s.push_str(col);
            } else {
                s.push_str(&format!("{col:<w$}  "));
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    line(out, &header)?;
    for c in &cells {
        let refs: Vec<&str> = c.iter().map(String::as_str).collect();
        line(out, &refs)?;
    }
    Ok(())
}

/// `policy check` output.
#[derive(Debug, Serialize)]
struct CheckReport {
    file: PathBuf,
    valid: bool,
    #[serde(flatten)]
    summary: ComponentSummary,
    policy: Option<PolicyInfo>,
}

fn check(args: CheckArgs) -> Result<u8, CliError> {
    let result = check_file(&args);
    if let (Err(e), true) = (&result, args.json) {
        // JSON consumers get the verdict on stdout too; the one-line reason still goes to stderr.
        let verdict = serde_json::json!({"file": args.file, "valid": false, "error": e.message});
        println!("{verdict}");
    }
    result
}

fn check_file(args: &CheckArgs) -> Result<u8, CliError> {
    let path = &args.file;
    let bytes = std::fs::read(path)
        .map_err(|e| CliError::input(format!("{}: cannot read: {e}", path.display())))?;
    let engine = engine()?;
    let (component, summary) =
        admission::load_component(&engine, path, &bytes).map_err(CliError::input)?;
    inspect::check_policy_surface(&summary)
        .map_err(|e| CliError::input(format!("{}: {e}", path.display())))?;
    // Grant what it imports, just to ask it who it is.
    let mut entry = PolicyEntry::for_component(path.clone());
    entry.capabilities = summary.capabilities.clone();
    let policy = LoadedPolicy::link(
        &engine,
        &component,
        entry,
        summary.clone(),
        String::new(),
        "check".into(),
    )
    .map_err(|e| CliError::input(format!("{}: cannot link: {e}", path.display())))?;
    let target = CallTarget {
        agent_id: Some(PROBE_AGENT),
        environment: "dev",
        // Asking who it is, like admission: the admission deadline, not the per-call one.
        state_override: None,
        admission: true,
    };
    let info: PolicyInfo = policy
        .call(target, "describe", |h, s| h.call_describe(s))
        .result
        .map_err(|f| CliError::input(format!("{}: {f}", path.display())))?
        .into();
    let report = CheckReport {
        file: path.clone(),
        valid: true,
        summary,
        policy: Some(info),
    };
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        serde_json::to_writer_pretty(&mut out, &report)
            .map_err(std::io::Error::from)
            .and_then(|_| writeln!(out))
    } else {
        print_check(&mut out, &report)
    };
    written.map_err(CliError::failure)?;
    Ok(0)
}

fn print_check(out: &mut impl Write, r: &CheckReport) -> std::io::Result<()> {
    let s = &r.summary;
    write!(out, "{}: valid policy component", r.file.display())?;
    if let Some(p) = &r.policy {
        write!(out, " `{}` {}", p.name, p.version)?;
    }
    writeln!(
        out,
        " (WIT ironhost:policy@{})",
        s.wit_version.as_deref().unwrap_or("?")
    )?;
    if let Some(p) = &r.policy {
        writeln!(out, "  description:  {}", p.description)?;
        writeln!(out, "  hooks:        {}", join(&p.hooks))?;
        writeln!(out, "  declares:     {}", join(&p.capabilities))?;
    }
    writeln!(out, "  capabilities: {}", join(&s.capabilities))?;
    writeln!(
        out,
        "  built with:   {}",
        s.sdk.as_deref().unwrap_or("(no SDK stamp)")
    )?;
    writeln!(out, "  exports:")?;
    for e in &s.exports {
        writeln!(out, "    {e}")?;
    }
    writeln!(out, "  imports:")?;
    for i in &s.imports {
        writeln!(out, "    {i}")?;
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseInput {
    request: LlmRequest,
    response: Option<LlmResponse>,
    error: Option<ProviderError>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AbandonedInput {
    request: LlmRequest,
    reason: Denial,
    #[serde(default)]
    by_policy: Option<String>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolResultInput {
    call: ToolCall,
    /// Present (even as `null`) or absent.
    #[serde(default, deserialize_with = "present")]
    result: Option<serde_json::Value>,
    error: Option<ToolError>,
}

/// Deserialize a field that is present, whatever its value (`null` included), as `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// One line of `policy run` output.
#[derive(Debug, Serialize)]
struct RunLine<'a, T: Serialize> {
    line: usize,
    hook: Hook,
    #[serde(flatten)]
    outcome: &'a Outcome<T>,
    policies: &'a [crate::policy::chain::PolicyReport],
    events: Vec<&'a crate::policy::host::PolicyEvent>,
    latency_ns: u64,
}

fn run_inputs(args: RunArgs) -> Result<u8, CliError> {
    let mut secrets = std::collections::BTreeMap::new();
    for name in &args.secrets {
        let value = std::env::var(name).map_err(|_| {
            CliError::input(format!(
                "--secret {name}: no environment variable `{name}` holds its value"
            ))
        })?;
        secrets.insert(name.clone(), value);
    }
    let services = HostServices {
        secrets: std::sync::Arc::new(EnvSecrets(secrets)),
        ..HostServices::default()
    };
    let engine = engine_with(services)?;
    let chain = match (&args.file, &args.bundle) {
        (Some(file), _) => {
            let bytes = std::fs::read(file)
                .map_err(|e| CliError::input(format!("{}: cannot read: {e}", file.display())))?;
            let mut entry = PolicyEntry::for_component(file.clone());
            if let Some(config) = &args.config {
                let value: serde_json::Value = serde_json::from_str(config)
                    .map_err(|e| CliError::input(format!("--config: not JSON: {e}")))?;
                if !value.is_object() {
                    return Err(CliError::input("--config: must be a JSON object"));
                }
                entry.config = value;
            }
            // The local runner grants whatever the component imports.
            let (_, summary) =
                admission::load_component(&engine, file, &bytes).map_err(CliError::input)?;
            entry.capabilities = summary.capabilities;
            let policy =
                admission::admit_bytes(&engine, &entry, &bytes).map_err(CliError::input)?;
            Chain::new("local", vec![Arc::new(policy)])
        }
        (None, bundle) => load_bundle(bundle.as_deref(), &engine)?,
    };
    let input_name = args.input.display().to_string();
    let reader: Box<dyn BufRead> = if args.input.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(&args.input)
            .map_err(|e| CliError::input(format!("{input_name}: cannot read: {e}")))?;
        Box::new(std::io::BufReader::new(f))
    };
    let mut out = std::io::stdout().lock();
    let mut bad_lines = 0usize;
    let mut stream: Option<ChainStream> = None;
    for (i, raw) in reader.split(b'\n').enumerate() {
        let n = i + 1;
        let raw =
            raw.map_err(|e| CliError::input(format!("{input_name}:{n}: cannot read: {e}")))?;
        // A line that is not UTF-8 is one bad line, not the end of the run.
        let decoded = String::from_utf8(raw).map_err(|e| {
            format!(
                "not UTF-8 (invalid byte at column {})",
                e.utf8_error().valid_up_to() + 1
            )
        });
        if decoded.as_ref().is_ok_and(|l| l.trim().is_empty()) {
            continue;
        }
        let ctx = CallContext {
            agent_id: args.agent.clone(),
            call_id: format!("call-{n}"),
            environment: "dev".to_owned(),
            attempt: 0,
        };
        let result = decoded.and_then(|line| {
            run_line(
                &chain,
                args.hook,
                n,
                line.trim_end_matches('\r'),
                &ctx,
                &args.agent,
                &mut stream,
                &mut out,
            )
        });
        let written = match result {
            Ok(w) => w,
            Err(reason) => {
                bad_lines += 1;
                eprintln!("{input_name}:{n}: {reason}");
                let err = serde_json::json!({"line": n, "hook": args.hook, "error": reason});
                writeln!(out, "{err}")
            }
        };
        written.map_err(CliError::failure)?;
    }
    if stream.is_some() {
        eprintln!(
            "{input_name}: the last stream has no chunk with \"last\": true; held-back text was not flushed"
        );
        bad_lines += 1;
    }
    Ok(if bad_lines > 0 {
        super::EXIT_BAD_INPUT
    } else {
        0
    })
}

fn parse<T: for<'de> Deserialize<'de>>(hook: Hook, line: &str) -> Result<T, String> {
    serde_json::from_str(line).map_err(|e| format!("invalid {hook} input: {e}"))
}

fn emit<T: Serialize>(
    out: &mut impl Write,
    hook: Hook,
    line: usize,
    run: &crate::policy::chain::ChainRun<Outcome<T>>,
) -> std::io::Result<()> {
    let printed = RunLine {
        line,
        hook,
        outcome: &run.outcome,
        policies: &run.policies,
        events: run.events().collect(),
        latency_ns: run.latency_ns,
    };
    serde_json::to_writer(&mut *out, &printed)?;
    writeln!(out)
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
fn run_line(
    chain: &Chain,
    hook: Hook,
    n: usize,
    line: &str,
    ctx: &CallContext,
    agent: &str,
    stream: &mut Option<ChainStream>,
    out: &mut impl Write,
) -> Result<std::io::Result<()>, String> {
    Ok(match hook {
        Hook::AgentStart => {
            let mut info: AgentInfo = parse(hook, line)?;
            if info.agent_id.is_empty() {
                agent.clone_into(&mut info.agent_id);
            }
            let mut run = chain.on_agent_start(&info);
            // Injected variables are usually secrets: show their names, never their values.
            if let Outcome::Continue { value } = &mut run.outcome {
                for (_, v) in &mut value.env {
                    *v = "<set>".to_owned();
                }
            }
            emit(out, hook, n, &run)
        }
        Hook::LlmRequest => emit(out, hook, n, &chain.on_llm_request(ctx, parse(hook, line)?)),
        Hook::LlmResponse => {
            let input: ResponseInput = parse(hook, line)?;
            let outcome = match (input.response, input.error) {
                (Some(r), None) => LlmOutcome::Ok(r),
                (None, Some(e)) => LlmOutcome::Error(e),
                _ => {
                    return Err(format!(
                        "invalid {hook} input: give exactly one of `response` and `error`"
                    ));
                }
            };
            emit(
                out,
                hook,
                n,
                &chain.on_llm_response(ctx, input.request, outcome),
            )
        }
        Hook::LlmChunk => {
            let chunk: crate::model::LlmChunk = parse(hook, line)?;
            let last = chunk.last;
            let session = stream.get_or_insert_with(|| chain.stream(ctx));
            let run = session.push(chunk);
            if last || !matches!(run.outcome, Outcome::Continue { .. }) {
                *stream = None;
            }
            emit(out, hook, n, &run)
        }
        Hook::LlmAbandoned => {
            let input: AbandonedInput = parse(hook, line)?;
            let run = chain.on_llm_abandoned(
                ctx,
                input.request,
                input.reason,
                input.by_policy,
                input.usage,
            );
            let run = ChainRun {
                outcome: Outcome::Continue { value: () },
                policies: run.policies,
                latency_ns: run.latency_ns,
                generation: run.generation,
            };
            emit(out, hook, n, &run)
        }
        Hook::ToolCall => emit(out, hook, n, &chain.on_tool_call(ctx, parse(hook, line)?)),
        Hook::ToolResult => {
            let input: ToolResultInput = parse(hook, line)?;
            let outcome = match (input.result, input.error) {
                (Some(v), None) => ToolOutcome::Ok(v.to_string()),
                (None, Some(e)) => ToolOutcome::Error(e),
                _ => {
                    return Err(format!(
                        "invalid {hook} input: give exactly one of `result` and `error`"
                    ));
                }
            };
            emit(
                out,
                hook,
                n,
                &chain.on_tool_result(ctx, input.call, outcome),
            )
        }
    })
}
