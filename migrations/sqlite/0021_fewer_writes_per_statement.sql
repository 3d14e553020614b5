-- A consumer's claim now returns the positions it leased, and its acknowledgement
-- names them, so nothing looks deliveries up by lease owner any more: the index only
-- cost a write on every claim and acknowledgement.
DROP INDEX IF EXISTS outbox_delivery_owner;

-- An audit entry must link onto its chain's head as it stands: the appender may link
-- a batch onto the head it remembers instead of reading it, and a head that moved
-- meanwhile (another process appended) fails the batch here rather than fork the
-- chain. Each row of a multi-row insert is checked after the one before it advanced
-- the head (`audit_head_advance`, migration 0010). On PostgreSQL the head is read
-- and locked in the same transaction instead.
CREATE TRIGGER audit_link_checked BEFORE INSERT ON audit_log
WHEN NEW.prev_hash IS NOT (SELECT hash FROM audit_head WHERE id = NEW.chain)
BEGIN
    SELECT RAISE(ABORT, 'audit entry does not link onto its chain head');
END;

-- Notices whose dispatcher's lease ran out, in the order the claim takes them back,
-- so a claim does not visit every notice ever leased.
CREATE INDEX notice_lease_expiry ON notice (lease_until) WHERE state = 'sending';
