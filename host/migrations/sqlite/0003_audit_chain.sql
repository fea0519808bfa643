-- The audit tables become a keyed hash chain (host/src/store/audit.rs): each row is sealed with
-- an HMAC over its values and the previous row's seal, and each table's head (last id, last
-- seal) is kept here under a MAC of its own. Rows written before this migration are sealed, in
-- order, the first time a host opens the store with its master key.
ALTER TABLE secret_audit_log ADD COLUMN chain_hash TEXT;
ALTER TABLE pii_audit ADD COLUMN chain_hash TEXT;

CREATE TABLE audit_chain_heads (
    tbl       TEXT PRIMARY KEY,
    last_id   INTEGER NOT NULL,
    last_hash TEXT NOT NULL,
    mac       TEXT
);
INSERT INTO audit_chain_heads (tbl, last_id, last_hash) VALUES
    ('secret_audit_log', 0, ''), ('pii_audit', 0, '');
CREATE TRIGGER audit_chain_heads_no_delete BEFORE DELETE ON audit_chain_heads
BEGIN SELECT RAISE(ABORT, 'audit_chain_heads cannot be deleted'); END;

-- Still append-only; the one update allowed is sealing a row once, its values unchanged.
DROP TRIGGER secret_audit_log_no_update;
CREATE TRIGGER secret_audit_log_no_update BEFORE UPDATE ON secret_audit_log
WHEN OLD.chain_hash IS NOT NULL OR NEW.chain_hash IS NULL
  OR NEW.id IS NOT OLD.id OR NEW.ts_ms IS NOT OLD.ts_ms
  OR NEW.secret_name IS NOT OLD.secret_name OR NEW.environment IS NOT OLD.environment
  OR NEW.action IS NOT OLD.action OR NEW.actor IS NOT OLD.actor OR NEW.role IS NOT OLD.role
  OR NEW.detail IS NOT OLD.detail
BEGIN SELECT RAISE(ABORT, 'secret_audit_log is append-only'); END;

DROP TRIGGER pii_audit_no_update;
CREATE TRIGGER pii_audit_no_update BEFORE UPDATE ON pii_audit
WHEN OLD.chain_hash IS NOT NULL OR NEW.chain_hash IS NULL
  OR NEW.id IS NOT OLD.id OR NEW.ts_ms IS NOT OLD.ts_ms
  OR NEW.agent_id IS NOT OLD.agent_id OR NEW.call_id IS NOT OLD.call_id
  OR NEW.policy IS NOT OLD.policy OR NEW.pii_type IS NOT OLD.pii_type
  OR NEW.severity IS NOT OLD.severity OR NEW.location IS NOT OLD.location
  OR NEW.action IS NOT OLD.action OR NEW.value_hash IS NOT OLD.value_hash
  OR NEW.value_nonce IS NOT OLD.value_nonce OR NEW.value_ciphertext IS NOT OLD.value_ciphertext
BEGIN SELECT RAISE(ABORT, 'pii_audit is append-only'); END;
