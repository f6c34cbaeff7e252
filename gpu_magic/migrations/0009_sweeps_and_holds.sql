-- 0009: sweep members (``%%gpu_submit --sweep``): which sweep a job belongs to (NULL: none) and
-- its place in it (``models.SweepMember`` as JSON: index, size, parameters, the sweep's name);
-- and held jobs (``--after``, ``--at``): uploaded, waiting (``pending``) until the jobs they
-- depend on ended and their start time came, before they join the slot queue.
ALTER TABLE jobs ADD COLUMN sweep_id TEXT;
ALTER TABLE jobs ADD COLUMN sweep_json TEXT;
CREATE INDEX jobs_by_sweep ON jobs (sweep_id) WHERE sweep_id IS NOT NULL;
ALTER TABLE jobs ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
