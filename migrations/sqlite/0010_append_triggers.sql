-- Bookkeeping that every append needs, done by the database inside the appending
-- statement instead of by a second statement from the application.

-- Fan-out: each new outbox event gets one delivery per consumer subscribed to a
-- prefix of its kind, in the same transaction (the outbox invariant).
CREATE TRIGGER outbox_fan_out AFTER INSERT ON outbox_event
BEGIN
    INSERT INTO outbox_delivery (consumer, seq, available_at)
    SELECT DISTINCT consumer, NEW.seq, NEW.occurred_at FROM outbox_subscription
    WHERE substr(NEW.kind, 1, length(kind_prefix)) = kind_prefix;
END;

-- Each audit chain's head follows its newest entry.
CREATE TRIGGER audit_head_advance AFTER INSERT ON audit_log
BEGIN
    UPDATE audit_head SET hash = NEW.hash WHERE id = NEW.chain;
END;
