-- Retention and archiving. The audit log and the outbox's events become tables
-- partitioned by month (on `at` and `occurred_at`), so months whose entries are
-- archived, or whose events are delivered, leave as whole partitions (detached and
-- dropped) instead of row by row. A partitioned table's keys must hold its partition
-- key: the primary keys become (seq, at) and (seq, occurred_at), and an event id is
-- unique with its time (a retried append of the same event still conflicts). A
-- delivery no longer references its event by foreign key (a key on `seq` alone cannot
-- exist any more): the fan-out trigger writes deliveries only for the events its
-- statement inserted, and retention removes an event only once it has no delivery.
-- Rows outside every month's partition go to a DEFAULT partition; creating a month's
-- partition moves its rows out of it (`carepath_month_partition`).

-- Creates `parent`'s partition for the month holding `month` (UTC), named
-- `<parent>_pYYYYMM`, unless it exists; rows of that month waiting in the DEFAULT
-- partition move into it. Safe to call from several processes at once.
CREATE FUNCTION carepath_month_partition(parent TEXT, key TEXT, month DATE)
RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    first_day DATE := date_trunc('month', month)::date;
    start_at TIMESTAMPTZ := first_day::timestamp AT TIME ZONE 'UTC';
    end_at TIMESTAMPTZ := (first_day + interval '1 month')::timestamp AT TIME ZONE 'UTC';
    part TEXT := parent || '_p' || to_char(first_day, 'YYYYMM');
    strays TEXT := parent || '_default';
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('carepath_month_partition'), hashtext(part));
    IF to_regclass(part) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS)', part, parent);
    IF to_regclass(strays) IS NOT NULL THEN
        EXECUTE format(
            'WITH moved AS (DELETE FROM %I WHERE %I >= $1 AND %I < $2 RETURNING *)
             INSERT INTO %I SELECT * FROM moved', strays, key, key, part)
            USING start_at, end_at;
    END IF;
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
        parent, part, start_at, end_at);
END;
$$;

-- The audit log.
ALTER TABLE audit_log RENAME TO audit_log_unpartitioned;
ALTER TABLE audit_log_unpartitioned RENAME CONSTRAINT audit_log_pkey TO audit_log_unpartitioned_pkey;
DROP TRIGGER audit_head_advance ON audit_log_unpartitioned;
CREATE TABLE audit_log (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY,
    at           TIMESTAMPTZ NOT NULL,
    subject      TEXT NOT NULL,
    role         TEXT NOT NULL,
    rpc          TEXT NOT NULL,
    record_kind  TEXT NOT NULL,
    record_id    TEXT NOT NULL,
    member_id    TEXT,
    outcome      TEXT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL,
    chain        INTEGER NOT NULL DEFAULT 1,
    repeats      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (seq, at)
) PARTITION BY RANGE (at);
CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT;
SELECT carepath_month_partition('audit_log', 'at', m::date)
FROM (SELECT min(at) AS lo, max(at) AS hi FROM audit_log_unpartitioned) r,
     generate_series(date_trunc('month', r.lo AT TIME ZONE 'UTC'),
                     date_trunc('month', r.hi AT TIME ZONE 'UTC'), interval '1 month') AS m;
INSERT INTO audit_log (seq, at, subject, role, rpc, record_kind, record_id, member_id, outcome,
        prev_hash, hash, chain, repeats)
    OVERRIDING SYSTEM VALUE
    SELECT seq, at, subject, role, rpc, record_kind, record_id, member_id, outcome,
        prev_hash, hash, chain, repeats
    FROM audit_log_unpartitioned ORDER BY seq;
SELECT setval(pg_get_serial_sequence('audit_log', 'seq'),
              (SELECT coalesce(max(seq), 0) + 1 FROM audit_log_unpartitioned), false);
DROP TABLE audit_log_unpartitioned;
CREATE INDEX audit_log_member ON audit_log (member_id, seq);
CREATE INDEX audit_log_subject ON audit_log (subject, seq);
CREATE INDEX audit_log_chain ON audit_log (chain, seq);
-- Where an archive export stops: the first entry at or after the cut-off time.
CREATE INDEX audit_log_at ON audit_log (at, seq);
CREATE TRIGGER audit_head_advance AFTER INSERT ON audit_log
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION audit_head_advance();

