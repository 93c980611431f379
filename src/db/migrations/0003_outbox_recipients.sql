-- Per-recipient outcomes of an outbox message that a peer took for some of its recipients
-- and not for others (an SMTP relay answering 450 or 550 to one RCPT).
-- retry_recipients: JSON list of the recipients the next attempt goes to, and only they;
--   NULL while no attempt was partial (every recipient the message names).
-- refused_recipients: JSON list of {"recipient": ..., "answer": ...} refused for good,
--   never retried; NULL when none was.
ALTER TABLE outbox ADD COLUMN retry_recipients TEXT;
ALTER TABLE outbox ADD COLUMN refused_recipients TEXT;
