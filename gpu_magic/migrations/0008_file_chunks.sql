-- 0008: the content-defined chunk lists of large shipped files, and the sha256 a file had the
-- time before (``previous``), so an edited 1 GB file sends only the chunks that version lacks,
-- building on the copy of it the host's cache holds. A list is kept while a row names it.
ALTER TABLE file_hashes ADD COLUMN previous TEXT;
CREATE TABLE file_chunks (
    sha256 TEXT PRIMARY KEY,
    chunks BLOB NOT NULL
);
