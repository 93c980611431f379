-- Workers connecting to and disconnecting from this master, with the time: the events
-- 0.8's waterfall shows, with `show_events=true`, in the columns of the builders a worker
-- serves. A row is written with the worker's `connected_masterid` (`db/events.rs`).
CREATE TABLE worker_events (
    id @ID@,
    workerid BIGINT NOT NULL,
    -- 'connect' or 'disconnect'
    event TEXT NOT NULL,
    -- seconds since the epoch
    at DOUBLE PRECISION NOT NULL
);

-- A worker's newest events, for the waterfall's time window.
CREATE INDEX worker_events_newest ON worker_events (workerid, at);
