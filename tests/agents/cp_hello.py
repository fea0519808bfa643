"""Prints one line and exits 0."""

print("hello from the agent", flush=True)
