-- Field reports: each event's place in the report's life (created is 0). The first event
-- stored with a given (report, seq) wins, as on the topic: a replay or a race's loser is
-- skipped by this key.
ALTER TABLE report_events ADD COLUMN seq integer NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX report_events_seq ON report_events (report, seq);

-- Photos uploaded with reports, metadata (EXIF, GPS) stripped before they get here.
CREATE TABLE report_media (
    id            text        PRIMARY KEY,
    content_type  text        NOT NULL,
    bytes         bytea       NOT NULL,
    sha256        text        NOT NULL,
    created       timestamptz NOT NULL DEFAULT now()
);
