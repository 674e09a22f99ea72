-- Warm transfer (issue 16): a queue may hand its callers over warm (the caller waits in a
-- conference with hold audio while the operator hears a whispered summary and accepts or
-- declines), and a handoff records the warm transfer's state: the operator leg, the
-- conference, who accepted and when. `warm_state` moves only forward by conditional updates:
-- ringing → accepted | declined | unanswered | failed.

ALTER TABLE operator_queues ADD COLUMN transfer_mode TEXT NOT NULL DEFAULT 'cold'
    CHECK (transfer_mode IN ('cold', 'warm'));
ALTER TABLE operator_queues ADD COLUMN hold_music_url TEXT;

ALTER TABLE handoffs ADD COLUMN transfer_mode TEXT NOT NULL DEFAULT 'cold';
ALTER TABLE handoffs ADD COLUMN warm_state TEXT;
ALTER TABLE handoffs ADD COLUMN conference_name TEXT;
ALTER TABLE handoffs ADD COLUMN conference_sid TEXT;
ALTER TABLE handoffs ADD COLUMN operator_call_sid TEXT;
ALTER TABLE handoffs ADD COLUMN operator_number TEXT;
ALTER TABLE handoffs ADD COLUMN whispered_at BIGINT;
ALTER TABLE handoffs ADD COLUMN decided_at BIGINT;
ALTER TABLE handoffs ADD COLUMN operator_digits TEXT;
