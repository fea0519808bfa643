"""What every script of the suite prints: one JSON line per case on stdout, and on any
exception the traceback on stderr and exit code 1."""

import json
import sys
import traceback


def emit(case, text, **extra):
    print(json.dumps({"case": case, "text": text, **extra}), flush=True)


def run(main):
    try:
        main()
    except Exception:
        traceback.print_exc()
        sys.exit(1)
