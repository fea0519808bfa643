"""Agent frameworks' own tools through the policy chain, with no change to agent code.

``@ironhost.tool`` governs the functions it marks; this module governs the tools of LangChain
(and so LangGraph), openai-agents, pydantic-ai and CrewAI the same way (``_tools.run_tool``):
each call made while an agent is running (``_context.target()`` is not None) is shown to the
policies under the framework's own tool name with its arguments as JSON; they may let it run
(possibly with rewritten arguments), answer it (a circuit breaker's fallback) or refuse it, and
the result or error goes through ``on-tool-result``. A refusal reaches the framework the way a
failing tool does in that framework:

- LangChain / LangGraph: a ``ToolException`` (the tool's ``handle_tool_error`` and LangGraph's
  ``ToolNode(handle_tool_errors=...)`` treat it as any tool error). It is also the
  ``ironhost.PolicyDenied`` (``CircuitOpen``, ...) it stands for.
- openai-agents: the exception raised inside the tool's invoker, so the tool's
  ``failure_error_function`` turns it into the error text the model gets (or, with
  ``failure_error_function=None``, the run fails as it would for the tool's own error).
- pydantic-ai: ``ToolFailed``, a failed tool result the model sees.
- CrewAI: a ``ToolFailure`` result (CrewAI's declared tool failure), which the agent sees as text
  and its ``tool_failure_policy`` records.

Nothing is imported here: an import hook on ``sys.meta_path`` patches each framework's classes
when its module has been loaded (and ``install`` patches those already loaded). Outside any
agent the patched methods call the originals at once. A framework tool whose function is an
``@ironhost.tool`` is left to that decorator, so it is governed once.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import importlib
import inspect
import json
import sys
import threading
import types
import warnings
from typing import Any, Callable, Dict, FrozenSet, Iterator, List, Optional, Tuple

from . import _context
from ._imports import when_imported
from ._tools import _json, arun_tool, run_tool

#: Set on a class (in its own ``__dict__``) once its methods are hooked.
_MARK = "__ironhost_hooked__"
#: Set on the functions that govern a call, so they are never wrapped twice.
_GOVERNS = "__ironhost_governs__"

#: The tools (by id) whose call is being governed in this context: a tool's method calling
#: another of its own (``super()._run``, the default ``_arun`` running ``_run`` in a thread that
#: copies the context) is then the same call, not a second one.
_GOVERNING: "contextvars.ContextVar[FrozenSet[int]]" = contextvars.ContextVar(
    "ironhost_governing", default=frozenset()
)


@contextlib.contextmanager
def _governing(tool: Any) -> Iterator[None]:
    token = _GOVERNING.set(_GOVERNING.get() | {id(tool)})
    try:
        yield
    finally:
        _GOVERNING.reset(token)


def _inside(tool: Any) -> bool:
    return id(tool) in _GOVERNING.get()


def _is_ironhost_tool(fn: Any) -> bool:
    """Whether ``fn`` (or what it wraps, or the function of a bound method) is an
    ``@ironhost.tool``: it governs its own calls."""
    for _ in range(16):
        if fn is None:
            return False
        try:
            if getattr(fn, "__ironhost_tool__", None):
                return True
            fn = getattr(fn, "__wrapped__", None) or getattr(fn, "__func__", None)
        except Exception:
            return False
    return False


def _jsonable(value: Any) -> Any:
    """``value`` as JSON values (pydantic models and dataclasses as their fields; anything else
    JSON cannot hold as its text), as policies will see it."""
    try:
        from pydantic_core import to_jsonable_python

        return to_jsonable_python(value, fallback=str)
    except Exception:
        pass
    try:
        return json.loads(_json(value))
    except Exception:  # a value that refers to itself
        return repr(value)


def _merge(original: Any, old: Any, new: Any) -> Any:
    """The result a policy rewrote (its JSON view went from ``old`` to ``new``) in the shape of
    the ``original``: containers, pydantic models and dataclasses (a LangGraph ``Command``, a
    ``ToolMessage``) keep their types, with the changed values in them."""
    if old == new:
        return original
    if isinstance(original, (list, tuple)) and isinstance(old, list) and isinstance(new, list):
        if len(original) == len(old) == len(new):
            items = [_merge(o, a, b) for o, a, b in zip(original, old, new)]
            if isinstance(original, list):
                return items
            make = getattr(original, "_make", None)  # a named tuple
            return make(items) if make is not None else tuple(items)
    if not (isinstance(old, dict) and isinstance(new, dict) and old.keys() == new.keys()):
        return new
    changed = [k for k in new if old[k] != new[k]]
    if isinstance(original, dict):
        if all(isinstance(k, str) for k in original) and original.keys() == new.keys():
            return {k: _merge(v, old[k], new[k]) for k, v in original.items()}
        return new
    fields: Any = getattr(type(original), "model_fields", None)
    if isinstance(fields, dict) and all(k in fields for k in changed):
        update = {k: _merge(getattr(original, k), old[k], new[k]) for k in changed}
        return original.model_copy(update=update)
    if dataclasses.is_dataclass(original) and not isinstance(original, type):
        settable = {f.name for f in dataclasses.fields(original) if f.init}
        if all(k in settable for k in changed):
            update = {k: _merge(getattr(original, k), old[k], new[k]) for k in changed}
            return dataclasses.replace(original, **update)
    return new


#: How results are shown to policies and taken back (``run_tool``'s ``view`` and ``restore``).
_RESULTS: Dict[str, Any] = {"view": _jsonable, "restore": _merge}


def _shown(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """A call's arguments as policies see them: keywords by name, positional ones as
    ``__arg1``, ``__arg2``... (LangChain's name for a single-input tool's argument)."""
    shown = {f"__arg{i + 1}": a for i, a in enumerate(args)}
    shown.update(kwargs)
    return _jsonable(shown)


def _changes(shown: Dict[str, Any], arguments: Dict[str, Any]) -> Dict[str, Any]:
    """The arguments a policy rewrote (the rest keep their own Python values)."""
    if arguments is shown:
        return {}
    return {k: v for k, v in arguments.items() if k not in shown or shown[k] != v}


def _apply(
    args: Tuple[Any, ...], kwargs: Dict[str, Any], shown: Dict[str, Any], arguments: Dict[str, Any]
) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
    changed = _changes(shown, arguments)
    if not changed:
        return args, kwargs
    new_args = tuple(changed.pop(f"__arg{i + 1}", a) for i, a in enumerate(args))
    return new_args, {**kwargs, **changed}


_CLASSES: Dict[Tuple[type, type], type] = {}


def _as_also(exc: Exception, base: type) -> Exception:
    """``exc`` as an instance of a subclass of both its class and ``base`` (a framework's tool
    error class): the framework handles it as its own, agent code can still catch
    ``ironhost.CircuitOpen``. Its message is the whole explanation (``str(exc)``)."""
    if isinstance(exc, base):
        return exc
    key = (type(exc), base)
    cls = _CLASSES.get(key)
    if cls is None:
        cls = type(type(exc).__name__, (type(exc), base), {"__module__": type(exc).__module__})
        _CLASSES[key] = cls
    made = cls.__new__(cls)
    made.__dict__.update(exc.__dict__)
    made.args = (str(exc),)
    return made


def _wrap_method(
    cls: type, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> None:
    """Replace ``cls.name`` (defined in ``cls`` itself) by ``make(original)``, once."""
    fn = cls.__dict__.get(name)
    if fn is None or not inspect.isfunction(fn) or getattr(fn, _GOVERNS, False):
        return
    if getattr(fn, "__isabstractmethod__", False):
        return
    wrapped = make(fn)
    setattr(wrapped, _GOVERNS, True)
    setattr(cls, name, wrapped)


def _all_subclasses(cls: type) -> Iterator[type]:
    seen = set()
    todo = list(type.__subclasses__(cls))
    while todo:
        sub = todo.pop()
        if sub in seen:
            continue
        seen.add(sub)
        yield sub
        todo.extend(type.__subclasses__(sub))


# ---- LangChain (langchain_core.tools.BaseTool; LangGraph's ToolNode calls tool.invoke) -------


def _langchain(module: types.ModuleType) -> None:
    """``BaseTool._run`` / ``_arun`` as every subclass defines them (``StructuredTool`` for
    ``@tool``, ``Tool``, user subclasses; later subclasses through ``__init_subclass__``): the
    seam ``BaseTool.run`` / ``arun`` call, inside their error handling."""
    base = module.BaseTool
    tool_exception = module.ToolException
    if base.__dict__.get(_MARK):
        return
    config_param = getattr(module, "_get_runnable_config_param", None)

    def refusal(exc: Exception) -> Exception:
        return _as_also(exc, tool_exception)

    def arguments(tool: Any, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Dict[str, Any]:
        shown = dict(kwargs)
        filtered = getattr(tool, "_filter_injected_args", None)
        if callable(filtered):
            shown = filtered(shown)
        param = config_param(fn) if config_param is not None else "config"
        if param:
            shown.pop(param, None)
        return _shown(args, shown)

    def result(tool: Any, value: Any) -> Any:
        # A policy's answer for a content-and-artifact tool comes back as a JSON list.
        pair = getattr(tool, "response_format", None) == "content_and_artifact"
        if pair and isinstance(value, list):
            return tuple(value)
        return value

    def ungoverned(tool: Any, sync: bool) -> bool:
        if _inside(tool):
            return True
        func = getattr(tool, "func", None)
        coroutine = getattr(tool, "coroutine", None)
        if _is_ironhost_tool(func) or _is_ironhost_tool(coroutine):
            return True
        # A StructuredTool / Tool without a sync function refuses `_run` itself: not a call.
        return sync and "func" in getattr(type(tool), "model_fields", {}) and func is None

    def sync_run(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def _run(self: Any, *args: Any, **kwargs: Any) -> Any:
            agent = _context.target()
            if agent is None or ungoverned(self, True):
                return fn(self, *args, **kwargs)
            shown = arguments(self, fn, args, kwargs)

            def call(given: Dict[str, Any]) -> Any:
                a, kw = _apply(args, kwargs, shown, given)
                with _governing(self):
                    return fn(self, *a, **kw)

            value = run_tool(self.name, shown, call, agent=agent, refusal=refusal, **_RESULTS)
            return result(self, value)

        return _run

    def async_run(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def _arun(self: Any, *args: Any, **kwargs: Any) -> Any:
            agent = _context.target()
            if agent is None or ungoverned(self, False):
                return await fn(self, *args, **kwargs)
            shown = arguments(self, fn, args, kwargs)

            async def call(given: Dict[str, Any]) -> Any:
                a, kw = _apply(args, kwargs, shown, given)
                with _governing(self):
                    return await fn(self, *a, **kw)

            value = await arun_tool(
                self.name, shown, call, agent=agent, refusal=refusal, **_RESULTS
            )
            return result(self, value)

        return _arun

    def hook(cls: type) -> None:
        if cls.__dict__.get(_MARK):
            return
        _wrap_method(cls, "_run", sync_run)
        if cls is not base:
            # BaseTool's own `_arun` runs `_run` in a thread: governed there.
            _wrap_method(cls, "_arun", async_run)
        type.__setattr__(cls, _MARK, True)

    original = base.__dict__.get("__init_subclass__")
    original_fn = getattr(original, "__func__", original)

    def __init_subclass__(cls: type, **kwargs: Any) -> None:
        if original_fn is not None:
            original_fn(cls, **kwargs)
        else:
            super(base, cls).__init_subclass__(**kwargs)  # type: ignore[misc]
        hook(cls)

    base.__init_subclass__ = classmethod(__init_subclass__)  # type: ignore[assignment]
    hook(base)
    for sub in _all_subclasses(base):
        hook(sub)


# ---- openai-agents (agents.FunctionTool) ------------------------------------------------------


def _agents_arguments(text: str) -> Optional[Dict[str, Any]]:
    try:
        value = json.loads(text) if text and text.strip() else {}
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _openai_agents(module: types.ModuleType) -> None:
    """The tools ``@function_tool`` (and ``Agent.as_tool``, MCP tools) build: the function their
    invoker (``_FailureHandlingFunctionToolInvoker``) runs inside its failure handling, wrapped
    at the invoker's first call inside an agent. A ``FunctionTool`` built with an
    ``on_invoke_tool`` of its own: that invoker, wrapped in ``FunctionTool.__post_init__``."""
    invoker = getattr(module, "_FailureHandlingFunctionToolInvoker", None)
    function_tool = module.FunctionTool
    if function_tool.__dict__.get(_MARK):
        return
    on_failure = getattr(module, "maybe_invoke_function_tool_failure_error_function", None)

    def governed_impl(impl: Callable[..., Any]) -> Callable[..., Any]:
        if getattr(impl, _GOVERNS, False):
            return impl
        ours = _is_ironhost_tool(getattr(impl, "__agents_function_tool_wrapped_callable__", None))

        @functools.wraps(impl)
        async def invoke(ctx: Any, text: str) -> Any:
            agent = _context.target()
            shown = None if ours or agent is None else _agents_arguments(text)
            if shown is None:
                # Outside agents; an @ironhost.tool; input the SDK refuses itself.
                return await impl(ctx, text)

            async def call(given: Dict[str, Any]) -> Any:
                sent = text
                if given is not shown:
                    sent = json.dumps(given)
                    # Arguments the runner prepared from the model's text no longer apply.
                    if getattr(ctx, "_function_tool_arguments", None) is not None:
                        ctx._function_tool_arguments = None
                return await impl(ctx, sent)

            name = getattr(ctx, "tool_name", None) or getattr(impl, "__name__", "function_tool")
            return await arun_tool(name, shown, call, agent=agent, **_RESULTS)

        setattr(invoke, _GOVERNS, True)
        return invoke

    if invoker is not None and not invoker.__dict__.get(_MARK):
        original_call = invoker.__call__

        async def __call__(self: Any, ctx: Any, input: str) -> Any:
            impl = self._invoke_tool_impl
            if not getattr(impl, _GOVERNS, False) and _context.target() is not None:
                self._invoke_tool_impl = governed_impl(impl)
            return await original_call(self, ctx, input)

        functools.update_wrapper(__call__, original_call)
        invoker.__call__ = __call__
        type.__setattr__(invoker, _MARK, True)

    class _Refused(Exception):
        pass

    class GovernedInvoker:
        """A hand-built FunctionTool's own ``on_invoke_tool``, governed. A refusal becomes the
        tool's failure text (``failure_error_function``), as for ``@function_tool`` tools."""

        def __init__(self, inner: Callable[..., Any], tool: Any) -> None:
            self._inner = inner
            self._tool = tool

        def __getattr__(self, name: str) -> Any:
            if name in ("_inner", "_tool"):
                raise AttributeError(name)
            return getattr(self._inner, name)

        def __agents_bind_function_tool__(self, tool: Any) -> "GovernedInvoker":
            # A copy of the tool: an invoker that is the tool's own method follows the copy.
            inner = self._inner
            if inspect.ismethod(inner) and inner.__self__ is self._tool and tool is not self._tool:
                inner = inner.__func__.__get__(tool, type(tool))
            return GovernedInvoker(inner, tool)

        async def __call__(self, ctx: Any, text: str) -> Any:
            agent = _context.target()
            if agent is None:
                return await self._inner(ctx, text)
            parsed = _agents_arguments(text)
            shown = parsed if parsed is not None else {"input": text}

            async def call(given: Dict[str, Any]) -> Any:
                sent = text
                if given is not shown:
                    if parsed is not None:
                        sent = json.dumps(given)
                    else:
                        sent = str(given.get("input", text))
                return await self._inner(ctx, sent)

            name = getattr(ctx, "tool_name", None) or self._tool.name
            try:
                return await arun_tool(
                    name, shown, call, agent=agent, refusal=_Refused, **_RESULTS
                )
            except _Refused as refused:
                denial = refused.__cause__
                assert isinstance(denial, Exception)
                text_out = None
                if on_failure is not None:
                    text_out = await on_failure(function_tool=self._tool, context=ctx, error=denial)
                if text_out is None:
                    raise denial from None
                return text_out

    original_post_init = function_tool.__post_init__

    def __post_init__(self: Any) -> None:
        original_post_init(self)
        inner = self.on_invoke_tool
        if isinstance(inner, GovernedInvoker):
            return
        if invoker is not None and isinstance(inner, invoker):
            return
        plumbing = getattr(inner, "__module__", "").startswith("agents.run_internal")
        if not callable(inner) or plumbing:
            # The runner's own plumbing (LiteLLM's JSON tool), not a tool.
            return
        self.on_invoke_tool = GovernedInvoker(inner, self)

    functools.update_wrapper(__post_init__, original_post_init)
    function_tool.__post_init__ = __post_init__
    type.__setattr__(function_tool, _MARK, True)


