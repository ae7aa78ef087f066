CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    workload VARCHAR,
    workload_yaml VARCHAR,
    seed BIGINT,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    status VARCHAR,
    host VARCHAR,
    versions JSON,
    git_commit VARCHAR,
    network JSON,
    thresholds_passed BOOLEAN
);
