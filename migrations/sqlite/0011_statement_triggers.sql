-- PostgreSQL moves its append triggers (migration 0010) to one run per statement and
-- stops compressing case documents. SQLite has only row triggers and compresses
-- nothing, so nothing changes here; the file keeps both backends' versions in step.
SELECT 1;