# ---- pydantic-ai (FunctionToolset: @agent.tool, @agent.tool_plain, Tool(...)) ----------------


def _pydantic_ai(module: types.ModuleType) -> None:
    """``FunctionToolset.call_tool``: the arguments are validated already; sync tools run in a
    thread inside it, so both kinds pass here."""
    toolset = module.FunctionToolset
    if toolset.__dict__.get(_MARK):
        return
    errors = importlib.import_module("pydantic_ai.exceptions")
    failed = getattr(errors, "ToolFailed", None) or errors.ModelRetry
    retry = errors.ModelRetry

    def refusal(exc: Exception) -> Exception:
        return failed(str(exc))

    def classify(exc: BaseException) -> Optional[str]:
        # ModelRetry: the model is asked to call again with other arguments.
        return "invalid-input" if isinstance(exc, retry) else None

    original = toolset.call_tool

    @functools.wraps(original)
    async def call_tool(
        self: Any, name: str, tool_args: Dict[str, Any], ctx: Any, tool: Any
    ) -> Any:
        agent = _context.target()
        held = getattr(self, "tools", {}).get(getattr(tool, "original_name", None) or name)
        if agent is None or _is_ironhost_tool(getattr(held, "function", None)):
            return await original(self, name, tool_args, ctx, tool)
        shown = _jsonable(tool_args)

        async def call(given: Dict[str, Any]) -> Any:
            changed = _changes(shown, given)
            args = tool_args
            if changed:
                args = tool.args_validator.validate_python(
                    {**tool_args, **changed}, context=getattr(ctx, "validation_context", None)
                )
            return await original(self, name, args, ctx, tool)

        return await arun_tool(
            name, shown, call, agent=agent, refusal=refusal, classify=classify, **_RESULTS
        )

    setattr(call_tool, _GOVERNS, True)
    toolset.call_tool = call_tool
    type.__setattr__(toolset, _MARK, True)


