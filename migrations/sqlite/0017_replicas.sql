-- Periodic jobs run on one process at a time, and each run is recorded (SQLite; one
-- process writes a SQLite file, but the same code runs on both backends).

-- Who runs a periodic job: the holder renews its lease while it lives; once the lease
-- has run out another process takes the job over.
CREATE TABLE job_lease (
    job         TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);

-- One row per run of a periodic job: the period it ran for (whole periods since the
-- Unix epoch), which process ran it and when. A period runs once.
CREATE TABLE job_run (
    job         TEXT NOT NULL,
    period      INTEGER NOT NULL,
    holder      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    PRIMARY KEY (job, period)
);
