-- Nurse case management: cases (the aggregate as a JSON document plus the columns
-- lists and queues filter on), the referral keys that make automatic referrals
-- idempotent, and member ratings for the satisfaction report (PostgreSQL).

CREATE TABLE cm_case (
    id          TEXT PRIMARY KEY,
    member_id   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    phase       TEXT NOT NULL,
    -- NULL while in the unassigned queue.
    nurse_id    TEXT,
    opened_at   TIMESTAMPTZ NOT NULL,
    closed_at   TIMESTAMPTZ,
    doc         JSONB NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
-- At most one open case of a kind per member: a new referral is absorbed instead.
CREATE UNIQUE INDEX cm_case_open_kind ON cm_case (member_id, kind) WHERE closed_at IS NULL;
CREATE INDEX cm_case_member ON cm_case (member_id, opened_at);
CREATE INDEX cm_case_nurse ON cm_case (nurse_id, closed_at);
CREATE INDEX cm_case_opened ON cm_case (opened_at);

-- One row per referral that reached a case; an automatic referral is keyed by its
-- event id, so a redelivered event finds the case it already made.
CREATE TABLE cm_referral (
    referral_key  TEXT PRIMARY KEY,
    case_id       TEXT NOT NULL REFERENCES cm_case (id),
    received_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE cm_rating (
    case_id    TEXT PRIMARY KEY REFERENCES cm_case (id),
    member_id  TEXT NOT NULL,
    rating     INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
    rated_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX cm_rating_at ON cm_rating (rated_at);
