-- Leaders' indicators: every event of ioc.indicators (values with their corrections,
-- targets, explanations asked for and given), keyed by the event's id so that the sink
-- reading a message again adds nothing. A plain table on both layouts: it grows by a few
-- thousand rows a month, and is read per indicator and unit, never bucketed.
CREATE TABLE indicator_events (
    event_id   uuid             PRIMARY KEY,
    ts         timestamptz      NOT NULL,
    kind       text             NOT NULL,
    indicator  text             NOT NULL,
    unit       text             NOT NULL,
    period     text             NOT NULL,
    value      double precision,
    source     text             NOT NULL,
    data       jsonb            NOT NULL
);
CREATE INDEX indicator_events_series ON indicator_events (indicator, unit, ts);
