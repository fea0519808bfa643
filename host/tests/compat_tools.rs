//! Framework tools governed unchanged: the `tests/compat/agents/tools_*.py` scripts use
//! LangChain / LangGraph, openai-agents and pydantic-ai tools with no ironhost import, under
//! `ironhost start` on the simulator (reply rules make the model call each tool), from
//! `.venv-compat`. Each tool call must reach the host's chain under the framework's tool name:
//! recorded with its outcome, its result redacted by `pii-redact`, a failing tool opening the
//! default bundle's circuit breaker (5 failures), after which the breaker answers (the last
//! good result for the same arguments, else a refusal) without the tool function running, and
//! the refusal reaches the framework as a tool error.

use std::fmt::Write as _;

use serde_json::Value;

mod common;
#[path = "common/compat.rs"]
mod compat;

/// The calls each script asks the model for: `(tool, argument, value)`; the prompt is
/// `"<prefix> <tool> <value>"`.
const CALLS: &[(&str, &str, &str)] = &[
    ("lookup_contact", "name", "Acme"),
    ("flaky_search", "query", "acme"),
    ("flaky_search", "query", "q1"),
    ("flaky_search", "query", "q2"),
    ("flaky_search", "query", "q3"),
    ("flaky_search", "query", "q4"),
    ("flaky_search", "query", "q5"),
    ("flaky_search", "query", "q6"),
    ("async_lookup", "name", "Gamma"),
];

/// The default bundle, on the simulator, with a reply rule per call: the model answers the
/// prompt with a call of the tool (and, after the tool's result, with text).
fn config(prefix: &str) -> String {
    let mut c = String::from("[llm]\nmode = \"simulator\"\n");
    for (tool, arg, value) in CALLS {
        write!(
            c,
            "\n[[simulator.replies]]\nwhen = \"{prefix} {tool} {value}\"\ntool = \"{tool}\"\n\
             arguments = {{ {arg} = \"{value}\" }}\n"
        )
        .expect("write to a string");
    }
    c
}

fn case<'a>(r: &'a compat::Run, name: &str) -> &'a Value {
    r.cases
        .iter()
        .find(|c| c["case"] == name)
        .unwrap_or_else(|| panic!("no case {name}: {:?}\nstderr:\n{}", r.cases, r.stderr))
}

/// How many times the script's tool function `tool` had run when `name` was printed.
fn ran(r: &compat::Run, name: &str, tool: &str) -> u64 {
    case(r, name)["calls"][tool]
        .as_u64()
        .unwrap_or_else(|| panic!("{name}: no count for {tool}"))
}

/// The outcomes the host recorded for `tool`, in order, with the denials' codes.
fn outcomes(r: &compat::Run, tool: &str) -> Vec<String> {
    r.tools
        .iter()
        .filter(|t| t["tool"] == tool)
        .map(|t| {
            assert!(t["agent"].is_string() && t["latency_ms"].is_number(), "{t}");
            assert!(t["verdicts"].is_array(), "{t}");
            match t["outcome"].as_str().expect("an outcome") {
                "denied" => format!("denied:{}", t["code"].as_str().expect("a code")),
                other => other.to_owned(),
            }
        })
        .collect()
}

/// What every script shows (its cases named `<prefix>_...`): the lookup's answer redacted on
/// its way back to the framework, the search's circuit opened by five failures and then
/// answering for it, the async tool run (case `async_case`).
fn check_common(r: &compat::Run, prefix: &str, async_case: &str) {
    let lookup = case(r, &format!("{prefix}_lookup"));
    let text = lookup["text"].as_str().expect("text");
    assert_eq!(text, "Acme is owned by [EMAIL_REDACTED]", "{lookup}");
    assert_eq!(ran(r, &format!("{prefix}_lookup"), "lookup_contact"), 1);
    assert!(!r.stdout.contains("jane.doe@example.com"), "{}", r.stdout);
    let first = r
        .tools
        .iter()
        .find(|t| t["tool"] == "lookup_contact")
        .expect("the lookup is recorded");
    assert!(
        r.findings
            .contains(first["call_id"].as_str().expect("a call id")),
        "no PII finding on the lookup's result: {first}"
    );

    assert_eq!(
        case(r, &format!("{prefix}_search_ok"))["text"],
        "acme: 120 employees"
    );
    assert_eq!(
        ran(r, &format!("{prefix}_search_failed_5"), "flaky_search"),
        6
    );
    // The circuit is open: the same search is answered with its last good result, another is
    // refused, and the search function does not run again.
    assert_eq!(
        case(r, &format!("{prefix}_search_fallback"))["text"],
        "acme: 120 employees"
    );
    assert_eq!(
        ran(r, &format!("{prefix}_search_fallback"), "flaky_search"),
        6
    );
    assert_eq!(
        ran(r, &format!("{prefix}_search_refused"), "flaky_search"),
        6
    );
    assert!(
        r.log
            .iter()
            .any(|l| l["message"] == "circuit opened for tool:flaky_search"),
        "{}",
        r.stderr
    );

    let search = outcomes(r, "flaky_search");
    assert_eq!(
        search[..8],
        [
            "ok",
            "error",
            "error",
            "error",
            "error",
            "error",
            "fallback",
            "denied:circuit_open"
        ],
        "{search:?}"
    );
    assert_eq!(outcomes(r, "async_lookup"), ["ok"]);
    assert_eq!(case(r, async_case)["text"], "Gamma: account 42");
    assert_eq!(ran(r, async_case, "async_lookup"), 1);
}

