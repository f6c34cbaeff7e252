-- 0003: every deletion made by a cleanup (dry runs excluded), remote job folders and local
-- results alike. No foreign key on job_id: the history outlives a job's own row.
CREATE TABLE deletions (
    seq      INTEGER PRIMARY KEY,
    at       TEXT NOT NULL,
    job_id   TEXT NOT NULL,
    cluster  TEXT NOT NULL,
    location TEXT NOT NULL CHECK (location IN ('remote', 'local')),
    path     TEXT NOT NULL,
    bytes    INTEGER,
    rule     TEXT NOT NULL,
    forced   INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX deletions_job ON deletions (job_id, location);
CREATE INDEX deletions_at ON deletions (at);
