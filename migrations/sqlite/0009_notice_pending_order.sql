-- Pending notices in the order the dispatcher takes them, so a claim reads about as
-- many rows as it takes however many notices wait (before, every pending notice was
-- read and sorted on each claim). Failed and leased notices come from `notice_due`.
CREATE INDEX notice_pending_order ON notice (priority, created_at, id) WHERE state = 'pending';
