-- Several processes on one database: periodic jobs run on one of them at a time, and
-- a commit wakes the background work of every process.

-- Who runs a periodic job (the precertification sweeps, the record sweep): the
-- holder renews its lease while it lives; once the lease has run out another
-- process takes the job over.
CREATE TABLE job_lease (
    job         TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);

-- One row per run of a periodic job: the period it ran for (its start, in whole
-- periods since the Unix epoch), which process ran it and when. A period runs once.
CREATE TABLE job_run (
    job         TEXT NOT NULL,
    period      BIGINT NOT NULL,
    holder      TEXT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (job, period)
);

-- Wake-ups. Each statement that appends events or stores notices tells the
-- listeners of every process (LISTEN carepath_outbox / carepath_notice); the
-- notification leaves at commit, with the rows it announces. A second-opinion
-- request's changes name the request (carepath_opinion), so status watchers on other
-- processes re-read it. A connection that sets carepath.notify = off sends none (the
-- benchmark without notifications).
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('carepath.notify', true), '') = 'off' THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('carepath_outbox', '');
    PERFORM pg_notify('carepath_opinion', r.aggregate_id)
    FROM (SELECT DISTINCT aggregate_id FROM new_events
          WHERE aggregate_kind = 'secondopinion_request') r;
    RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox_event
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

CREATE FUNCTION notice_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('carepath.notify', true), '') = 'off' THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('carepath_notice', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER notice_notify AFTER INSERT ON notice
    FOR EACH STATEMENT EXECUTE FUNCTION notice_notify();
