-- Reads that must not grow with years of history.

-- The review queue in the order it is read: urgent before routine, then by due time
-- and id, over the cases waiting for a clinician only. Before, each page read every
-- case in the queue through `precert_case_queue` and sorted them (3,504 rows for a
-- first page of 50 with 100,000 cases kept).
CREATE INDEX precert_case_review_order
    ON precert_case ((CASE urgency WHEN 'urgent' THEN 0 ELSE 1 END), due_at, id)
    WHERE queue = 'review';
