"""LangChain integration: budget tracking and PII protection for chains.

- ``IronhostChain(runnable, budget=...)`` wraps any runnable (an LCEL chain, an agent loop, a
  chat model): each ``invoke``/``ainvoke``/``stream``/``astream``/``batch`` runs as a run of an
  ironhost agent, so every LLM call inside goes through the policy chain (budget, PII redaction
  of prompts and answers, streamed answers redacted in flight). The chain's input and output are
  shown to the policies too, as the results of two tool steps (``langchain:input`` and
  ``langchain:output``): ``pii-redact`` redacts their text (or refuses, in ``block`` mode).
- ``IronhostCallbackHandler`` records each top-level run's cost, LLM calls and PII findings
  from the agent's live figures, and stops a run before its next LLM call once the budget is
  spent. ``IronhostChain`` attaches one; add it yourself to code you run under
  ``@protect_agent``, ``AgentRuntime`` or ``ironhost start``.

Needs ``langchain-core`` (``pip install langchain-core``).
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional, Union

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config

from . import _context
from ._target import Target
from ._tools import _decoded
from ._agent import figures
from ._sdk import ProtectedAgent, _Options
from .errors import BudgetExceeded, PolicyDenied

__all__ = ["IronhostCallbackHandler", "IronhostChain"]


def _figures() -> Optional[Dict[str, Any]]:
    agent = _context.target()
    return None if agent is None else figures(agent)


class IronhostCallbackHandler(BaseCallbackHandler):
    """Per-run figures and a budget stop, from the ironhost agent the run belongs to.

    ``runs`` holds, for each finished top-level run, a dict with ``run_id``, ``name``,
    ``status`` (``ok`` or the error's type), ``cost_usd``, ``llm_calls``, ``tool_calls`` and
    ``pii_findings`` (what the agent's figures grew by during the run: exact for runs that do not
    overlap; runs in parallel, as in ``batch``, each see the others' calls too).
    """

    raise_error = True
    run_inline = True

    def __init__(self) -> None:
        self.runs: List[Dict[str, Any]] = []
        self._open: Dict[uuid.UUID, Dict[str, Any]] = {}

    def on_chain_start(
        self, serialized: Any, inputs: Any, *, run_id: uuid.UUID, parent_run_id: Optional[uuid.UUID] = None, **kwargs: Any
    ) -> None:
        if parent_run_id is not None:
            return
        figures = _figures()
        if figures is not None:
            name = kwargs.get("name") or (serialized or {}).get("name") or "chain"
            self._open[run_id] = {"name": name, "before": figures}

    def _finish(self, run_id: uuid.UUID, status: str) -> None:
        started = self._open.pop(run_id, None)
        after = _figures()
        if started is None or after is None:
            return
        before = started["before"]
        self.runs.append(
            {
                "run_id": str(run_id),
                "name": started["name"],
                "status": status,
                "cost_usd": after["cost_usd"] - before["cost_usd"],
                "llm_calls": after["llm_calls"] - before["llm_calls"],
                "tool_calls": after["tool_calls"] - before["tool_calls"],
                "pii_findings": after["pii_findings"] - before["pii_findings"],
            }
        )

    def on_chain_end(self, outputs: Any, *, run_id: uuid.UUID, parent_run_id: Optional[uuid.UUID] = None, **kwargs: Any) -> None:
        if parent_run_id is None:
            self._finish(run_id, "ok")

    def on_chain_error(
        self, error: BaseException, *, run_id: uuid.UUID, parent_run_id: Optional[uuid.UUID] = None, **kwargs: Any
    ) -> None:
        if parent_run_id is None:
            self._finish(run_id, type(error).__name__)

    def _check_budget(self) -> None:
        figures = _figures()
        if figures is None or figures.get("budget_usd") is None:
            return
        if figures["cost_usd"] >= figures["budget_usd"]:
            raise BudgetExceeded(
                f"the budget of ${figures['budget_usd']:.2f} is spent (${figures['cost_usd']:.4f})",
                code="budget_exceeded",
                policy="budget",
            )

    def on_llm_start(self, serialized: Any, prompts: Any, **kwargs: Any) -> None:
        self._check_budget()

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self._check_budget()


# -- the text in a chain's input or output -------------------------------------------------------


def _texts(value: Any, out: List[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, BaseMessage):
        _texts(value.content, out)
    elif isinstance(value, dict):
        for v in value.values():
            _texts(v, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _texts(v, out)


def _rebuild(value: Any, texts: Iterator[str]) -> Any:
    if isinstance(value, str):
        return next(texts)
    if isinstance(value, BaseMessage):
        return value.model_copy(update={"content": _rebuild(value.content, texts)})
    if isinstance(value, dict):
        return {k: _rebuild(v, texts) for k, v in value.items()}
    if isinstance(value, list):
        return [_rebuild(v, texts) for v in value]
    if isinstance(value, tuple):
        return tuple(_rebuild(v, texts) for v in value)
    return value


def _screen(agent: Target, value: Any, step: str) -> Any:
    """Show the text in ``value`` to the policies (a tool step's result); the value with their
    changes applied. A refusal raises ``PolicyDenied``."""
    texts: List[str] = []
    _texts(value, texts)
    if not texts:
        return value
    begun = agent.tool_begin(f"langchain:{step}", "{}")
    if begun.ticket is None:
        return value
    sent = json.dumps(texts, ensure_ascii=False)
    end = agent.tool_end(begun.ticket, True, sent, "")
    if not end.ok:
        raise PolicyDenied(str(end.payload), code="denied", policy="langchain")
    if not end.changed:
        return value
    return _rebuild(value, iter(_decoded(end.payload)))


class IronhostChain(Runnable):  # type: ignore[type-arg]
    """A runnable under ironhost: ``IronhostChain(prompt | model, budget=5.0)``.

    The settings are ``protect_agent``'s. One agent serves every run of the chain in the
    process (its budget covers them all): ``chain.metrics()`` reads its figures, and
    ``chain.handler.runs`` each run's. Under ``ironhost start`` the runs belong to the host's
    agent.
    """

    def __init__(
        self,
        runnable: Runnable,  # type: ignore[type-arg]
        budget: Optional[float] = None,
        pii_detection: bool = True,
        circuit_breaker: bool = True,
        bundle: Optional[Union[str, "os.PathLike[str]"]] = None,
        safety_mode: Optional[str] = None,
        *,
        name: Optional[str] = None,
        config: Optional[Union[str, "os.PathLike[str]"]] = None,
        environment: Optional[str] = None,
    ) -> None:
        if not isinstance(runnable, Runnable):
            raise TypeError(f"IronhostChain: {runnable!r} is not a LangChain runnable")
        self.runnable = runnable
        self.name = name or runnable.get_name()
        options = _Options(
            budget, pii_detection, circuit_breaker, bundle, safety_mode, config, environment,
            api=False, listen=None, where="IronhostChain",
        )
        self.guard = ProtectedAgent(options, self.name, f"langchain:{self.name}")
        self.handler = IronhostCallbackHandler()

    @property
    def InputType(self) -> Any:  # noqa: N802 - LangChain's name
        return self.runnable.InputType

    @property
    def OutputType(self) -> Any:  # noqa: N802 - LangChain's name
        return self.runnable.OutputType

    def metrics(self) -> Dict[str, Any]:
        """The agent's figures (see ``ProtectedAgent.metrics``)."""
        return self.guard.metrics()

    def _config(self, config: Optional[RunnableConfig]) -> RunnableConfig:
        config = ensure_config(config)
        callbacks = config.get("callbacks")
        if callbacks is None:
            config["callbacks"] = [self.handler]
        elif isinstance(callbacks, list):
            config["callbacks"] = [*callbacks, self.handler]
        else:
            callbacks = callbacks.copy()
            callbacks.add_handler(self.handler, inherit=True)
            config["callbacks"] = callbacks
        return config

    def _agent(self) -> Target:
        return self.guard._open() or _context.require("IronhostChain")

    def invoke(self, input: Any, config: Optional[RunnableConfig] = None, **kwargs: Any) -> Any:
        agent = self._agent()
        with _context.run(agent):
            clean = _screen(agent, input, "input")
            out = self.runnable.invoke(clean, self._config(config), **kwargs)
            return _screen(agent, out, "output")

    async def ainvoke(self, input: Any, config: Optional[RunnableConfig] = None, **kwargs: Any) -> Any:
        import asyncio

        agent = await asyncio.to_thread(self._agent)
        with _context.run(agent):
            clean = await asyncio.to_thread(_screen, agent, input, "input")
            out = await self.runnable.ainvoke(clean, self._config(config), **kwargs)
            return await asyncio.to_thread(_screen, agent, out, "output")

    def stream(self, input: Any, config: Optional[RunnableConfig] = None, **kwargs: Any) -> Iterator[Any]:
        # Streamed answers are redacted in flight by the LLM hooks; the chunks are passed on as
        # they come. The agent is the target only while the inner stream runs, so a consumer
        # that stops early leaves no context behind.
        agent = self._agent()
        with _context.counted_run(agent):
            with _context.active(agent):
                clean = _screen(agent, input, "input")
                chunks = iter(self.runnable.stream(clean, self._config(config), **kwargs))
            done = object()
            while True:
                with _context.active(agent):
                    chunk = next(chunks, done)
                if chunk is done:
                    break
                yield chunk

    async def astream(self, input: Any, config: Optional[RunnableConfig] = None, **kwargs: Any) -> AsyncIterator[Any]:
        import asyncio

        agent = await asyncio.to_thread(self._agent)
        with _context.counted_run(agent):
            with _context.active(agent):
                clean = await asyncio.to_thread(_screen, agent, input, "input")
                chunks = self.runnable.astream(clean, self._config(config), **kwargs).__aiter__()
            while True:
                with _context.active(agent):
                    try:
                        chunk = await chunks.__anext__()
                    except StopAsyncIteration:
                        break
                yield chunk

