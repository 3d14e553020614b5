-- Bookkeeping that every append needs, done by the database inside the appending
-- statement instead of by a second statement from the application.

-- Fan-out: each new outbox event gets one delivery per consumer subscribed to a
-- prefix of its kind, in the same transaction (the outbox invariant).
CREATE FUNCTION outbox_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox_delivery (consumer, seq, available_at)
    SELECT DISTINCT consumer, NEW.seq, NEW.occurred_at FROM outbox_subscription
    WHERE substr(NEW.kind, 1, length(kind_prefix)) = kind_prefix;
    RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_fan_out AFTER INSERT ON outbox_event
    FOR EACH ROW EXECUTE FUNCTION outbox_fan_out();

-- Each audit chain's head follows its newest entry. Appenders still lock the head
-- row first (`SELECT ... FOR UPDATE`) so a chain's entries are linked one at a time.
CREATE FUNCTION audit_head_advance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE audit_head SET hash = NEW.hash WHERE id = NEW.chain;
    RETURN NULL;
END;
$$;
CREATE TRIGGER audit_head_advance AFTER INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_head_advance();
