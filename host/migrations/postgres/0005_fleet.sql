-- The fleet: many ironhost processes, on one machine or many, sharing one store. The twin of
-- sqlite/0005_fleet.sql.
--
-- Policy bundles become revisions in the store (every process running a bundle follows its
-- latest revision), changes are announced through counters every process watches, each process
-- running an agent has a row with its heartbeat, and budgets are spent from leases.

-- Policy components, content-addressed: a revision names an uploaded or file component by
-- `sha256:HEX`, its bytes are here. A row is never changed.
CREATE TABLE components (
    sha256     TEXT PRIMARY KEY,
    size       BIGINT NOT NULL,
    bytes      BYTEA NOT NULL,
    created_ms BIGINT NOT NULL
);

-- Every revision of every named bundle: the whole ordered policy list as JSON (`manifest`,
-- see host/src/policy/manifest.rs), what made it (`source`: a bundle file a process started
-- with, the control plane, or a rollback), what changed (`action`: loaded, added, replaced,
-- enabled, disabled, reordered, configured, rolled-back; the `policy` it concerns, '' for the
-- whole bundle; `detail` in words), and who. The latest revision of a bundle is the one that
-- runs. Append-only (TRUNCATE refused too).
CREATE TABLE bundle_revisions (
    bundle     TEXT NOT NULL,
    revision   BIGINT NOT NULL CHECK (revision > 0),
    manifest   TEXT NOT NULL,
    source     TEXT NOT NULL CHECK (source IN ('file', 'api', 'rollback')),
    action     TEXT NOT NULL,
    policy     TEXT NOT NULL,
    detail     TEXT NOT NULL,
    actor      TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (bundle, revision)
);
CREATE TRIGGER bundle_revisions_no_update BEFORE UPDATE ON bundle_revisions
FOR EACH ROW EXECUTE FUNCTION ironhost_refuse('bundle_revisions is append-only');
CREATE TRIGGER bundle_revisions_no_delete BEFORE DELETE ON bundle_revisions
FOR EACH ROW EXECUTE FUNCTION ironhost_refuse('bundle_revisions is append-only');
CREATE TRIGGER bundle_revisions_no_truncate BEFORE TRUNCATE ON bundle_revisions
FOR EACH STATEMENT EXECUTE FUNCTION ironhost_refuse('bundle_revisions is append-only');

-- Change counters. Whoever changes what other processes must follow (a bundle's revisions:
-- `bundle:NAME`; `secrets`; `limits`; stop requests: `stop`) bumps its topic in the same
-- transaction; every process polls the counters (and on PostgreSQL also listens for them).
CREATE TABLE changes (
    topic      TEXT PRIMARY KEY,
    seq        BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);

-- One row per process that runs (or ran) an agent: which machine (`host`), which process,
-- when it was last seen alive (its heartbeat), and a stop request for it.
CREATE TABLE agent_instances (
    id                TEXT PRIMARY KEY,
    agent_id          TEXT NOT NULL,
    host              TEXT NOT NULL,
    pid               BIGINT NOT NULL,
    runner            TEXT NOT NULL,
    bundle            TEXT NOT NULL,
    revision          BIGINT,
    started_ms        BIGINT NOT NULL,
    last_seen_ms      BIGINT NOT NULL,
    ended_ms          BIGINT,
    stop_requested_ms BIGINT,
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
    granted    BIGINT NOT NULL CHECK (granted >= 0),
    expires_ms BIGINT NOT NULL,
    PRIMARY KEY (policy, agent, key, holder)
);
