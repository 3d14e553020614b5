-- Remote expert second opinion: requests (the workflow aggregate as a JSON document
-- with the columns lists, watchers and matching need) and their secure messages
-- (PostgreSQL). Uploaded files live in the object store; their metadata is in the
-- request document.

CREATE TABLE secondopinion_request (
    id              TEXT PRIMARY KEY,
    member_id       TEXT NOT NULL,
    status          TEXT NOT NULL,
    diagnosis_group TEXT NOT NULL,
    -- the lead physician's NPI once assigned
    physician_npi   TEXT,
    coordinator_id  TEXT,
    received_at     TIMESTAMPTZ NOT NULL,
    due_at          TIMESTAMPTZ,
    -- true while the opinion is not published
    awaiting_opinion BOOLEAN NOT NULL,
    doc             JSONB NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX secondopinion_request_member ON secondopinion_request (member_id, received_at);
CREATE INDEX secondopinion_request_physician ON secondopinion_request (physician_npi, status);
CREATE INDEX secondopinion_request_status ON secondopinion_request (status, received_at);
CREATE INDEX secondopinion_request_due ON secondopinion_request (awaiting_opinion, due_at);

CREATE TABLE secondopinion_message (
    id          TEXT PRIMARY KEY,
    request_id  TEXT NOT NULL REFERENCES secondopinion_request (id),
    author_role TEXT NOT NULL,
    author_id   TEXT NOT NULL,
    body        TEXT NOT NULL,
    sent_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX secondopinion_message_request ON secondopinion_message (request_id, sent_at, id);
