"""Watches DEMO_TOKEN in its environment and prints each new value; the host rotates it."""

import os
import sys
import time

stop_at = sys.argv[1] if len(sys.argv) > 1 else None
# The host's own credentials never reach the agent.
hidden = [v for v in ("IRONHOST_MASTER_KEY", "IRONHOST_ADMIN_PASSWORD") if v in os.environ]
print(f"host credentials visible: {hidden}", flush=True)
print("watching", flush=True)
seen = []
last = None
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    value = os.environ.get("DEMO_TOKEN")
    if value and value != last:
        last = value
        print(f"token: {value}", flush=True)
        if value not in seen:
            seen.append(value)
        if len(seen) >= 2 or value == stop_at:
            sys.exit(0)
    time.sleep(0.05)
print("gave up waiting for a second token", flush=True)
sys.exit(3)
