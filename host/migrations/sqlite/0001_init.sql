-- ironhost store, schema version 1. Released migrations are never edited; changes go in a
-- new numbered file. Times are milliseconds since the Unix epoch.

-- Installation-wide values: salts, key check, signing keys.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

-- One row per agent id; `pid` and `pid_start` (its start time in clock ticks after boot, so a
-- recycled pid is never taken for it) name the ironhost process running it, for stop.
CREATE TABLE agents (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    script      TEXT NOT NULL,
    bundle      TEXT NOT NULL,
    environment TEXT NOT NULL,
    state       TEXT NOT NULL,
    budget_usd  REAL,
    pid         INTEGER,
    pid_start   INTEGER,
    exit_code   INTEGER,
    -- What the agent reported with ironhost.progress(done, total, unit).
    progress_done  INTEGER,
    progress_total INTEGER,
    progress_unit  TEXT,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);

CREATE TABLE agent_runs (
    agent_id   TEXT NOT NULL REFERENCES agents(id),
    run        INTEGER NOT NULL,
    state      TEXT NOT NULL,
    exit_code  INTEGER,
    started_ms INTEGER NOT NULL,
    ended_ms   INTEGER,
    PRIMARY KEY (agent_id, run)
);

-- Every LLM and tool call; `verdicts` is the JSON list of every policy's verdict and latency.
CREATE TABLE calls (
    id            TEXT PRIMARY KEY,
    agent_id      TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('llm', 'tool')),
    provider      TEXT,
    model         TEXT,
    tool          TEXT,
    outcome       TEXT NOT NULL,
    status        INTEGER,
    code          TEXT,
    stream        INTEGER NOT NULL DEFAULT 0,
    simulated     INTEGER NOT NULL DEFAULT 0,
    attempts      INTEGER NOT NULL DEFAULT 1,
    input_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd      REAL NOT NULL DEFAULT 0,
    latency_ms    REAL NOT NULL,
    policy_us     INTEGER NOT NULL DEFAULT 0,
    verdicts      TEXT NOT NULL,
    ts_ms         INTEGER NOT NULL
);
CREATE INDEX calls_agent ON calls(agent_id, ts_ms);
CREATE INDEX calls_model ON calls(model, ts_ms);
CREATE INDEX calls_ts ON calls(ts_ms);

-- The event stream as the bus published it (`body` is the event's JSON).
CREATE TABLE events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms    INTEGER NOT NULL,
    agent_id TEXT NOT NULL,
    severity TEXT NOT NULL,
    type     TEXT NOT NULL,
    body     TEXT NOT NULL
);
CREATE INDEX events_ts ON events(ts_ms);
CREATE INDEX events_agent ON events(agent_id, id);

-- PII findings. `value_hash` is the keyed fingerprint; the value itself only as AES-256-GCM
-- ciphertext under the store's data key (see secrets).
CREATE TABLE pii_audit (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms            INTEGER NOT NULL,
    agent_id         TEXT NOT NULL,
    call_id          TEXT,
    policy           TEXT NOT NULL,
    pii_type         TEXT NOT NULL,
    severity         TEXT NOT NULL,
    location         TEXT NOT NULL,
    action           TEXT NOT NULL,
    value_hash       TEXT NOT NULL,
    value_nonce      BLOB,
    value_ciphertext BLOB
);

-- Budgets set through the API: global (agent_id NULL) or for one agent.
CREATE TABLE limits (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id    TEXT UNIQUE,
    limit_usd   REAL NOT NULL CHECK (limit_usd >= 0),
    warn_at     REAL NOT NULL DEFAULT 0.9 CHECK (warn_at > 0 AND warn_at <= 1),
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
CREATE UNIQUE INDEX limits_one_global ON limits((agent_id IS NULL)) WHERE agent_id IS NULL;

-- Policies' host-owned state (the `state` capability). `agent` is '' for policy-wide keys.
CREATE TABLE policy_state (
    policy TEXT NOT NULL,
    agent  TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (policy, agent, key)
);

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'viewer', 'agent')),
    created_ms    INTEGER NOT NULL
);

-- API tokens: only the SHA-256 of the token is kept.
CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'viewer', 'agent')),
    created_by   TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    revoked_ms   INTEGER
);

-- Login sessions: the refresh token's id; logout revokes it and every access token of it.
CREATE TABLE sessions (
    id         TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id),
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);

-- Secrets: AES-256-GCM ciphertext, with the Argon2id salt and the nonce of this version.
CREATE TABLE secrets (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    environment TEXT NOT NULL CHECK (environment IN ('dev', 'staging', 'production')),
    salt        BLOB NOT NULL,
    nonce       BLOB NOT NULL,
    ciphertext  BLOB NOT NULL,
    version     INTEGER NOT NULL DEFAULT 1,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    deleted_ms  INTEGER
);
CREATE UNIQUE INDEX secrets_live ON secrets(name, environment) WHERE deleted_ms IS NULL;

-- Every secret operation. Never a value.
CREATE TABLE secret_audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms       INTEGER NOT NULL,
    secret_name TEXT NOT NULL,
    environment TEXT NOT NULL,
    action      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    role        TEXT NOT NULL,
    detail      TEXT
);
CREATE INDEX secret_audit_name ON secret_audit_log(secret_name, id);

-- The audit tables are append-only: the database itself refuses changes.
CREATE TRIGGER secret_audit_log_no_update BEFORE UPDATE ON secret_audit_log
BEGIN SELECT RAISE(ABORT, 'secret_audit_log is append-only'); END;
CREATE TRIGGER secret_audit_log_no_delete BEFORE DELETE ON secret_audit_log
BEGIN SELECT RAISE(ABORT, 'secret_audit_log is append-only'); END;
CREATE TRIGGER pii_audit_no_update BEFORE UPDATE ON pii_audit
BEGIN SELECT RAISE(ABORT, 'pii_audit is append-only'); END;
CREATE TRIGGER pii_audit_no_delete BEFORE DELETE ON pii_audit
BEGIN SELECT RAISE(ABORT, 'pii_audit is append-only'); END;
