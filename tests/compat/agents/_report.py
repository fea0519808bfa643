"""What every script of the suite prints: one JSON line per case on stdout, and on any
exception the traceback on stderr and exit code 1."""

import json
import sys
import traceback


def emit(case, text, **extra):
    print(json.dumps({"case": case, "text": text, **extra}), flush=True)


def causes(e):
    """The classes of the exceptions an exception was raised from (itself first)."""
    names = []
    while e is not None and len(names) < 10:
        names.append(type(e).__name__)
        e = e.__cause__ or e.__context__
    return names


def refused(case, call, **extra):
    """Run `call`, which should fail, and print what the code got: the exception's class (as
    `text`), module, bases, `code`, `policy` and causes (scripts that do not import ironhost
    tell its exceptions by these). A callable in `extra` is called then, for its value."""
    try:
        call()
    except Exception as e:
        emit(
            case,
            type(e).__name__,
            module=type(e).__module__,
            bases=[c.__name__ for c in type(e).__mro__],
            code=getattr(e, "code", None),
            policy=getattr(e, "policy", None),
            causes=causes(e),
            **{k: v() if callable(v) else v for k, v in extra.items()},
        )
    else:
        emit(case, "not refused")


def run(main):
    try:
        main()
    except Exception:
        traceback.print_exc()
        sys.exit(1)
