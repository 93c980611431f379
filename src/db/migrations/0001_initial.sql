-- The first schema: Buildbot's data model, one table per resource type of its data API.
-- Portable SQL for SQLite and PostgreSQL; `@ID@` becomes the dialect's auto-increment
-- primary key and `@BLOB@` its byte-string type (see `db::Dialect`). Times are seconds
-- since the epoch (DOUBLE PRECISION); JSON columns hold text; flags are 0/1 BIGINT.

CREATE TABLE masters (
    id @ID@,
    name TEXT NOT NULL UNIQUE,
    active BIGINT NOT NULL DEFAULT 0,
    last_active DOUBLE PRECISION NOT NULL,
    -- the outcome of the last start or reconfig, shown by /api/v2/masters
    last_reconfig TEXT
);

CREATE TABLE builders (
    id @ID@,
    name TEXT NOT NULL UNIQUE,
    description TEXT,
    -- JSON list of strings
    tags TEXT NOT NULL DEFAULT '[]',
    -- 1 while the running config defines it
    active BIGINT NOT NULL DEFAULT 1
);

CREATE TABLE workers (
    id @ID@,
    name TEXT NOT NULL UNIQUE,
    -- JSON object: the worker's info (admin, host, version, ...)
    info TEXT NOT NULL DEFAULT '{}',
    paused BIGINT NOT NULL DEFAULT 0,
    graceful BIGINT NOT NULL DEFAULT 0,
    -- the master it is connected to, NULL when disconnected
    connected_masterid BIGINT
);

CREATE TABLE builder_workers (
    builderid BIGINT NOT NULL,
    workerid BIGINT NOT NULL,
    PRIMARY KEY (builderid, workerid)
);

CREATE TABLE schedulers (
    id @ID@,
    name TEXT NOT NULL UNIQUE,
    enabled BIGINT NOT NULL DEFAULT 1,
    -- the master running it, NULL when no config defines it
    masterid BIGINT
);

CREATE TABLE changesources (
    id @ID@,
    name TEXT NOT NULL UNIQUE,
    masterid BIGINT
);

CREATE TABLE patches (
    id @ID@,
    patchlevel BIGINT NOT NULL,
    patch @BLOB@ NOT NULL,
    author TEXT,
    comment TEXT,
    subdir TEXT
);

