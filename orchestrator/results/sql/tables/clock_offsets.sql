CREATE TABLE IF NOT EXISTS clock_offsets (
    run_id VARCHAR NOT NULL,
    backend VARCHAR NOT NULL,
    repetition INTEGER NOT NULL,
    process INTEGER NOT NULL,
    stage VARCHAR NOT NULL,
    worker_ns BIGINT,
    offset_ns BIGINT NOT NULL,
    uncertainty_ns BIGINT NOT NULL,
    round_trip_ns BIGINT,
    round_trips INTEGER,
    node VARCHAR,
    host VARCHAR
);
