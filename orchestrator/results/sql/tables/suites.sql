-- ``python -m orchestrator suite`` runs every point of a sweep as one run and tags it here.
-- ``suites``: one row per suite id (its file's text, the target its report judges by, its
-- axes with their values and base value, how it sweeps, the pairs its crossovers compare).
-- ``suite_runs``: one row per run of a point: the point's name (``latency_ms=0.5
-- read_share=0.9 instances=2``), the fingerprint of its workload (a point whose workload
-- changed is run again), every axis's value there, the axes whose sweep it lies on, and the
-- host's 1-minute load average when the run ended (how busy the machine was).
CREATE TABLE IF NOT EXISTS suites (
    suite_id VARCHAR PRIMARY KEY,
    name VARCHAR,
    suite_yaml VARCHAR,
    target VARCHAR,
    axes JSON,
    sweep VARCHAR,
    compare JSON,
    updated_at TIMESTAMP
);
