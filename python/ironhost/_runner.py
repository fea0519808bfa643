"""Runs an agent script as ``__main__`` inside the host, the way ``python agent.py`` would."""

from __future__ import annotations

import builtins
import os
import runpy
import signal
import sys
import threading
import traceback
import types
from typing import Any, Dict, List, Optional, Tuple

PLACEHOLDER_KEY = "ironhost-placeholder-key"


def _stop(signum: int, frame: object) -> None:
    # The host records which signal it was (exit code 130 or 143), then the agent unwinds as
    # it would on Ctrl-C, once: Ctrl-C reaches the agent both from the terminal and from the
    # host, and the unwinding must not be cut short. The host ends an agent that does not stop.
    from . import _native

    if _native.note_signal(signum):
        raise KeyboardInterrupt


def prepare(env: Dict[str, str], upstreams: List[Tuple[str, str]], governed_only: bool = False) -> List[str]:
    """Set up the agent's interpreter once: signals, SDK keys, the HTTP hooks for the host's
    upstreams (name, base URL), and with ``egress = "governed-only"`` the connections the host
    makes for the agent (``_egress``). The host's own variables and the upstreams' keys never
    reach this process (the host starts it without them)."""
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    os.environ.update(env)
    placeholder_keys()
    from . import _intercept

    _intercept.set_upstreams(upstreams)
    if governed_only:
        from . import _egress

        _egress.install()
    return _intercept.install()


def placeholder_keys() -> None:
    """The SDKs refuse to construct without a key: give them a placeholder where none is set.
    The real key (a secret, or the host's environment) is added at egress."""
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        if not os.environ.get(var):
            os.environ[var] = PLACEHOLDER_KEY


def update_environ(set_vars: Dict[str, str], unset_vars: List[str]) -> None:
    """A secret changed: the running agent's environment follows."""
    os.environ.update(set_vars)
    for var in unset_vars:
        os.environ.pop(var, None)


#: Scripts running beside the program (``start_agent``), by thread: what ``__main__`` is there.
_THREAD_MAINS: Dict[int, types.ModuleType] = {}


class _MainByThread(types.ModuleType):
    """``sys.modules["__main__"]`` while scripts run beside the program: in a script's thread it
    is the script's module (so pydantic, dataclasses and pickle find the script's classes), in
    every other thread the program's own."""

    def __init__(self, program: types.ModuleType) -> None:
        super().__init__("__main__")
        object.__setattr__(self, "_program", program)

    def _here(self) -> types.ModuleType:
        found = _THREAD_MAINS.get(threading.get_ident())
        return found if found is not None else object.__getattribute__(self, "_program")

    def __getattribute__(self, name: str) -> Any:
        if name in ("_here", "_program", "__class__"):
            return object.__getattribute__(self, name)
        return getattr(object.__getattribute__(self, "_here")(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._here(), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._here(), name)

    def __dir__(self) -> List[str]:
        return dir(self._here())


_MAIN_LOCK = threading.Lock()


def _run_beside_main(path: str) -> None:
    """Run a script as ``__main__`` in a module of its own, while the program that started it
    goes on in other threads: runpy would swap ``sys.modules["__main__"]`` for everyone (and two
    scripts ending out of order would leave the wrong one there)."""
    full = os.path.abspath(path)
    with open(full, "rb") as f:
        # dont_inherit: the script gets its own __future__ flags, not this file's.
        code = compile(f.read(), full, "exec", dont_inherit=True)
    module = types.ModuleType("__main__")
    module.__file__ = full
    module.__builtins__ = builtins  # type: ignore[attr-defined]
    with _MAIN_LOCK:
        current = sys.modules.get("__main__")
        if not isinstance(current, _MainByThread):
            sys.modules["__main__"] = _MainByThread(current if current is not None else types.ModuleType("__main__"))
    ident = threading.get_ident()
    _THREAD_MAINS[ident] = module
    try:
        exec(code, module.__dict__)
    finally:
        _THREAD_MAINS.pop(ident, None)


def run(path: str, argv: Optional[List[str]]) -> int:
    """Run the script; returns its exit code. With ``argv`` None, ``sys.argv`` is left alone
    (a script started by ``AgentRuntime.start_agent`` shares the process)."""
    if argv is not None:
        sys.argv = [path, *argv]
    folder = os.path.dirname(os.path.abspath(path))
    if not sys.path or sys.path[0] != folder:
        sys.path.insert(0, folder)
    try:
        if argv is None:
            _run_beside_main(path)
        else:
            runpy.run_path(path, run_name="__main__")
        return 0
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:
        # Show the traceback from the script down, as `python agent.py` would.
        tb = exc.__traceback__
        script = os.path.abspath(path)
        while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) != script:
            tb = tb.tb_next
        traceback.print_exception(type(exc), exc, tb or exc.__traceback__)
        return 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass


def use_virtualenv(venv: str) -> None:
    """Make the packages of the active virtualenv importable, as its own python would."""
    import site

    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    site_packages = os.path.join(venv, "lib", version, "site-packages")
    cfg = os.path.join(venv, "pyvenv.cfg")
    include_system = False
    if os.path.exists(cfg):
        with open(cfg, encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition("=")
                key, value = key.strip().lower(), value.strip()
                if key == "include-system-site-packages":
                    include_system = value.lower() == "true"
                if key in ("version", "version_info"):
                    major_minor = ".".join(value.split(".")[:2])
                    mine = f"{sys.version_info[0]}.{sys.version_info[1]}"
                    if major_minor != mine:
                        raise RuntimeError(
                            f"the active virtualenv {venv} is for Python {major_minor}; "
                            f"ironhost embeds Python {mine}"
                        )
    if not os.path.isdir(site_packages):
        raise RuntimeError(f"the active virtualenv {venv} has no {site_packages}")
    if not include_system:
        sys.path[:] = [p for p in sys.path if "site-packages" not in p]
    site.addsitedir(site_packages)
    sys.prefix = sys.exec_prefix = venv