-- The outbox's events.
ALTER TABLE outbox_event RENAME TO outbox_event_unpartitioned;
ALTER TABLE outbox_event_unpartitioned RENAME CONSTRAINT outbox_event_pkey TO outbox_event_unpartitioned_pkey;
ALTER TABLE outbox_event_unpartitioned RENAME CONSTRAINT outbox_event_id_key TO outbox_event_unpartitioned_id_key;
ALTER TABLE outbox_delivery DROP CONSTRAINT outbox_delivery_seq_fkey;
DROP TRIGGER outbox_fan_out ON outbox_event_unpartitioned;
DROP TRIGGER outbox_notify ON outbox_event_unpartitioned;
CREATE TABLE outbox_event (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY,
    id              TEXT NOT NULL,
    kind            TEXT NOT NULL,
    aggregate_kind  TEXT NOT NULL,
    aggregate_id    TEXT NOT NULL,
    member_id       TEXT,
    occurred_at     TIMESTAMPTZ NOT NULL,
    payload         JSONB NOT NULL,
    trace_context   TEXT,
    PRIMARY KEY (seq, occurred_at)
) PARTITION BY RANGE (occurred_at);
CREATE TABLE outbox_event_default PARTITION OF outbox_event DEFAULT;
SELECT carepath_month_partition('outbox_event', 'occurred_at', m::date)
FROM (SELECT min(occurred_at) AS lo, max(occurred_at) AS hi FROM outbox_event_unpartitioned) r,
     generate_series(date_trunc('month', r.lo AT TIME ZONE 'UTC'),
                     date_trunc('month', r.hi AT TIME ZONE 'UTC'), interval '1 month') AS m;
INSERT INTO outbox_event (seq, id, kind, aggregate_kind, aggregate_id, member_id, occurred_at,
        payload, trace_context)
    OVERRIDING SYSTEM VALUE
    SELECT seq, id, kind, aggregate_kind, aggregate_id, member_id, occurred_at, payload,
        trace_context
    FROM outbox_event_unpartitioned ORDER BY seq;
SELECT setval(pg_get_serial_sequence('outbox_event', 'seq'),
              (SELECT coalesce(max(seq), 0) + 1 FROM outbox_event_unpartitioned), false);
DROP TABLE outbox_event_unpartitioned;
ALTER TABLE outbox_event ADD CONSTRAINT outbox_event_id_key UNIQUE (id, occurred_at);
CREATE INDEX outbox_event_aggregate ON outbox_event (aggregate_kind, aggregate_id, seq);
CREATE INDEX outbox_event_occurred ON outbox_event (occurred_at, seq);
CREATE TRIGGER outbox_fan_out AFTER INSERT ON outbox_event
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_fan_out();
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox_event
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- Retention finds finished rows by when they finished, and an event's deliveries by
-- its position.
CREATE INDEX outbox_delivery_seq ON outbox_delivery (seq);
CREATE INDEX outbox_delivery_done ON outbox_delivery (done_at) WHERE done_at IS NOT NULL;
CREATE INDEX outbox_delivery_dead ON outbox_delivery (dead_at) WHERE dead_at IS NOT NULL;
CREATE INDEX notice_attempt_finished ON notice_attempt (finished_at)
    WHERE finished_at IS NOT NULL;

-- The segments the audit log was exported in, in order: where the next export goes
-- on, and which entries may leave the database (those of a segment written and read
-- back). The archive itself is the record; this is the database's note of it.
CREATE TABLE audit_segment (
    number      BIGINT PRIMARY KEY,
    first_seq   BIGINT NOT NULL,
    last_seq    BIGINT NOT NULL,
    entries     BIGINT NOT NULL,
    hash        TEXT NOT NULL,
    object      TEXT NOT NULL,
    written_at  TIMESTAMPTZ NOT NULL
);
