-- FHIR backend-service clients (SMART backend services) and the client assertions
-- they have used, so that a replayed assertion is refused by every replica (PostgreSQL).

CREATE TABLE fhir_client (
    client_id      TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    -- the provider the client acts for: its tokens name this NPI
    npi            TEXT NOT NULL,
    -- the client's public keys, a JSON Web Key Set
    jwks           TEXT NOT NULL,
    -- the scopes the client may be granted, space-separated
    scopes         TEXT NOT NULL,
    active         BOOLEAN NOT NULL,
    registered_at  TIMESTAMPTZ NOT NULL,
    registered_by  TEXT NOT NULL
);

CREATE TABLE fhir_client_assertion (
    client_id   TEXT NOT NULL,
    jti         TEXT NOT NULL,
    -- past this instant the assertion is refused as expired, so the row may go
    expires_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX fhir_client_assertion_expiry ON fhir_client_assertion (expires_at);