CREATE TABLE sourcestamps (
    id @ID@,
    branch TEXT,
    revision TEXT,
    repository TEXT NOT NULL DEFAULT '',
    codebase TEXT NOT NULL DEFAULT '',
    project TEXT NOT NULL DEFAULT '',
    patchid BIGINT,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE changes (
    changeid @ID@,
    author TEXT NOT NULL,
    committer TEXT,
    comments TEXT NOT NULL DEFAULT '',
    branch TEXT,
    revision TEXT,
    revlink TEXT,
    when_timestamp DOUBLE PRECISION NOT NULL,
    category TEXT,
    repository TEXT NOT NULL DEFAULT '',
    codebase TEXT NOT NULL DEFAULT '',
    project TEXT NOT NULL DEFAULT '',
    -- JSON list of file names
    files TEXT NOT NULL DEFAULT '[]',
    -- JSON object: name -> [value, source]
    properties TEXT NOT NULL DEFAULT '{}',
    sourcestampid BIGINT NOT NULL,
    parent_changeid BIGINT
);
CREATE INDEX changes_sourcestampid ON changes (sourcestampid);

-- Changes a scheduler has classified but not yet built (treeStableTimer); kept so the
-- timer survives a restart.
CREATE TABLE scheduler_changes (
    schedulerid BIGINT NOT NULL,
    changeid BIGINT NOT NULL,
    important BIGINT NOT NULL,
    PRIMARY KEY (schedulerid, changeid)
);

CREATE TABLE buildsets (
    id @ID@,
    external_idstring TEXT,
    reason TEXT NOT NULL DEFAULT '',
    submitted_at DOUBLE PRECISION NOT NULL,
    complete BIGINT NOT NULL DEFAULT 0,
    complete_at DOUBLE PRECISION,
    results BIGINT,
    parent_buildid BIGINT,
    parent_relationship TEXT,
    -- the scheduler that made it, for Dependent schedulers and the bus
    scheduler TEXT
);

CREATE TABLE buildset_properties (
    buildsetid BIGINT NOT NULL,
    name TEXT NOT NULL,
    -- JSON value
    value TEXT NOT NULL,
    source TEXT NOT NULL,
    PRIMARY KEY (buildsetid, name)
);

CREATE TABLE buildset_sourcestamps (
    buildsetid BIGINT NOT NULL,
    sourcestampid BIGINT NOT NULL,
    PRIMARY KEY (buildsetid, sourcestampid)
);

CREATE TABLE buildrequests (
    id @ID@,
    buildsetid BIGINT NOT NULL,
    builderid BIGINT NOT NULL,
    priority BIGINT NOT NULL DEFAULT 0,
    complete BIGINT NOT NULL DEFAULT 0,
    results BIGINT,
    submitted_at DOUBLE PRECISION NOT NULL,
    complete_at DOUBLE PRECISION,
    waited_for BIGINT NOT NULL DEFAULT 0,
    claimed_by_masterid BIGINT,
    claimed_at DOUBLE PRECISION
);
CREATE INDEX buildrequests_pending ON buildrequests (builderid, complete);
CREATE INDEX buildrequests_buildsetid ON buildrequests (buildsetid);

CREATE TABLE builds (
    id @ID@,
    number BIGINT NOT NULL,
    builderid BIGINT NOT NULL,
    buildrequestid BIGINT NOT NULL,
    workerid BIGINT,
    masterid BIGINT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    complete_at DOUBLE PRECISION,
    locks_duration_s DOUBLE PRECISION NOT NULL DEFAULT 0,
    state_string TEXT NOT NULL DEFAULT '',
    results BIGINT,
    UNIQUE (builderid, number)
);
CREATE INDEX builds_buildrequestid ON builds (buildrequestid);
CREATE INDEX builds_complete ON builds (builderid, complete_at);

CREATE TABLE build_properties (
    buildid BIGINT NOT NULL,
    name TEXT NOT NULL,
    -- JSON value
    value TEXT NOT NULL,
    source TEXT NOT NULL,
    PRIMARY KEY (buildid, name)
);

CREATE TABLE steps (
    id @ID@,
    number BIGINT NOT NULL,
    name TEXT NOT NULL,
    buildid BIGINT NOT NULL,
    started_at DOUBLE PRECISION,
    complete_at DOUBLE PRECISION,
    state_string TEXT NOT NULL DEFAULT '',
    results BIGINT,
    -- JSON list of {name, url}
    urls TEXT NOT NULL DEFAULT '[]',
    hidden BIGINT NOT NULL DEFAULT 0,
    UNIQUE (buildid, number)
);

CREATE TABLE logs (
    id @ID@,
    name TEXT NOT NULL,
    slug TEXT NOT NULL,
    stepid BIGINT NOT NULL,
    complete BIGINT NOT NULL DEFAULT 0,
    num_lines BIGINT NOT NULL DEFAULT 0,
    -- Buildbot's log types: 's' stdio (each line starts with its channel: o, e or h),
    -- 't' text, 'h' html
    type TEXT NOT NULL,
    UNIQUE (stepid, slug)
);

-- A log's lines in chunks: lines first_line..=last_line (from 0), each ending in '\n'.
-- compressed: 0 plain, 1 zlib (as Buildbot's 'gz').
CREATE TABLE logchunks (
    logid BIGINT NOT NULL,
    first_line BIGINT NOT NULL,
    last_line BIGINT NOT NULL,
    content @BLOB@ NOT NULL,
    compressed BIGINT NOT NULL,
    PRIMARY KEY (logid, first_line)
);

-- What services must remember across restarts (a poller's last revisions, an IRC bot's
-- state): one JSON value per (object, key).
CREATE TABLE object_state (
    objectname TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (objectname, key)
);
