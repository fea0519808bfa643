"""Makes one call the simulator takes long to answer; the test stops it with a signal.

"calling" is printed when the SDK hands the request to its HTTP client (an httpx request
hook), not before `create`: the SDK's first call imports and builds for a while, and a signal
sent then would stop the agent before any call reached the host.
"""

import os

import httpx
import openai


def announce(request: httpx.Request) -> None:
    print(f"calling (process {os.getpid()})", flush=True)


client = openai.OpenAI(http_client=httpx.Client(event_hooks={"request": [announce]}))
try:
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
finally:
    print("unwound", flush=True)
