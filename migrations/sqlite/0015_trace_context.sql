-- Operations: the trace context each outbox event was appended under (a W3C
-- traceparent: trace and span ids, nothing about a member), so the work an event
-- causes later joins the trace of the call that caused it; null when traces are off.
-- And an index of the open precertification cases by status and due time, which the
-- metrics task counts every few seconds (cases open, cases past their due time)
-- without reading closed ones.

ALTER TABLE outbox_event ADD COLUMN trace_context TEXT;

CREATE INDEX precert_case_open ON precert_case (status, due_at) WHERE queue <> '';
