-- A consumer's claim now returns the positions it leased, and its acknowledgement
-- names them, so nothing looks deliveries up by lease owner any more: the index only
-- cost a write on every claim and acknowledgement.
DROP INDEX IF EXISTS outbox_delivery_owner;

-- Notices whose dispatcher's lease ran out, in the order the claim takes them back,
-- so a claim does not visit every notice ever leased.
CREATE INDEX notice_lease_expiry ON notice (lease_until) WHERE state = 'sending';
