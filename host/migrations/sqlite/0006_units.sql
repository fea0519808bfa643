-- Units of work an agent reported done (`ironhost.unit_done`, `with ironhost.unit()`): a lead
-- found, a ticket answered. `ok` is 1 or 0; `seconds` how long the unit took, if the agent
-- said; `fallback` names what served it instead of the usual path ('cache', 'placeholder'),
-- NULL when nothing did; `unit` the agent's word for one ('leads'). Pruned with the events.
CREATE TABLE units (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id TEXT NOT NULL,
    run      INTEGER,
    ts_ms    INTEGER NOT NULL,
    ok       INTEGER NOT NULL CHECK (ok IN (0, 1)),
    seconds  REAL CHECK (seconds >= 0),
    fallback TEXT,
    unit     TEXT
);
CREATE INDEX units_agent ON units(agent_id, ts_ms);
-- The metrics count events of a few types per agent (circuits, refusals, injections).
CREATE INDEX events_agent_type ON events(agent_id, type, ts_ms);
