-- Writes of many rows at once (new cases are written in batches) pay the bookkeeping
-- of migration 0010 once per statement instead of once per row.

-- Fan-out of all the events one statement inserted, in one insert.
CREATE OR REPLACE FUNCTION outbox_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox_delivery (consumer, seq, available_at)
    SELECT DISTINCT s.consumer, e.seq, e.occurred_at
    FROM new_events e JOIN outbox_subscription s
      ON substr(e.kind, 1, length(s.kind_prefix)) = s.kind_prefix;
    RETURN NULL;
END;
$$;
DROP TRIGGER outbox_fan_out ON outbox_event;
CREATE TRIGGER outbox_fan_out AFTER INSERT ON outbox_event
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_fan_out();

-- Each chain's head moves once per statement, to the newest entry it appended there.
CREATE OR REPLACE FUNCTION audit_head_advance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE audit_head h SET hash = newest.hash
    FROM (SELECT DISTINCT ON (chain) chain, hash FROM new_entries ORDER BY chain, seq DESC) newest
    WHERE h.id = newest.chain;
    RETURN NULL;
END;
$$;
DROP TRIGGER audit_head_advance ON audit_log;
CREATE TRIGGER audit_head_advance AFTER INSERT ON audit_log
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION audit_head_advance();

-- A case document (a few kilobytes as JSON) stays in its row uncompressed up to a
-- full page, instead of being compressed on every write past about 2 kB.
ALTER TABLE precert_case SET (toast_tuple_target = 8160);
