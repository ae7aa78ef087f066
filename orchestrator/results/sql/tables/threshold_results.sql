CREATE TABLE IF NOT EXISTS threshold_results (run_id VARCHAR, backend VARCHAR,
    expression VARCHAR, measured DOUBLE, passed BOOLEAN, note VARCHAR);
