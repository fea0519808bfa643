-- The fleet: many ironhost processes, on one machine or many, sharing one store.
--
-- Policy bundles become revisions in the store (every process running a bundle follows its
-- latest revision), changes are announced through counters every process watches, each process
-- running an agent has a row with its heartbeat, and budgets are spent from leases.

-- Policy components, content-addressed: a revision names an uploaded or file component by
-- `sha256:HEX`, its bytes are here. A row is never changed.
CREATE TABLE components (
    sha256     TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    bytes      BLOB NOT NULL,
    created_ms INTEGER NOT NULL
);

-- Every revision of every named bundle: the whole ordered policy list as JSON (`manifest`,
-- see host/src/policy/manifest.rs), what made it (`source`: a bundle file a process started
-- with, the control plane, or a rollback), what changed (`action`: loaded, added, replaced,
-- enabled, disabled, reordered, configured, rolled-back; the `policy` it concerns, '' for the
-- whole bundle; `detail` in words), and who. The latest revision of a bundle is the one that
-- runs. Append-only.
CREATE TABLE bundle_revisions (
    bundle     TEXT NOT NULL,
    revision   INTEGER NOT NULL CHECK (revision > 0),
    manifest   TEXT NOT NULL,
    source     TEXT NOT NULL CHECK (source IN ('file', 'api', 'rollback')),
    action     TEXT NOT NULL,
    policy     TEXT NOT NULL,
    detail     TEXT NOT NULL,
    actor      TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (bundle, revision)
);
CREATE TRIGGER bundle_revisions_no_update BEFORE UPDATE ON bundle_revisions
BEGIN SELECT RAISE(ABORT, 'bundle_revisions is append-only'); END;
CREATE TRIGGER bundle_revisions_no_delete BEFORE DELETE ON bundle_revisions
BEGIN SELECT RAISE(ABORT, 'bundle_revisions is append-only'); END;

-- Change counters. Whoever changes what other processes must follow (a bundle's revisions:
-- `bundle:NAME`; `secrets`; `limits`; stop requests: `stop`) bumps its topic in the same
-- transaction; every process polls the counters (and on PostgreSQL also listens for them).
CREATE TABLE changes (
    topic      TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);

-- One row per process that runs (or ran) an agent: which machine (`host`), which process,
-- when it was last seen alive (its heartbeat), and a stop request for it.
CREATE TABLE agent_instances (
    id                TEXT PRIMARY KEY,
    agent_id          TEXT NOT NULL,
    host              TEXT NOT NULL,
    pid               INTEGER NOT NULL,
    runner            TEXT NOT NULL,
    bundle            TEXT NOT NULL,
    revision          INTEGER,
    started_ms        INTEGER NOT NULL,
    last_seen_ms      INTEGER NOT NULL,
    ended_ms          INTEGER,
    stop_requested_ms INTEGER,
    stop_actor        TEXT
);
CREATE INDEX agent_instances_agent ON agent_instances(agent_id, started_ms);

-- The machine of the process an `agents` row names (its pid means something only there).
ALTER TABLE agents ADD COLUMN host TEXT;

-- Budget leases: a process spends a counter with a ceiling (the budget policy's committed
-- spend) from a slice of the headroom it leased here. At any time the stored value plus the
-- slices of live leases stays within the ceiling; a lease whose process stopped renewing it
-- expires and its slice returns.
CREATE TABLE budget_leases (
    policy     TEXT NOT NULL,
    agent      TEXT NOT NULL,
    key        TEXT NOT NULL,
    holder     TEXT NOT NULL,
    granted    INTEGER NOT NULL CHECK (granted >= 0),
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (policy, agent, key, holder)
);