#[test]
fn langchain_tools_and_langgraph_react_agent() {
    let r = compat::run("tools_langchain.py", &config("lg"));
    assert_eq!(r.cases.len(), 12, "{:?}\nstderr:\n{}", r.cases, r.stderr);
    // Through the ReAct agent's model loop; the async tool through `ainvoke`.
    check_common(&r, "react", "ainvoke");
    // The agent's ToolNode (handle_tool_errors=True) turned the failures and the refusal into
    // error messages for the model; the graph ran on.
    for i in 1..=5 {
        let c = case(&r, &format!("react_search_failed_{i}"));
        assert_eq!(c["status"], "error", "{c}");
        assert!(
            c["text"]
                .as_str()
                .is_some_and(|t| t.contains("ConnectionError"))
        );
    }
    let refused = case(&r, "react_search_refused");
    assert_eq!(refused["status"], "error", "{refused}");
    let text = refused["text"].as_str().expect("text");
    assert!(
        text.contains("CircuitOpen(") && text.contains("(circuit_open)"),
        "{refused}"
    );
    // Called directly, a refused tool raises LangChain's ToolException.
    let direct = case(&r, "invoke_refused");
    assert_eq!(direct["tool_exception"], true, "{direct}");
    assert!(
        direct["text"]
            .as_str()
            .is_some_and(|t| t.contains("circuit_open"))
    );
    assert_eq!(ran(&r, "invoke_refused", "flaky_search"), 6);
    assert_eq!(
        outcomes(&r, "flaky_search")[8..],
        ["denied:circuit_open"],
        "the direct call is refused too"
    );
    assert_eq!(
        case(&r, "invoke")["text"],
        "Beta is owned by [EMAIL_REDACTED]"
    );
    assert_eq!(outcomes(&r, "lookup_contact"), ["ok", "ok"]);
}

#[test]
fn openai_agents_function_tools_in_the_runner() {
    let r = compat::run("tools_openai_agents.py", &config("oa"));
    assert_eq!(r.cases.len(), 10, "{:?}\nstderr:\n{}", r.cases, r.stderr);
    check_common(&r, "run", "run_async");
    assert_eq!(outcomes(&r, "lookup_contact"), ["ok"]);
    // The tool's failure_error_function told the model what failed, the refusal included; the
    // runs went on to the model's answer.
    for i in 1..=5 {
        let c = case(&r, &format!("run_search_failed_{i}"));
        assert_eq!(
            c["text"], "search failed: search backend unreachable",
            "{c}"
        );
        assert!(c["final"].is_string());
    }
    let refused = case(&r, "run_search_refused");
    let text = refused["text"].as_str().expect("text");
    assert!(
        text.starts_with("search failed: policy `circuit-breaker` denied the call (circuit_open)"),
        "{refused}"
    );
    assert!(refused["final"].is_string(), "{refused}");
}

#[test]
fn pydantic_ai_tools_in_agent_runs() {
    let r = compat::run("tools_pydantic_ai.py", &config("pa"));
    assert_eq!(r.cases.len(), 10, "{:?}\nstderr:\n{}", r.cases, r.stderr);
    check_common(&r, "run", "run_async");
    assert_eq!(outcomes(&r, "lookup_contact"), ["ok"]);
    // A tool's own exception fails the run, as without ironhost (the same exception).
    for i in 1..=5 {
        let c = case(&r, &format!("run_search_failed_{i}"));
        assert_eq!(c["raised"], "ConnectionError", "{c}");
    }
    // A refusal is a failed tool result (ToolFailed) the model sees; the run goes on.
    let refused = case(&r, "run_search_refused");
    assert_eq!(refused["outcome"], "failed", "{refused}");
    assert!(
        refused["text"]
            .as_str()
            .is_some_and(|t| t.contains("(circuit_open)")),
        "{refused}"
    );
}
