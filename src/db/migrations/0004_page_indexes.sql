-- Indexes the web pages read through, so that a page costs the same with a hundred builds
-- stored or a hundred thousand (`www/pages/store.rs`).

-- A builder's newest builds, by id: the waterfall, the builder page, the feeds.
CREATE INDEX builds_builder_newest ON builds (builderid, id);

-- From a sourcestamp to the buildsets made of it: the console's builds of a change, the
-- grid's builds of a revision.
CREATE INDEX buildset_sourcestamps_sourcestampid ON buildset_sourcestamps (sourcestampid);

-- The grid's builds of a revision.
CREATE INDEX sourcestamps_revision ON sourcestamps (revision);

-- The console ordered by commit time (`order_console_by_time`).
CREATE INDEX changes_when ON changes (when_timestamp);

-- The requests waiting for a build, among however many finished ones: `/builders`, a
-- builder's page, the waterfall's failing builders.
CREATE INDEX buildrequests_unfinished ON buildrequests (builderid) WHERE complete = 0;
