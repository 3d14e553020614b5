-- Notices: one row per notice an event called for, with its rendered content and its
-- delivery state, and one row per delivery attempt (SQLite).

CREATE TABLE notice (
    id                 TEXT PRIMARY KEY,
    -- derived from the event, recipient, channel and template: a redelivered event
    -- inserts nothing new.
    idempotency_key    TEXT NOT NULL UNIQUE,
    event_id           TEXT NOT NULL,
    event_kind         TEXT NOT NULL,
    rule_id            TEXT NOT NULL,
    rules_version      TEXT NOT NULL,
    recipient_id       TEXT NOT NULL,
    recipient_role     TEXT NOT NULL,
    recipient_name     TEXT NOT NULL,
    member_id          TEXT,
    -- email | fax | mail | portal, or none for a recipient no channel reaches
    channel            TEXT NOT NULL,
    destination        TEXT NOT NULL,
    template_id        TEXT NOT NULL,
    template_version   INTEGER NOT NULL,
    language           TEXT NOT NULL,
    subject            TEXT NOT NULL,
    -- 0 immediate, 1 normal
    priority           INTEGER NOT NULL,
    -- the planned notice (JSON), kept so it can be rendered again
    planned            TEXT,
    -- the rendered notice (JSON) the channel sends; null when rendering failed
    rendered           TEXT,
    -- pending | sending | sent | failed | dead
    state              TEXT NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    -- attempts since the notice was created or last resent, for the retry policy
    tries              INTEGER NOT NULL DEFAULT 0,
    next_attempt_at    TEXT,
    lease_owner        TEXT,
    lease_until        TEXT,
    sent_at            TEXT,
    receipt_reference  TEXT NOT NULL DEFAULT '',
    receipt_detail     TEXT NOT NULL DEFAULT '',
    last_error         TEXT NOT NULL DEFAULT '',
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    -- one notice per rule and recipient of an event, whatever channel it took
    UNIQUE (event_id, rule_id, recipient_id)
);
CREATE INDEX notice_recipient ON notice (recipient_id, created_at, id);
CREATE INDEX notice_due ON notice (state, next_attempt_at);
CREATE INDEX notice_created ON notice (created_at, id);
CREATE INDEX notice_member ON notice (member_id, created_at);

CREATE TABLE notice_attempt (
    notice_id    TEXT NOT NULL REFERENCES notice (id),
    number       INTEGER NOT NULL,
    started_at   TEXT NOT NULL,
    finished_at  TEXT,
    -- sending | sent | failed | dead | abandoned (the worker died; lease expired)
    outcome      TEXT NOT NULL,
    detail       TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (notice_id, number)
);

-- Subscribe the notice consumer now, so events committed before it first runs are
-- kept for it.
INSERT INTO outbox_subscription (consumer, kind_prefix) VALUES
    ('notify', 'precert.case.'),
    ('notify', 'secondopinion.'),
    ('notify', 'cases.interaction.')
ON CONFLICT DO NOTHING;
