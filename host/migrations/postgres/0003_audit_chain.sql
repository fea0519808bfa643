-- The audit tables become a keyed hash chain (host/src/store/audit.rs): each row is sealed with
-- an HMAC over its values and the previous row's seal, and each table's head (last id, last
-- seal) is kept here under a MAC of its own. Rows written before this migration are sealed, in
-- order, the first time a host opens the store with its master key.
ALTER TABLE secret_audit_log ADD COLUMN chain_hash TEXT;
ALTER TABLE pii_audit ADD COLUMN chain_hash TEXT;

CREATE TABLE audit_chain_heads (
    tbl       TEXT PRIMARY KEY,
    last_id   BIGINT NOT NULL,
    last_hash TEXT NOT NULL,
    mac       TEXT
);
INSERT INTO audit_chain_heads (tbl, last_id, last_hash) VALUES
    ('secret_audit_log', 0, ''), ('pii_audit', 0, '');
CREATE TRIGGER audit_chain_heads_no_delete BEFORE DELETE ON audit_chain_heads
FOR EACH ROW EXECUTE FUNCTION ironhost_refuse('audit_chain_heads cannot be deleted');
CREATE TRIGGER audit_chain_heads_no_truncate BEFORE TRUNCATE ON audit_chain_heads
FOR EACH STATEMENT EXECUTE FUNCTION ironhost_refuse('audit_chain_heads cannot be deleted');

-- Still append-only; the one update allowed is sealing a row once, its values unchanged.
DROP TRIGGER secret_audit_log_no_update ON secret_audit_log;
CREATE TRIGGER secret_audit_log_no_update BEFORE UPDATE ON secret_audit_log
FOR EACH ROW WHEN (OLD.chain_hash IS NOT NULL OR NEW.chain_hash IS NULL
  OR NEW.id IS DISTINCT FROM OLD.id OR NEW.ts_ms IS DISTINCT FROM OLD.ts_ms
  OR NEW.secret_name IS DISTINCT FROM OLD.secret_name
  OR NEW.environment IS DISTINCT FROM OLD.environment
  OR NEW.action IS DISTINCT FROM OLD.action OR NEW.actor IS DISTINCT FROM OLD.actor
  OR NEW.role IS DISTINCT FROM OLD.role OR NEW.detail IS DISTINCT FROM OLD.detail)
EXECUTE FUNCTION ironhost_refuse('secret_audit_log is append-only');

DROP TRIGGER pii_audit_no_update ON pii_audit;
CREATE TRIGGER pii_audit_no_update BEFORE UPDATE ON pii_audit
FOR EACH ROW WHEN (OLD.chain_hash IS NOT NULL OR NEW.chain_hash IS NULL
  OR NEW.id IS DISTINCT FROM OLD.id OR NEW.ts_ms IS DISTINCT FROM OLD.ts_ms
  OR NEW.agent_id IS DISTINCT FROM OLD.agent_id OR NEW.call_id IS DISTINCT FROM OLD.call_id
  OR NEW.policy IS DISTINCT FROM OLD.policy OR NEW.pii_type IS DISTINCT FROM OLD.pii_type
  OR NEW.severity IS DISTINCT FROM OLD.severity OR NEW.location IS DISTINCT FROM OLD.location
  OR NEW.action IS DISTINCT FROM OLD.action OR NEW.value_hash IS DISTINCT FROM OLD.value_hash
  OR NEW.value_nonce IS DISTINCT FROM OLD.value_nonce
  OR NEW.value_ciphertext IS DISTINCT FROM OLD.value_ciphertext)
EXECUTE FUNCTION ironhost_refuse('pii_audit is append-only');
