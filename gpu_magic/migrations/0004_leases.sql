-- 0004: which process polls which host (one at a time: the lease holder), and which jobs some
-- process shows (the holder follows those at the fast pace).
CREATE TABLE host_leases (
    cluster    TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at REAL NOT NULL
);

CREATE TABLE watched (
    job_id TEXT NOT NULL,
    holder TEXT NOT NULL,
    until  REAL NOT NULL,
    PRIMARY KEY (job_id, holder)
);
