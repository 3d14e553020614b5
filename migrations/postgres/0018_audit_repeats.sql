-- Repeated refusals: one entry stands for the refusals of one caller, operation and
-- record within a minute after the first (which has its own entry); `repeats` counts
-- them. 0 for every other entry.
ALTER TABLE audit_log ADD COLUMN repeats BIGINT NOT NULL DEFAULT 0;
