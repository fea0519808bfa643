#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests of the store's PostgreSQL backend.
#
#   scripts/postgres.sh install     Debian's postgresql, unless an initdb is already there
#   scripts/postgres.sh start DIR   a new cluster in DIR (created if missing) on 127.0.0.1, a free
#                                   port, trust authentication, no fsync; prints its URL:
#                                   postgres://postgres@127.0.0.1:PORT/postgres
#   scripts/postgres.sh stop DIR    stop the server started in DIR (DIR itself is left)
#
# The tests read the URL from IRONHOST_TEST_POSTGRES_URL (scripts/test.sh sets it):
#   export IRONHOST_TEST_POSTGRES_URL=$(scripts/postgres.sh start /tmp/pg)
# PostgreSQL refuses to run as root: as root, the server runs as the system user `postgres`.
set -euo pipefail

usage() {
    echo "usage: $0 install | start DIR | stop DIR" >&2
    exit 2
}

# The newest installed server's bin directory, or nothing.
bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$d" ] && [ -x "$d/initdb" ]; then
        echo "$d"
    fi
}

# Run a server command as the user the server runs as.
as_server_user() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

install() {
    if [ -n "$(bindir)" ]; then
        return 0
    fi
    echo "postgres.sh: installing Debian's postgresql for the store's PostgreSQL tests" >&2
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    if [ -z "$(bindir)" ]; then
        echo "postgres.sh: postgresql was installed but no initdb is under /usr/lib/postgresql/*/bin" >&2
        exit 1
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir="$1" bin data port tries=0
    bin=$(bindir)
    if [ -z "$bin" ]; then
        echo "postgres.sh: no PostgreSQL server installed (run: $0 install)" >&2
        exit 1
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    data="$dir/data"
    if [ -e "$data" ]; then
        echo "postgres.sh: $data exists already: start takes a new directory (stop the old server and remove it)" >&2
        exit 1
    fi
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$dir"
    fi
    as_server_user "$bin/initdb" -D "$data" -U postgres --auth=trust --no-locale -E UTF8 \
        >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        exit 1
    }
    cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
    # Another process may take the port between the look-up and the start: try a few.
    while :; do
        port=$(free_port)
        if as_server_user "$bin/pg_ctl" -D "$data" -l "$dir/server.log" -o "-p $port" -w -t 60 \
            start >/dev/null 2>&1; then
            break
        fi
        tries=$((tries + 1))
        if [ "$tries" -ge 5 ]; then
            echo "postgres.sh: the server in $data did not start; its log:" >&2
            tail -n 30 "$dir/server.log" >&2 || true
            exit 1
        fi
    done
    echo "$port" >"$dir/port"
    # pg_ctl -w waited for the server; check it answers over TCP as the tests will connect.
    local i
    for i in $(seq 1 50); do
        if "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres; then
            echo "postgres://postgres@127.0.0.1:$port/postgres"
            return 0
        fi
        sleep 0.2
    done
    echo "postgres.sh: the server on 127.0.0.1:$port does not answer; its log:" >&2
    tail -n 30 "$dir/server.log" >&2 || true
    exit 1
}

stop() {
    local dir="$1" bin
    bin=$(bindir)
    if [ -z "$bin" ] || [ ! -f "$dir/data/postmaster.pid" ]; then
        return 0
    fi
    as_server_user "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
}

case "${1:-}" in
    install) install ;;
    start) [ $# -eq 2 ] || usage; start "$2" ;;
    stop) [ $# -eq 2 ] || usage; stop "$2" ;;
    *) usage ;;
esac
