CREATE TABLE IF NOT EXISTS events (
    run_id VARCHAR NOT NULL,
    backend VARCHAR,
    repetition INTEGER,
    process INTEGER NOT NULL,
    ts TIMESTAMP,
    ts_ns BIGINT,
    level VARCHAR,
    event VARCHAR,
    data JSON
);
