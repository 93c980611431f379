-- The outbox: every notification a status target sends (a mail, later IRC lines, HTTP
-- pushes, Gerrit reviews) is written here before delivery, and marked sent only after the
-- peer accepted it, so a peer that is down or a restart delays it but never loses it.
-- state: 'pending' (waiting for next_attempt_at), 'sent', or 'dead' (gave up after the
-- outbox's time limit; last_error says why). A row is never deleted while pending or dead.
CREATE TABLE outbox (
    id @ID@,
    -- the status target's name, e.g. 'MailNotifier'
    reporter TEXT NOT NULL,
    -- what the transport does with it: 'mail', ...
    kind TEXT NOT NULL,
    -- what the message is about ('build:17', 'buildset:4'); one message per reporter and key
    dedup_key TEXT NOT NULL,
    -- one line for listings: a mail's subject
    summary TEXT NOT NULL,
    -- the transport's addressing, as JSON (a mail's envelope)
    meta TEXT NOT NULL,
    -- the rendered message, as the peer will receive it
    body @BLOB@ NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    sent_at DOUBLE PRECISION,
    last_error TEXT,
    UNIQUE (reporter, dedup_key)
);

CREATE INDEX outbox_due ON outbox (reporter, state, next_attempt_at);
