-- FHIR subscriptions (R4 Subscriptions Backport, rest-hook channel, PAS topic) and the
-- notifications owed to them, delivered at least once under a lease (PostgreSQL).

CREATE TABLE fhir_subscription (
    id                  TEXT PRIMARY KEY,
    -- the provider whose requests the subscription follows (its own NPI)
    owner_npi           TEXT NOT NULL,
    topic               TEXT NOT NULL,
    -- an absolute http(s) URL the notifications are POSTed to
    endpoint            TEXT NOT NULL,
    -- full-resource | id-only
    content             TEXT NOT NULL,
    -- one "Name: value" line sent with each notification
    header              TEXT,
    -- active | error (the last delivery failed) | off (ended)
    status              TEXT NOT NULL,
    -- events handed to the subscription so far; a notification carries its number
    events_since_start  BIGINT NOT NULL DEFAULT 0,
    last_error          TEXT,
    created_at          TIMESTAMPTZ NOT NULL,
    created_by          TEXT NOT NULL,
    ended_at            TIMESTAMPTZ
);
CREATE INDEX fhir_subscription_owner ON fhir_subscription (owner_npi, status);
CREATE INDEX fhir_subscription_owner_created ON fhir_subscription (owner_npi, created_at, id);

CREATE TABLE fhir_notification (
    id               TEXT PRIMARY KEY,
    subscription_id  TEXT NOT NULL REFERENCES fhir_subscription (id),
    -- the subscription's events_since_start once this event was counted
    event_number     BIGINT NOT NULL,
    -- the domain event that caused it: a redelivered event adds nothing
    source_event_id  TEXT NOT NULL,
    case_id          TEXT NOT NULL,
    event_kind       TEXT NOT NULL,
    occurred_at      TIMESTAMPTZ NOT NULL,
    -- pending | delivered | dead (gave up) | cancelled (the subscription ended)
    state            TEXT NOT NULL,
    -- failed attempts so far
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    lease_owner      TEXT,
    lease_until      TIMESTAMPTZ,
    last_error       TEXT,
    delivered_at     TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL,
    UNIQUE (subscription_id, source_event_id)
);
-- Pending notifications in the order deliveries claim them; delivered, dead and
-- cancelled ones leave the index.
CREATE INDEX fhir_notification_due ON fhir_notification (next_attempt_at, id) WHERE state = 'pending';
-- A delivery round reads back what it just claimed by lease owner.
CREATE INDEX fhir_notification_lease_owner ON fhir_notification (lease_owner) WHERE lease_owner IS NOT NULL;
-- The dead list, newest first.
CREATE INDEX fhir_notification_dead ON fhir_notification (created_at, id) WHERE state = 'dead';

-- Subscribe the feed now, so events committed before it first runs are kept for it.
INSERT INTO outbox_subscription (consumer, kind_prefix) VALUES
    ('fhir-subscriptions', 'precert.case.')
ON CONFLICT DO NOTHING;
