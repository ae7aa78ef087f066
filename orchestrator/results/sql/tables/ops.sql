CREATE TABLE IF NOT EXISTS ops (
    run_id VARCHAR NOT NULL,
    backend VARCHAR NOT NULL,
    repetition INTEGER NOT NULL,
    process INTEGER NOT NULL,
    task INTEGER NOT NULL,
    op VARCHAR NOT NULL,
    key VARCHAR,
    start_ns BIGINT NOT NULL,
    latency_ns BIGINT NOT NULL,
    hit BOOLEAN,
    local BOOLEAN,
    version VARCHAR,
    server_version BIGINT,
    error VARCHAR
);
