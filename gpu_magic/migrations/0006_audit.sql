-- 0006: the audit log's copy in the store (the JSONL file in the data dir is the other copy).
-- Each record is kept as its exact line, with its own hash; the chain (each line names the
-- hash of the line before) lets ``gpu-magic audit verify`` find a changed, removed or
-- reordered record in either copy. audit_jobs indexes records by the jobs they concern.
CREATE TABLE audit (
    seq     INTEGER PRIMARY KEY,
    at      TEXT NOT NULL,
    event   TEXT NOT NULL,
    cluster TEXT,
    line    TEXT NOT NULL,
    hash    TEXT NOT NULL
);

CREATE TABLE audit_jobs (
    job_id TEXT NOT NULL,
    seq    INTEGER NOT NULL REFERENCES audit (seq),
    PRIMARY KEY (job_id, seq)
);
