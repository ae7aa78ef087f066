CREATE TABLE IF NOT EXISTS server_cost (
    run_id VARCHAR, backend VARCHAR, repetition INTEGER, ts_ns BIGINT, ts TIMESTAMP,
    server VARCHAR, metric VARCHAR, value DOUBLE);
