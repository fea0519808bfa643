#!/usr/bin/env bash
# Installs what the compatibility suite (tests/compat/) needs: .venv-compat, a virtualenv with
# the agent frameworks it runs under `ironhost start` (tests/compat/requirements.txt), and
# .venv-compat/tiktoken-cache, tiktoken's BPE file for offline use.
# Idempotent: safe to run before every run of the suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# ironhost embeds the Python it was built against, so the virtualenv is made with that same
# python3 (as .venv is, in scripts/setup.sh).
if [ ! -x .venv-compat/bin/python ]; then
    echo "setup-compat: creating .venv-compat (the frameworks of the compatibility suite)"
    python3 -m venv .venv-compat
fi
# Keeps the virtualenv out of git without a line in the repository's .gitignore.
[ -f .venv-compat/.gitignore ] || echo '*' > .venv-compat/.gitignore
.venv-compat/bin/pip install -q --disable-pip-version-check -r tests/compat/requirements.txt

# tiktoken downloads its BPE files on first use, which fails offline: langchain-openai's
# OpenAIEmbeddings tokenizes every input with cl100k_base. With TIKTOKEN_CACHE_DIR set to this
# folder (the suite's runner sets it), tiktoken reads the file from here, named by the SHA-1 of
# its URL and checked against tiktoken's own SHA-256. llama-index-core's wheel ships that file.
cache=.venv-compat/tiktoken-cache
purelib=$(.venv-compat/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
shipped=$purelib/llama_index/core/_static/tiktoken_cache/9b5ad71b2ce5302211f9c61530b329a4922fc6a4
mkdir -p "$cache"
if [ ! -f "$cache/${shipped##*/}" ]; then
    cp "$shipped" "$cache/"
fi
