"""The standard library, unchanged: urllib.request (chat completions plain and streamed,
Anthropic messages) and http.client (a plain call, then a streamed one on the same
keep-alive connection)."""

import http.client
import json
import urllib.request

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


def post(url, body, headers):
    return urllib.request.urlopen(
        urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST"),
        timeout=60,
    )


def main():
    with post(OPENAI_URL, openai_chat(), openai_headers()) as resp:
        emit("urllib_chat", answer_text(resp.read()), status=resp.status)

    with post(OPENAI_URL, openai_chat(stream=True), openai_headers()) as resp:
        events = Events().lines(resp)  # line by line, as the events come
    emit("urllib_chat_stream", events.text(), **events.report())

    with post(ANTHROPIC_URL, anthropic_messages(), anthropic_headers()) as resp:
        emit("urllib_anthropic", answer_text(resp.read()))

    conn = http.client.HTTPSConnection("api.openai.com", timeout=60)
    conn.request("POST", "/v1/chat/completions", json.dumps(openai_chat()), openai_headers())
    resp = conn.getresponse()
    emit("http_client_chat", answer_text(resp.read()), status=resp.status)
    conn.request("POST", "/v1/chat/completions", json.dumps(openai_chat(stream=True)), openai_headers())
    resp = conn.getresponse()
    events = Events()
    while line := resp.readline():
        events.line(line)
    emit("http_client_chat_stream", events.text(), **events.report())
    conn.close()


if __name__ == "__main__":
    run(main)
