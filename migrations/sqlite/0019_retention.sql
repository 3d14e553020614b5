-- Retention and archiving (SQLite keeps one table each and removes rows in batches).
-- Retention finds finished rows by when they finished, an event's deliveries by its
-- position, and where an archive export stops (the first audit entry at or after the
-- cut-off time).
CREATE INDEX audit_log_at ON audit_log (at, seq);
CREATE INDEX outbox_delivery_seq ON outbox_delivery (seq);
CREATE INDEX outbox_delivery_done ON outbox_delivery (done_at) WHERE done_at IS NOT NULL;
CREATE INDEX outbox_delivery_dead ON outbox_delivery (dead_at) WHERE dead_at IS NOT NULL;
CREATE INDEX outbox_event_occurred ON outbox_event (occurred_at, seq);
CREATE INDEX notice_attempt_finished ON notice_attempt (finished_at)
    WHERE finished_at IS NOT NULL;

-- The segments the audit log was exported in, in order: where the next export goes
-- on, and which entries may leave the database (those of a segment written and read
-- back). The archive itself is the record; this is the database's note of it.
CREATE TABLE audit_segment (
    number      INTEGER PRIMARY KEY,
    first_seq   INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    entries     INTEGER NOT NULL,
    hash        TEXT NOT NULL,
    object      TEXT NOT NULL,
    written_at  TEXT NOT NULL
);
