-- Precertification cases, the decisions that feed gold carding and metrics, gold-card
-- status, and rule-list versions activated by admins (SQLite).

CREATE TABLE precert_case (
    id              TEXT PRIMARY KEY,
    -- requesting provider NPI and the client's request id: a retried submission finds
    -- the case it already made.
    request_key     TEXT NOT NULL UNIQUE,
    member_id       TEXT NOT NULL,
    requesting_npi  TEXT NOT NULL,
    servicing_npi   TEXT NOT NULL,
    status          TEXT NOT NULL,
    urgency         TEXT NOT NULL,
    queue           TEXT NOT NULL,
    reviewer_id     TEXT,
    received_at     TEXT NOT NULL,
    due_at          TEXT NOT NULL,
    decided_at      TEXT,
    doc             TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX precert_case_member ON precert_case (member_id, received_at);
CREATE INDEX precert_case_requesting ON precert_case (requesting_npi, received_at);
CREATE INDEX precert_case_servicing ON precert_case (servicing_npi, received_at);
CREATE INDEX precert_case_queue ON precert_case (queue, urgency, due_at);
CREATE INDEX precert_case_received ON precert_case (received_at);

CREATE TABLE precert_gold_card (
    npi           TEXT NOT NULL,
    category      TEXT NOT NULL,
    exempt        BOOLEAN NOT NULL,
    requests      INTEGER NOT NULL,
    approvals     INTEGER NOT NULL,
    evaluated_at  TEXT NOT NULL,
    window_start  TEXT NOT NULL,
    -- the exemption in force (JSON), empty when not exempt
    exemption     TEXT NOT NULL,
    change        TEXT NOT NULL,
    PRIMARY KEY (npi, category)
);

CREATE TABLE precert_rule_list (
    list_id         TEXT NOT NULL,
    version         TEXT NOT NULL,
    effective_from  TEXT NOT NULL,
    source_name     TEXT NOT NULL,
    source          TEXT NOT NULL,
    activated_by    TEXT NOT NULL,
    activated_at    TEXT NOT NULL,
    PRIMARY KEY (list_id, version)
);