# ---- CrewAI (crewai.tools.BaseTool, @tool's Tool, CrewStructuredTool) ------------------------


def _crewai_failure() -> Tuple[Callable[[Any], Optional[Tuple[str, str]]], Callable[..., Any]]:
    """How CrewAI tells a failed call: the ``failure`` and ``refusal`` of ``run_tool``."""
    try:
        failures = importlib.import_module("crewai.tools.tool_failure")
    except ImportError:
        failures = None
    failure_cls = getattr(failures, "ToolFailure", None)
    reasons = getattr(failures, "ToolFailureReason", None)
    not_the_tool = {
        getattr(reasons, n, None)
        for n in ("INVALID_INPUT", "USAGE_LIMIT", "UNKNOWN_TOOL", "REPEATED_CALL")
    } - {None}

    def failure(value: Any) -> Optional[Tuple[str, str]]:
        # A ToolFailure the tool returned is the tool failing; a spent usage limit or bad
        # input is not the service's fault (a circuit breaker does not count it).
        if failure_cls is None or not isinstance(value, failure_cls):
            return None
        kind = "invalid-input" if value.reason in not_the_tool else "exception"
        return kind, value.as_agent_message()

    def refusal(exc: Exception) -> Any:
        if failure_cls is None:
            return str(exc)
        return failure_cls(
            message=str(exc),
            code=getattr(exc, "code", None),
            retryable=getattr(exc, "retry_after", None) is not None,
        )

    return failure, refusal


