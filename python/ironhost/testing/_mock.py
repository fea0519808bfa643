"""``MockRuntime``: the ``AgentRuntime`` API in pure Python, for unit tests of agent code.

No native module, no store, no network: the official SDKs' calls are answered in the providers'
wire formats by rules you set, with deterministic costs, a budget, PII handling (regular
expressions standing in for ``pii-redact``) and a tool circuit breaker. Everything it saw is kept
in ``calls``, ``findings`` and ``denials`` for assertions.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .._sdk import SAFETY_MODES, AgentRuntime
from .._target import HttpReply, ToolBegin, ToolEnd
from ..errors import BudgetExceeded, CircuitOpen, PolicyDenied
from . import _generate

#: US dollars per million tokens (input, output); ``prices=`` adds or overrides models.
PRICES: Dict[str, Tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "o1": (15.00, 60.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "echo": (0.0, 0.0),
}
UNKNOWN_PRICE = (1.00, 2.00)
#: Output tokens a call reserves against the budget when it sets no ``max_tokens``: the real
#: budget policy's ``default-max-output-tokens``, so budget stops come where they would.
DEFAULT_MAX_OUTPUT_TOKENS = 4096

_PATTERNS = [
    ("email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")),
    ("ssn", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    ("credit_card", re.compile(r"\b\d(?:[ -]?\d){12,18}\b")),
    ("phone", re.compile(r"(?:\(\d{3}\)\s?|\b\d{3}[.-])\d{3}[.-]\d{4}\b")),
]


def _luhn(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def find_pii(text: str) -> List[Tuple[str, str]]:
    """``(kind, value)`` for each piece of personal data in ``text``."""
    found: List[Tuple[str, str]] = []
    taken: List[Tuple[int, int]] = []
    for kind, pattern in _PATTERNS:
        for m in pattern.finditer(text):
            if any(m.start() < end and start < m.end() for start, end in taken):
                continue
            if kind == "credit_card" and not _luhn(m.group()):
                continue
            taken.append((m.start(), m.end()))
            found.append((kind, m.group()))
    return found


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


@dataclass
class MockCall:
    """One LLM call the mock answered."""

    agent_id: str
    provider: str
    model: str
    prompt: str
    reply: str
    stream: bool
    input_tokens: int
    output_tokens: int
    cost_usd: float


@dataclass
class _Agent:
    """A mock agent: the native ``Agent`` interface in Python (a ``_target.Target``; it has no
    ``upstreams`` of its own, so the process-wide table routes its calls)."""

    runtime: "MockRuntime"
    agent_id: str
    name: str
    budget_usd: Optional[float]
    bundle: str = "mock"
    dashboard: Optional[str] = None
    start_env: List[Tuple[str, str]] = field(default_factory=list)
    closed: bool = False
    stopping: bool = False
    state: str = "starting"
    run: int = 0
    figures: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.figures = {
            "llm_calls": 0, "llm_errors": 0, "denied": 0, "fallbacks": 0,
            "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "cost_by_model": {},
            "tool_calls": 0, "tool_errors": 0, "tool_fallbacks": 0,
            "pii_findings": 0, "pii_by_kind": {},
            "latency_p50_ms": None, "latency_p95_ms": None, "latency_p99_ms": None,
            "units": None,
        }
        self.started = time.monotonic()

    def _live(self) -> None:
        if self.closed:
            raise RuntimeError(f"agent {self.agent_id} is closed")
        if self.stopping:
            raise KeyboardInterrupt(f"agent {self.agent_id} was stopped")

    # -- the call interface ------------------------------------------------------------------

    def handle_http(
        self, upstream: str, method: str, path: str, headers: Any, body: bytes
    ) -> HttpReply:
        self._live()
        return self.runtime._answer(self, path, body)

    def tool_begin(self, name: str, arguments: str) -> ToolBegin:
        self._live()
        return self.runtime._tool_begin(self, name, arguments)

    def tool_end(self, ticket: Any, ok: bool, payload: str, kind: str) -> ToolEnd:
        return self.runtime._tool_end(self, ticket, ok, payload, kind)

    def current(self) -> Dict[str, Any]:
        # A copy, as the native agent's: what the caller keeps does not change under it.
        with self.runtime._lock:
            metrics = copy.deepcopy(self.figures)
        return {
            "agent_id": self.agent_id, "name": self.name, "environment": "dev",
            "state": self.state, "run": self.run, "budget_usd": self.budget_usd,
            "metrics": metrics,
        }

    def progress(self, done: int, total: Optional[int] = None, unit: Optional[str] = None) -> None:
        self._live()
        if total is not None and done > total:
            raise ValueError(f"progress: done ({done}) is more than total ({total})")
        self.runtime.progress_reports.append((self.agent_id, done, total, unit))

    def unit_done(
        self,
        ok: bool,
        seconds: Optional[float] = None,
        fallback: Optional[str] = None,
        unit: Optional[str] = None,
    ) -> None:
        self._live()
        with self.runtime._lock:
            self.runtime.units.append((self.agent_id, ok, seconds, fallback, unit))
            self.figures["units"] = self._units()

    def _units(self) -> Dict[str, Any]:
        """The host's ``units`` figures over this agent's ``unit_done`` reports."""
        mine = [u for u in self.runtime.units if u[0] == self.agent_id]
        done = len(mine)
        ok = sum(1 for u in mine if u[1])
        fallback = sum(1 for u in mine if u[1] and u[3] is not None)
        secs = sorted(u[2] for u in mine if u[2] is not None)

        def rank(p: float) -> Optional[float]:
            # Nearest rank, as the host's figures.
            return secs[min(max(math.ceil(p / 100 * len(secs)), 1), len(secs)) - 1] if secs else None

        names = [u[4] for u in mine if u[4] is not None]
        run_s = time.monotonic() - self.started
        return {
            "unit": names[-1] if names else None, "done": done, "ok": ok, "failed": done - ok,
            "fallback": fallback, "success_rate": ok / done, "fallback_rate": fallback / done,
            "per_hour": done * 3600 / run_s if run_s >= 1 else None,
            "seconds": {"p50": rank(50), "p95": rank(95), "p99": rank(99)},
        }

    def run_started(self) -> int:
        self._live()
        self.run += 1
        self.state = "running"
        return self.run

    def run_finished(self, exit_code: int, run: Optional[int] = None) -> str:
        if self.stopping or exit_code == 130:
            self.state = "stopped"
        else:
            self.state = "completed" if exit_code == 0 else "failed"
        return self.state

    def stop(self) -> None:
        self.stopping = True

    def close(self) -> None:
        self.closed = True


class _Stream:
    """The streamed body, in a few pieces, as the native stream hands it over."""

    def __init__(self, body: bytes) -> None:
        self._pieces = [body[i : i + 256] for i in range(0, len(body), 256)]

    def next(self) -> Optional[bytes]:
        return self._pieces.pop(0) if self._pieces else None

    def close(self) -> None:
        self._pieces = []


class _MockOptions:
    def __init__(self, runtime: "MockRuntime") -> None:
        self._runtime = runtime

    def open(self, name: Optional[str], script: str) -> _Agent:
        rt = self._runtime
        if name is None:
            stem = script.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            name = stem or "agent"
        agent = _Agent(rt, f"mock-{next(rt._ids):04d}", name, rt.budget)
        from .. import _intercept, _runner

        _runner.placeholder_keys()
        _intercept.install()
        return agent


class MockRuntime(AgentRuntime):
    """``AgentRuntime`` without the native host: deterministic answers and policies in Python.

    Args:
        budget: US dollars per agent (default 100.0); a call whose estimate would pass it raises
            ``BudgetExceeded``.
        pii_detection: find emails, phone numbers, SSNs and card numbers in prompts and answers.
        circuit_breaker: after ``failure_threshold`` failures in a row a tool raises
            ``CircuitOpen`` until ``reset_circuit``.
        safety_mode: ``redact`` (replace with ``[EMAIL_REDACTED]`` ...), ``block`` (raise
            ``PolicyDenied``) or ``warn`` (record only).
        replies: ``{substring: answer}``: a prompt whose last user message contains the
            substring gets the answer. The ``echo`` model answers with the prompt as sent; any
            other prompt gets ``default_reply``.
        prices: ``{model: (input, output)}`` in US dollars per million tokens.
    """

    def __init__(
        self,
        budget: Optional[float] = 100.0,
        pii_detection: bool = True,
        circuit_breaker: bool = True,
        bundle: Any = None,
        safety_mode: Optional[str] = None,
        *,
        name: Optional[str] = None,
        replies: Optional[Dict[str, str]] = None,
        default_reply: str = "Mock answer.",
        prices: Optional[Dict[str, Tuple[float, float]]] = None,
        failure_threshold: int = 5,
        stop_timeout: float = 5.0,
    ) -> None:
        super().__init__(
            budget, pii_detection, circuit_breaker, bundle, safety_mode,
            name=name, stop_timeout=stop_timeout,
        )
        if safety_mode is not None and safety_mode not in SAFETY_MODES:
            raise ValueError(f"MockRuntime: safety_mode {safety_mode!r} is not one of {SAFETY_MODES}")
        self.budget = None if budget is None else float(budget)
        self.pii_detection = pii_detection
        self.circuit_breaker = circuit_breaker
        self.safety_mode = safety_mode or "redact"
        self.replies: Dict[str, str] = dict(replies or {})
        self.default_reply = default_reply
        self.prices = {**PRICES, **(prices or {})}
        self.failure_threshold = failure_threshold
        self.calls: List[MockCall] = []
        self.findings: List[Tuple[str, str, str]] = []
        self.denials: List[PolicyDenied] = []
        self.tool_log: List[Tuple[str, str, bool]] = []
        self.progress_reports: List[Tuple[str, int, Optional[int], Optional[str]]] = []
        #: ``(agent_id, ok, seconds, fallback, unit)`` for each ``ironhost.unit_done``.
        self.units: List[Tuple[str, bool, Optional[float], Optional[str], Optional[str]]] = []
        self._failures: Dict[str, int] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._options = _MockOptions(self)  # type: ignore[assignment]

    def _open_main(self) -> None:
        if self._state != "new":
            raise RuntimeError("a MockRuntime can be entered once; make a new one")
        self._state = "open"
        self._main = self._options.open(self._name or "runtime", "<mock>")

    def reply(self, when: str, text: str) -> None:
        """Answer prompts whose last user message contains ``when`` with ``text``."""
        self.replies[when] = text

    def reset_circuit(self, tool: str) -> None:
        """Close a tool's circuit (the real breaker does this after its cooldown)."""
        self._failures.pop(tool, None)

    # -- policies ------------------------------------------------------------------------------

    def _deny(self, agent: _Agent, exc: PolicyDenied) -> PolicyDenied:
        agent.figures["denied"] += 1
        self.denials.append(exc)
        return exc

    def _scan(self, agent: _Agent, text: str, location: str) -> str:
        if not self.pii_detection:
            return text
        found = find_pii(text)
        for kind, value in found:
            self.findings.append((kind, value, location))
            agent.figures["pii_findings"] += 1
            by_kind = agent.figures["pii_by_kind"]
            by_kind[kind] = by_kind.get(kind, 0) + 1
        if found and self.safety_mode == "block":
            kinds = ", ".join(sorted({k for k, _ in found}))
            raise self._deny(
                agent,
                PolicyDenied(f"personal data ({kinds}) in the {location}", code="pii_detected", policy="pii-redact"),
            )
        if self.safety_mode == "redact":
            for kind, value in found:
                text = text.replace(value, _generate.MARKERS[kind])
        return text

    def _price(self, model: str) -> Tuple[float, float]:
        return self.prices.get(model, UNKNOWN_PRICE)

    # -- answers -------------------------------------------------------------------------------

    def _answer(self, agent: _Agent, path: str, body: bytes) -> HttpReply:
        if path.endswith("/chat/completions"):
            provider = "openai"
        elif path.endswith("/messages"):
            provider = "anthropic"
        else:
            error = {"error": {"message": f"the mock serves no {path}", "type": "not_found"}}
            return HttpReply(404, [("content-type", "application/json")], body=json.dumps(error).encode())
        request = json.loads(body or b"{}")
        model = str(request.get("model", ""))
        stream = bool(request.get("stream"))
        texts = []
        if provider == "anthropic" and isinstance(request.get("system"), str):
            texts.append(request["system"])
        last_user = -1
        for message in request.get("messages", []):
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            texts.append(str(content or ""))
            if message.get("role") == "user":
                last_user = len(texts) - 1
        with self._lock:
            sent = [self._scan(agent, t, "prompt") for t in texts]
            prompt = "\n".join(sent)
            question = sent[last_user] if last_user >= 0 else ""
            input_tokens = _tokens(prompt)
            max_out = int(request.get("max_tokens") or request.get("max_completion_tokens") or DEFAULT_MAX_OUTPUT_TOKENS)
            pin, pout = self._price(model)
            estimate = (input_tokens * pin + max_out * pout) / 1e6
            spent = agent.figures["cost_usd"]
            if agent.budget_usd is not None and spent + estimate > agent.budget_usd:
                raise self._deny(
                    agent,
                    BudgetExceeded(
                        f"budget of ${agent.budget_usd:.2f} reached: ${spent:.4f} spent, this "
                        f"call could cost up to ${estimate:.4f}",
                        code="budget_exceeded",
                        policy="budget",
                    ),
                )
            reply = next((text for when, text in self.replies.items() if when in question), None)
            if reply is None:
                reply = question if model == "echo" else self.default_reply
            reply = self._scan(agent, reply, "response")
            output_tokens = _tokens(reply)
            cost = (input_tokens * pin + output_tokens * pout) / 1e6
            f = agent.figures
            f["llm_calls"] += 1
            f["input_tokens"] += input_tokens
            f["output_tokens"] += output_tokens
            f["cost_usd"] += cost
            f["cost_by_model"][model] = f["cost_by_model"].get(model, 0.0) + cost
            self.calls.append(
                MockCall(agent.agent_id, provider, model, prompt, reply, stream, input_tokens, output_tokens, cost)
            )
        if stream:
            make = _generate.openai_stream_events if provider == "openai" else _generate.anthropic_stream_events
            return HttpReply(
                200, [("content-type", "text/event-stream")], stream=_Stream(make(reply, model, input_tokens))
            )
        if provider == "openai":
            payload = _generate.openai_chat_response(reply, model, input_tokens, output_tokens)
        else:
            payload = _generate.anthropic_message_response(reply, model, input_tokens, output_tokens)
        return HttpReply(200, [("content-type", "application/json")], body=json.dumps(payload).encode())

    # -- tools ---------------------------------------------------------------------------------

    def _tool_begin(self, agent: _Agent, name: str, arguments: str) -> ToolBegin:
        with self._lock:
            agent.figures["tool_calls"] += 1
            if self.circuit_breaker and self._failures.get(name, 0) >= self.failure_threshold:
                raise self._deny(
                    agent,
                    CircuitOpen(
                        f"tool `{name}` failed {self._failures[name]} times in a row",
                        code="circuit_open",
                        policy="circuit-breaker",
                    ),
                )
        return ToolBegin(ticket=(name,), arguments=arguments)

    def _tool_end(self, agent: _Agent, ticket: Any, ok: bool, payload: str, kind: str) -> ToolEnd:
        (name,) = ticket
        with self._lock:
            self.tool_log.append((agent.agent_id, name, ok))
            if ok:
                self._failures[name] = 0
            else:
                agent.figures["tool_errors"] += 1
                self._failures[name] = self._failures.get(name, 0) + 1
        return ToolEnd(False, ok)

