-- Which provider API a call used (`chat`, `messages`, `responses`, `embeddings`,
-- `moderations`, `completions`, `count_tokens`), and why a refused or failed call ended: a
-- request the host refused before any policy ran (a path it does not route, a body it cannot
-- read, a part it may not pass) is a call record too.
ALTER TABLE calls ADD COLUMN api TEXT;
ALTER TABLE calls ADD COLUMN reason TEXT;
