-- Submitted oncology treatment plans, each tied to the precertification case that
-- covers its lines (SQLite).

CREATE TABLE oncology_plan (
    id                TEXT PRIMARY KEY,
    -- treating provider NPI and the client's request id, for idempotent submission
    request_key       TEXT NOT NULL UNIQUE,
    member_id         TEXT NOT NULL,
    treating_npi      TEXT NOT NULL,
    precert_case_id   TEXT NOT NULL REFERENCES precert_case (id),
    replaces_plan_id  TEXT,
    submitted_at      TEXT NOT NULL,
    doc               TEXT NOT NULL
);
CREATE INDEX oncology_plan_member ON oncology_plan (member_id, submitted_at);
CREATE INDEX oncology_plan_case ON oncology_plan (precert_case_id);
