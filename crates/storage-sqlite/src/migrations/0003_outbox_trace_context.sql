-- The W3C trace context (`traceparent`) of the call that wrote each event,
-- so that its consumer continues the order's trace. NULL when the call was
-- not traced (no exporter), which is the common case and costs nothing.
ALTER TABLE outbox ADD COLUMN trace_parent TEXT;
