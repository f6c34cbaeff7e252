-- 0005: why a job failed, classified (``failures.Failure.to_dict`` as JSON; NULL otherwise),
-- and which attempt of the job this is (a retried job keeps its id and folder: 1, 2, ...).
ALTER TABLE jobs ADD COLUMN failure_json TEXT;
ALTER TABLE jobs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
