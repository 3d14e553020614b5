-- The claimed queues (notices, outbox deliveries, delivery attempts) change state at
-- the rate of the traffic, and every change leaves a dead row version whose entries
-- stay in the claim indexes until a vacuum removes them. The claims read those
-- indexes from their oldest end, where the dead entries gather, so each claim walks
-- every entry left since the last vacuum. By default autovacuum waits until a fifth
-- of a table is dead: on a table of millions of rows, hours of claims walking past
-- hundreds of thousands of dead entries. Vacuum these tables after a fixed number of
-- changes instead.
ALTER TABLE notice SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 2000);
ALTER TABLE notice_attempt SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 2000);
ALTER TABLE outbox_delivery SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 2000);

-- Retention looks an event's deliveries up by its position, always by equality. As a
-- btree that index also offered the deliveries in position order, and between two
-- vacuums the claim's partial index (`outbox_delivery_pending`) holds many pages of
-- dead entries for few live ones: the planner then judged it cheaper to walk every
-- delivery ever made in position order, filtering for one consumer's pending ones,
-- and each claim read hundreds of thousands of rows. A hash index answers equality
-- and offers no order.
DROP INDEX outbox_delivery_seq;
CREATE INDEX outbox_delivery_seq ON outbox_delivery USING hash (seq);
