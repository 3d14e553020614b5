-- Reads that must not grow with years of history.

-- The review queue in the order it is read: urgent before routine, then by due time
-- and id, over the cases waiting for a clinician only. Before, each page read every
-- case in the queue and sorted them.
CREATE INDEX precert_case_review_order
    ON precert_case ((CASE urgency WHEN 'urgent' THEN 0 ELSE 1 END), due_at, id)
    WHERE queue = 'review';

-- A provider's cases in the order its list reads them (newest first, then by id), so
-- each of the two halves of the list (cases it requested, cases it services) is read
-- from its index in order and stops after a page. Without `id` every case of a busy
-- provider was read and sorted for each page.
DROP INDEX precert_case_requesting;
CREATE INDEX precert_case_requesting ON precert_case (requesting_npi, received_at, id);
DROP INDEX precert_case_servicing;
CREATE INDEX precert_case_servicing ON precert_case (servicing_npi, received_at, id);
