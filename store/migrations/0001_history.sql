-- The IOC history schema, common to plain PostgreSQL and TimescaleDB. Objects that differ by
-- flavour (rollups or continuous aggregates, hypertables, policies) are ensured by the store
-- at start-up, after these migrations (store/src/pg.rs).

-- Sensor readings in canonical units; the natural key makes replays idempotent.
CREATE TABLE readings (
    station   text             NOT NULL,
    parameter text             NOT NULL,
    ts        timestamptz      NOT NULL,
    value     double precision NOT NULL,
    unit      text             NOT NULL,
    quality   text             NOT NULL DEFAULT 'good',
    PRIMARY KEY (station, parameter, ts)
);

-- Camera state transitions (issue: cameras).
CREATE TABLE camera_status (
    camera  text        NOT NULL,
    ts      timestamptz NOT NULL,
    state   text        NOT NULL,
    detail  jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (camera, ts, state)
);

-- Alert life events: raised, acknowledged, cleared, escalated.
CREATE TABLE alerts (
    alert   text        NOT NULL,
    ts      timestamptz NOT NULL,
    event   text        NOT NULL,
    entity  text        NOT NULL,
    detail  jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (alert, ts, event)
);

-- Field report events (the record of truth is the ioc.reports topic; this is its history).
CREATE TABLE report_events (
    report    text        NOT NULL,
    event_id  uuid        NOT NULL,
    ts        timestamptz NOT NULL,
    kind      text        NOT NULL,
    data      jsonb       NOT NULL,
    PRIMARY KEY (report, event_id)
);

-- The registry as last seen (stations, cameras, units, zones, agencies).
CREATE TABLE registry (
    entity   text        PRIMARY KEY,
    kind     text        NOT NULL,
    data     jsonb,
    updated  timestamptz NOT NULL,
    removed  boolean     NOT NULL DEFAULT false
);

-- Who looked at what (camera images, exports): append-only.
CREATE TABLE audit_log (
    id       bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts       timestamptz NOT NULL DEFAULT now(),
    subject  text        NOT NULL,
    role     text        NOT NULL,
    action   text        NOT NULL,
    target   text        NOT NULL,
    remote   text,
    detail   jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_ts ON audit_log (ts);

-- What the store set itself up as (flavour), so a database keeps the layout it was made with.
CREATE TABLE store_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
