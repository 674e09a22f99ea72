-- One owner for every outcome: the call's outcome and the moment it was completed (set
-- once, together with its `voice.call.completed` event), and the free-text detail of the
-- end reason (an AI error code, a panic message), kept apart from the bounded reason.

ALTER TABLE calls ADD COLUMN outcome TEXT;
ALTER TABLE calls ADD COLUMN end_detail TEXT;
ALTER TABLE calls ADD COLUMN completed_at BIGINT;
ALTER TABLE voice_sessions ADD COLUMN end_detail TEXT;
CREATE INDEX calls_open ON calls (tenant_id, completed_at);
