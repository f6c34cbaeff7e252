-- 0007: the sha256 of local files that were shipped, so an unchanged file is not read again to
-- learn it (a 100 MB dataset resubmitted ten times is hashed once). A row holds only while
-- the file's size, mtime and inode are what they were when it was hashed.
CREATE TABLE file_hashes (
    path     TEXT PRIMARY KEY,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode    INTEGER NOT NULL,
    sha256   TEXT NOT NULL
);
