-- Directory, transactional outbox and audit log (PostgreSQL).
-- Timestamps are timestamptz; JSON documents are jsonb.

CREATE TABLE plan (
    id          TEXT PRIMARY KEY,
    doc         JSONB NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE member (
    id             TEXT PRIMARY KEY,
    plan_id        TEXT NOT NULL REFERENCES plan (id),
    subscriber_id  TEXT,
    doc            JSONB NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX member_plan ON member (plan_id, id);
CREATE INDEX member_subscriber ON member (subscriber_id, id);

CREATE TABLE provider (
    npi         TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    specialty   TEXT NOT NULL,
    country     TEXT NOT NULL,
    doc         JSONB NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX provider_specialty ON provider (specialty, npi);

CREATE TABLE provider_network (
    npi      TEXT NOT NULL REFERENCES provider (npi) ON DELETE CASCADE,
    plan_id  TEXT NOT NULL,
    PRIMARY KEY (npi, plan_id)
);

CREATE TABLE provider_language (
    npi       TEXT NOT NULL REFERENCES provider (npi) ON DELETE CASCADE,
    language  TEXT NOT NULL,
    PRIMARY KEY (npi, language)
);

CREATE TABLE staff (
    id          TEXT PRIMARY KEY,
    role        TEXT NOT NULL,
    specialty   TEXT NOT NULL,
    doc         JSONB NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE outbox_event (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    aggregate_kind  TEXT NOT NULL,
    aggregate_id    TEXT NOT NULL,
    member_id       TEXT,
    occurred_at     TIMESTAMPTZ NOT NULL,
    payload         JSONB NOT NULL
);
CREATE INDEX outbox_event_aggregate ON outbox_event (aggregate_kind, aggregate_id, seq);

CREATE TABLE outbox_subscription (
    consumer     TEXT NOT NULL,
    kind_prefix  TEXT NOT NULL,
    PRIMARY KEY (consumer, kind_prefix)
);

CREATE TABLE outbox_delivery (
    consumer      TEXT NOT NULL,
    seq           BIGINT NOT NULL REFERENCES outbox_event (seq),
    attempts      INTEGER NOT NULL DEFAULT 0,
    available_at  TIMESTAMPTZ NOT NULL,
    lease_owner   TEXT,
    lease_until   TIMESTAMPTZ,
    done_at       TIMESTAMPTZ,
    dead_at       TIMESTAMPTZ,
    last_error    TEXT,
    PRIMARY KEY (consumer, seq)
);
CREATE INDEX outbox_delivery_pending ON outbox_delivery (consumer, seq)
    WHERE done_at IS NULL AND dead_at IS NULL;

CREATE TABLE audit_log (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           TIMESTAMPTZ NOT NULL,
    subject      TEXT NOT NULL,
    role         TEXT NOT NULL,
    rpc          TEXT NOT NULL,
    record_kind  TEXT NOT NULL,
    record_id    TEXT NOT NULL,
    member_id    TEXT,
    outcome      TEXT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
);
CREATE INDEX audit_log_member ON audit_log (member_id, seq);
CREATE INDEX audit_log_subject ON audit_log (subject, seq);

-- One row holding the hash of the newest audit entry, locked by every append so the
-- chain stays linear under concurrent writers.
CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    hash  TEXT NOT NULL
);
INSERT INTO audit_head (id, hash) VALUES (1, 'genesis');
