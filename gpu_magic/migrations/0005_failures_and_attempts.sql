-- 0005: why a job failed, classified (``failures.Failure.to_dict`` as JSON; NULL otherwise),
-- which attempt of the job this is (a retried job keeps its id and folder: 1, 2, ...), and since
-- when an uploaded job waits for a free slot (max_concurrent_jobs; NULL: it does not wait).
ALTER TABLE jobs ADD COLUMN failure_json TEXT;
ALTER TABLE jobs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE jobs ADD COLUMN ready_at TEXT;
