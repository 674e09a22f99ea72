-- The task that asks the carrier owns an outbound call's outcome. `calls.placement` says
-- where that stands: `pending` while the carrier is asked, `placed` once it gave the call a
-- SID, `refused` when it refused, `unknown` after a timeout until status callbacks or a
-- carrier lookup tell, `not_found` when the carrier had no such call after the grace period.
-- `idempotency_keys.call_id` is the call a key's request created: a key whose request may
-- have reached the carrier is never released, only completed with the real outcome.

ALTER TABLE calls ADD COLUMN placement TEXT;
ALTER TABLE idempotency_keys ADD COLUMN call_id TEXT;
