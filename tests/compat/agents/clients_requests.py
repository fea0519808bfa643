"""requests (and urllib3 under it), unchanged: chat completions plain and streamed (iter_lines
over the server-sent events), the raw urllib3 response, Anthropic messages plain and streamed on
a Session, and urllib3's own PoolManager."""

import json

import requests
import urllib3

from _report import emit, run
from _wire import (
    ANTHROPIC_URL,
    OPENAI_URL,
    Events,
    anthropic_headers,
    anthropic_messages,
    answer_text,
    openai_chat,
    openai_headers,
)


def main():
    r = requests.post(OPENAI_URL, json=openai_chat(), headers=openai_headers(), timeout=60)
    r.raise_for_status()
    emit("requests_chat", answer_text(r.json()), status=r.status_code)

    with requests.post(
        OPENAI_URL, json=openai_chat(stream=True), headers=openai_headers(), stream=True, timeout=60
    ) as r:
        r.raise_for_status()
        events = Events().lines(r.iter_lines())
    emit("requests_chat_stream", events.text(), **events.report())

    with requests.post(OPENAI_URL, json=openai_chat(), headers=openai_headers(), stream=True) as r:
        raw = r.raw.read(decode_content=True)
    emit("requests_raw", answer_text(raw), raw_type=type(r.raw).__module__)

    with requests.Session() as session:
        r = session.post(ANTHROPIC_URL, json=anthropic_messages(), headers=anthropic_headers())
        r.raise_for_status()
        emit("requests_anthropic", answer_text(r.json()))
        with session.post(
            ANTHROPIC_URL, json=anthropic_messages(stream=True), headers=anthropic_headers(), stream=True
        ) as r:
            events = Events().lines(r.iter_lines(chunk_size=None))
        emit("requests_anthropic_stream", events.text(), **events.report())

    pool = urllib3.PoolManager()
    r = pool.request("POST", OPENAI_URL, body=json.dumps(openai_chat()), headers=openai_headers())
    emit("urllib3_chat", answer_text(r.data), status=r.status)


if __name__ == "__main__":
    run(main)
