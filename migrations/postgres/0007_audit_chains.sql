-- The audit log becomes several hash chains instead of one, so concurrent writers lock
-- different heads and commit together. Each entry names its chain; each chain links
-- its own entries in `seq` order. Existing entries are chain 1.
ALTER TABLE audit_log ADD COLUMN chain INTEGER NOT NULL DEFAULT 1;
ALTER TABLE audit_head DROP CONSTRAINT audit_head_id_check;
ALTER TABLE audit_head ADD CONSTRAINT audit_head_chain CHECK (id BETWEEN 1 AND 16);
INSERT INTO audit_head (id, hash)
SELECT g, 'genesis' FROM generate_series(2, 16) AS g;
CREATE INDEX audit_log_chain ON audit_log (chain, seq);
