-- Reads that grew with every row ever written, made to read about as many rows as
-- they return.

-- Pending notices in the order the dispatcher takes them (before, every pending
-- notice was read and sorted on each claim). Failed and leased notices come from
-- `notice_due`.
CREATE INDEX notice_pending_order ON notice (priority, created_at, id) WHERE state = 'pending';

-- A consumer reads back the events it just claimed by lease owner; before, that read
-- walked every delivery the consumer ever had. Acknowledged, released and dead
-- deliveries have no owner and leave the index.
CREATE INDEX outbox_delivery_owner ON outbox_delivery (lease_owner) WHERE lease_owner IS NOT NULL;

-- Gold-card evaluation and metrics page through cases by decision and by receipt time.
CREATE INDEX precert_case_decided ON precert_case (decided_at, id) WHERE decided_at IS NOT NULL;
DROP INDEX precert_case_received;
CREATE INDEX precert_case_received ON precert_case (received_at, id);
