-- The audit log becomes several hash chains instead of one, so concurrent writers lock
-- different heads (on PostgreSQL) and commit together. Each entry names its chain;
-- each chain links its own entries in `seq` order. Existing entries are chain 1.
ALTER TABLE audit_log ADD COLUMN chain INTEGER NOT NULL DEFAULT 1;
CREATE TABLE audit_head_chains (
    id    INTEGER PRIMARY KEY CHECK (id BETWEEN 1 AND 16),
    hash  TEXT NOT NULL
);
INSERT INTO audit_head_chains (id, hash) SELECT id, hash FROM audit_head;
DROP TABLE audit_head;
ALTER TABLE audit_head_chains RENAME TO audit_head;
WITH RECURSIVE g(n) AS (SELECT 2 UNION ALL SELECT n + 1 FROM g WHERE n < 16)
INSERT INTO audit_head (id, hash) SELECT n, 'genesis' FROM g;
CREATE INDEX audit_log_chain ON audit_log (chain, seq);
