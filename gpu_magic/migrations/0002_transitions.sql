-- 0002: the history of every job's status, one row per change.
CREATE TABLE transitions (
    seq    INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    at     TEXT NOT NULL,
    reason TEXT
);

CREATE INDEX transitions_job ON transitions (job_id, seq);

-- Jobs stored before this migration get one transition: their current status, dated by the
-- latest timestamp the job has.
INSERT INTO transitions (job_id, status, at, reason)
SELECT id, status, COALESCE(ended_at, started_at, submitted_at, created_at),
       COALESCE(reason, 'recorded when the job store was upgraded')
FROM jobs
ORDER BY created_at, rowid;
