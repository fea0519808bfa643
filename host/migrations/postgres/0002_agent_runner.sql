-- Who runs an agent, and so how the control plane may stop it: 'ironhost' (`ironhost start`:
-- SIGTERM to its process) or 'python-sdk' (an agent the Python SDK opened inside a program,
-- which SIGTERM would end whole: only the program itself, or the control plane it serves, can
-- stop it).
ALTER TABLE agents ADD COLUMN runner TEXT NOT NULL DEFAULT 'ironhost';
