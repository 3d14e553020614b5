-- Coverage assertions: what the plan told an ordering provider about one order
-- (coverage requirements discovery at ordering time), kept so that a later
-- precertification request can cite the assertion it follows and be linked to it.

CREATE TABLE coverage_assertion (
    id             TEXT PRIMARY KEY,
    member_id      TEXT NOT NULL,
    -- the practitioner who ordered: gold-card exemptions are theirs
    ordering_npi   TEXT NOT NULL,
    -- who asked (the audit subject) and through which operation
    subject        TEXT NOT NULL,
    operation      TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    -- the order as checked and the answer given: service, rule, list version,
    -- requirement, responsible party, documents, questions, exemption
    doc            TEXT NOT NULL
);
CREATE INDEX coverage_assertion_member ON coverage_assertion (member_id, created_at);
