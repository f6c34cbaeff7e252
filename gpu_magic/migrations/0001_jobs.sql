-- 0001: one row per job. request_json holds GPUJobRequest.model_dump_json();
-- datetimes are ISO-8601 UTC text with microseconds, so text order is time order.
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    name         TEXT,
    cluster      TEXT NOT NULL,
    status       TEXT NOT NULL,
    reason       TEXT,
    scheduler_id TEXT,
    remote_dir   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    submitted_at TEXT,
    started_at   TEXT,
    ended_at     TEXT,
    exit_code    INTEGER,
    error        TEXT,
    request_json TEXT NOT NULL
);

CREATE INDEX jobs_name ON jobs (name);
CREATE INDEX jobs_status ON jobs (status);
CREATE INDEX jobs_cluster ON jobs (cluster);
CREATE INDEX jobs_created_at ON jobs (created_at);