def _crewai_tools(module: types.ModuleType) -> None:
    """``BaseTool.run`` / ``arun`` and ``Tool.run`` / ``arun`` (what native function calling
    calls: ``Tool.run`` calls the function itself, not ``_run``)."""
    base = module.BaseTool
    if base.__dict__.get(_MARK):
        return
    failure, refusal = _crewai_failure()

    def ungoverned(tool: Any) -> bool:
        return _inside(tool) or _is_ironhost_tool(getattr(tool, "func", None))

    def sync_run(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            agent = _context.target()
            if agent is None or ungoverned(self):
                return fn(self, *args, **kwargs)
            shown = _shown(args, kwargs)

            def call(given: Dict[str, Any]) -> Any:
                a, kw = _apply(args, kwargs, shown, given)
                with _governing(self):
                    return fn(self, *a, **kw)

            return run_tool(
                self.name, shown, call, agent=agent, refusal=refusal, failure=failure, **_RESULTS
            )

        return run

    def async_run(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def arun(self: Any, *args: Any, **kwargs: Any) -> Any:
            agent = _context.target()
            if agent is None or ungoverned(self):
                return await fn(self, *args, **kwargs)
            shown = _shown(args, kwargs)

            async def call(given: Dict[str, Any]) -> Any:
                a, kw = _apply(args, kwargs, shown, given)
                with _governing(self):
                    return await fn(self, *a, **kw)

            return await arun_tool(
                self.name, shown, call, agent=agent, refusal=refusal, failure=failure, **_RESULTS
            )

        return arun

    for cls in (base, getattr(module, "Tool", None)):
        if cls is None or cls.__dict__.get(_MARK):
            continue
        _wrap_method(cls, "run", sync_run)
        _wrap_method(cls, "arun", async_run)
        type.__setattr__(cls, _MARK, True)


def _crewai_structured(module: types.ModuleType) -> None:
    """``CrewStructuredTool.invoke`` / ``ainvoke``: how the ReAct loop (``ToolUsage``) runs a
    tool (its function is the original tool's ``_run``)."""
    structured = module.CrewStructuredTool
    if structured.__dict__.get(_MARK):
        return
    failure, refusal = _crewai_failure()

    def owner(tool: Any) -> Any:
        return getattr(tool, "_original_tool", None) or tool

    def ungoverned(tool: Any) -> bool:
        return (
            _inside(owner(tool))
            or _is_ironhost_tool(getattr(tool, "func", None))
            or _is_ironhost_tool(getattr(owner(tool), "func", None))
        )

    def shown_of(value: Any) -> Tuple[Dict[str, Any], bool]:
        if isinstance(value, str):
            parsed = _agents_arguments(value)
            if parsed is None:
                return {"input": value}, False
            return _jsonable(parsed), False
        if isinstance(value, dict):
            return _jsonable(value), True
        return {"input": _jsonable(value)}, False

    def rebuilt(value: Any, shown: Dict[str, Any], given: Dict[str, Any], is_dict: bool) -> Any:
        changed = _changes(shown, given)
        if not changed:
            return value
        if is_dict:
            return {**value, **changed}
        if isinstance(value, str) and "input" not in shown:
            return json.dumps({**shown, **changed})
        return changed.get("input", value)

    def sync_invoke(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def invoke(self: Any, input: Any, config: Any = None, **kwargs: Any) -> Any:
            agent = _context.target()
            if agent is None or ungoverned(self):
                return fn(self, input, config, **kwargs)
            shown, is_dict = shown_of(input)

            def call(given: Dict[str, Any]) -> Any:
                with _governing(owner(self)):
                    return fn(self, rebuilt(input, shown, given, is_dict), config, **kwargs)

            return run_tool(
                self.name, shown, call, agent=agent, refusal=refusal, failure=failure, **_RESULTS
            )

        return invoke

    def async_invoke(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def ainvoke(self: Any, input: Any, config: Any = None, **kwargs: Any) -> Any:
            agent = _context.target()
            if agent is None or ungoverned(self):
                return await fn(self, input, config, **kwargs)
            shown, is_dict = shown_of(input)

            async def call(given: Dict[str, Any]) -> Any:
                with _governing(owner(self)):
                    return await fn(self, rebuilt(input, shown, given, is_dict), config, **kwargs)

            return await arun_tool(
                self.name, shown, call, agent=agent, refusal=refusal, failure=failure, **_RESULTS
            )

        return ainvoke

    _wrap_method(structured, "invoke", sync_invoke)
    _wrap_method(structured, "ainvoke", async_invoke)
    type.__setattr__(structured, _MARK, True)


# ---- the import hook ----------------------------------------------------------------------------

#: The module whose loading hooks a framework, and how.
HOOKS: Dict[str, Callable[[types.ModuleType], None]] = {
    "langchain_core.tools.base": _langchain,
    "agents.tool": _openai_agents,
    "pydantic_ai.toolsets.function": _pydantic_ai,
    "crewai.tools.base_tool": _crewai_tools,
    "crewai.tools.structured_tool": _crewai_structured,
}


def _apply_hook(name: str, module: types.ModuleType) -> None:
    try:
        HOOKS[name](module)
    except Exception as exc:  # a framework version this does not know: it runs unhooked
        warnings.warn(
            f"ironhost: the tools of {name} are not governed ({type(exc).__name__}: {exc})",
            RuntimeWarning,
            stacklevel=2,
        )


_INSTALL_LOCK = threading.Lock()
_INSTALLED: List[bool] = []


def install() -> None:
    """Hook the frameworks: those imported from now on as they load, those already imported at
    once. Idempotent."""
    with _INSTALL_LOCK:
        if _INSTALLED:
            return
        _INSTALLED.append(True)
    for name in HOOKS:
        when_imported(name, functools.partial(_apply_hook, name))
