"""Run code when a module is imported: the one import hook of the package, shared by the HTTP
client hooks (``_clients``, ``_litellm``) and the framework tool hooks (``_frameworks``).
Nothing is imported here: a watched module is found by the other finders as it would be, and
its loader is wrapped so the hooks run right after its code, before the import returns."""

from __future__ import annotations

import importlib.abc
import sys
import threading
from typing import Any, Callable, Dict, List

_WATCHED: Dict[str, List[Callable[[Any], None]]] = {}
_WATCH_LOCK = threading.RLock()


def when_imported(name: str, hook: Callable[[Any], None]) -> None:
    """Call ``hook(module)`` once the module ``name`` (dotted names too) has been imported:
    now if it already is, else right after its code has run, before the import returns.

    A hook that raises makes the import fail (an ImportError naming the module): a library
    that could not be hooked must not send requests ungoverned."""
    with _WATCH_LOCK:
        module = sys.modules.get(name)
        if module is None or _initializing(module):
            _WATCHED.setdefault(name, []).append(hook)
            if not any(isinstance(f, _ImportWatcher) for f in sys.meta_path):
                sys.meta_path.insert(0, _ImportWatcher())
            return
    _run_hook(name, hook, module)


def _initializing(module: Any) -> bool:
    return bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


def _run_hook(name: str, hook: Callable[[Any], None], module: Any) -> None:
    try:
        hook(module)
    except Exception as exc:
        raise ImportError(f"ironhost could not hook `{name}`: {exc!r}", name=name) from exc


def _imported(name: str, module: Any) -> None:
    with _WATCH_LOCK:
        hooks = _WATCHED.pop(name, [])
    for hook in hooks:
        _run_hook(name, hook, module)


class _HookedLoader(importlib.abc.Loader):
    """The module's own loader, then the hooks."""

    def __init__(self, loader: Any, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        # The module keeps its own loader (resources, reload).
        module.__loader__ = self._loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        _imported(self._name, module)

    def __getattr__(self, name: str) -> Any:
        if name == "_loader":
            raise AttributeError(name)
        return getattr(self._loader, name)


_SEARCHING = threading.local()


class _ImportWatcher(importlib.abc.MetaPathFinder):
    """Finds watched modules with the other finders and wraps their loader."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        searching = _SEARCHING.__dict__.setdefault("names", set())
        if fullname not in _WATCHED or fullname in searching:
            return None  # (another finder that asks the others in turn is asking us back)
        searching.add(fullname)
        try:
            for finder in list(sys.meta_path):
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            searching.discard(fullname)
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _HookedLoader(spec.loader, fullname)
        return spec
