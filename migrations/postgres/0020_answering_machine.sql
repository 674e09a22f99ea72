-- Answering-machine actions on outbound calls (issue 16): what to do when the async AMD
-- result says a machine answered (`voicemail`, `hangup`, `continue`), the detection timeout
-- asked of the carrier, and what became of the call (`conversation`, `voicemail_left`,
-- `hung_up_on_machine`; `no_result` is derived when an action was set and nothing came).
-- The agent version's voicemail message is what `voicemail` leaves on a machine.

ALTER TABLE calls ADD COLUMN amd_action TEXT;
ALTER TABLE calls ADD COLUMN amd_timeout_seconds BIGINT;
ALTER TABLE calls ADD COLUMN machine_outcome TEXT;
ALTER TABLE agent_versions ADD COLUMN voicemail_message TEXT;
