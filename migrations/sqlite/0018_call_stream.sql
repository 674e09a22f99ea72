-- The per-call live stream (issue 15): every change of a function call (its start, its
-- result) takes the next revision of its call, `calls.function_call_rev`, bumped in the
-- same transaction as the change (the call row's lock orders concurrent writers of one
-- call by commit), so a reader of `function_calls.rev > n` resumes exactly after the last
-- change it saw. Rows written before this migration are numbered per call in start order.

ALTER TABLE calls ADD COLUMN function_call_rev BIGINT NOT NULL DEFAULT 0;
ALTER TABLE function_calls ADD COLUMN rev BIGINT NOT NULL DEFAULT 0;

UPDATE function_calls SET rev = (
    SELECT COUNT(*) FROM function_calls p
    WHERE p.call_id = function_calls.call_id
      AND (p.started_at < function_calls.started_at
           OR (p.started_at = function_calls.started_at AND p.id <= function_calls.id))
);
UPDATE calls SET function_call_rev = (SELECT COUNT(*) FROM function_calls f WHERE f.call_id = calls.id);

CREATE INDEX function_calls_call_rev ON function_calls (call_id, rev);
