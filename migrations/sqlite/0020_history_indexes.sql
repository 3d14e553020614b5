-- Reads that must not grow with years of history.

-- The review queue in the order it is read: urgent before routine, then by due time
-- and id, over the cases waiting for a clinician only. Before, each page read every
-- case in the queue and sorted them.
CREATE INDEX precert_case_review_order
    ON precert_case ((CASE urgency WHEN 'urgent' THEN 0 ELSE 1 END), due_at, id)
    WHERE queue = 'review';
