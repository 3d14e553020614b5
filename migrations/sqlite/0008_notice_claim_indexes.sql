-- The dispatcher finds the notices it just claimed by lease owner, and the attempts
-- left open on them; without these both were scans that grew with every notice sent.
CREATE INDEX notice_lease_owner ON notice (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE INDEX notice_attempt_open ON notice_attempt (notice_id) WHERE finished_at IS NULL;
