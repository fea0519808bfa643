"""What the agent can reach on the network, tried every way an agent might: urllib to an
allowed and a not-allowed local server (by address and by name), a socket to a name outside
the allowlist, a socket to an upstream's host around the chain, the OpenAI SDK (governed), and
a subprocess (no ironhost in it) connecting by itself. Each case prints a JSON line.

The servers' ports come from the environment (`ALLOWED_PORT`, `OTHER_PORT`)."""

import asyncio
import json
import os
import socket
import subprocess
import sys
import urllib.request

import openai

ALLOWED = int(os.environ["ALLOWED_PORT"])
OTHER = int(os.environ["OTHER_PORT"])


def case(name, fn):
    try:
        print(json.dumps({"case": name, "ok": True, "text": fn()}), flush=True)
    except Exception as exc:  # the case's outcome, whatever it is
        print(json.dumps({"case": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"}), flush=True)


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def raw(host, port):
    with socket.create_connection((host, port), timeout=5) as s:
        return f"connected to {s.getpeername()}"


async def fetch(host, port):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    await writer.drain()
    body = (await reader.read()).split(b"\r\n\r\n", 1)[1].decode()
    writer.close()
    return body


case("allowed", lambda: get(f"http://127.0.0.1:{ALLOWED}/"))
case("allowed_asyncio", lambda: asyncio.run(fetch("localhost", ALLOWED)))
case("other_asyncio", lambda: asyncio.run(fetch("127.0.0.1", OTHER)))
case("allowed_by_name", lambda: get(f"http://localhost:{ALLOWED}/"))
case("allowed_lookup", lambda: socket.gethostbyname("localhost"))
case("other_port", lambda: get(f"http://127.0.0.1:{OTHER}/"))
case("other_lookup", lambda: socket.gethostbyname("pypi.org"))
case("other_host", lambda: raw("pypi.org", 443))
case("upstream_raw", lambda: raw("api.openai.com", 443))
case(
    "governed",
    lambda: openai.OpenAI(max_retries=0)
    .chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    .choices[0]
    .message.content,
)
probe = (
    "import socket, sys\n"
    "s = socket.socket()\n"
    "s.settimeout(3)\n"
    f"s.connect(('127.0.0.1', {ALLOWED}))\n"
    "print('connected')\n"
)


def subprocess_connect():
    done = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise OSError(done.stderr.strip().splitlines()[-1])
    return done.stdout.strip()


case("subprocess", subprocess_connect)
