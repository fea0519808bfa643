-- Alerts sent, so that a fleet sends each one once: every process that runs an alert sender
-- (an agent's own process, `ironhost serve`) sees the same events, and only the one whose
-- INSERT claimed the row delivers it (host/src/alerts.rs).
--
-- `channel` names the destination (`email:` and the sorted recipients, `webhook:` and a hash
-- of the URL); `threshold_key` says which crossing this is: for budget_warning and
-- budget_exceeded the limit and the warning share (a raised limit is a new threshold), for
-- circuit_opened the service and the opening, for anything else the event itself.
-- `state` is `claimed` while a sender delivers, `sent` once delivered; a delivery that failed
-- deletes its row, and a claim older than the claim timeout can be taken over (its sender
-- died mid-delivery).
CREATE TABLE sent_alerts (
    channel       TEXT NOT NULL,
    agent_id      TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    threshold_key TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('claimed', 'sent')),
    claimed_ms    INTEGER NOT NULL,
    sent_ms       INTEGER,
    PRIMARY KEY (channel, agent_id, event_type, threshold_key)
);
