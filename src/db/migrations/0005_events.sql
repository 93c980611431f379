-- Events other than builds, with the time, which 0.8's waterfall shows with
-- `show_events=true` (its default): workers connecting to and disconnecting from this
-- master, in the columns of the builders a worker serves, and a master starting or taking
-- a new config, in every column. A worker's row is written with its `connected_masterid`
-- (`db/events.rs`).
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

CREATE TABLE master_events (
    id @ID@,
    masterid BIGINT NOT NULL,
    -- 'started' or 'reconfig' (a reconfig that applied the new config completely)
    event TEXT NOT NULL,
    -- seconds since the epoch
    at DOUBLE PRECISION NOT NULL
);

-- The newest events, for the waterfall's time window.
CREATE INDEX master_events_newest ON master_events (at);
