-- A consumer's claim now returns the positions it leased, and its acknowledgement
-- names them, so nothing looks deliveries up by lease owner any more: the index only
-- cost a write on every claim and acknowledgement.
DROP INDEX IF EXISTS outbox_delivery_owner;
