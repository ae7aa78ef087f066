-- One row per run of a point of a suite (see suites.sql).
CREATE TABLE IF NOT EXISTS suite_runs (
    suite_id VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    point VARCHAR NOT NULL,
    fingerprint VARCHAR NOT NULL,
    axes JSON NOT NULL,
    on_axes JSON NOT NULL,
    recorded_at TIMESTAMP,
    load_avg DOUBLE
);
