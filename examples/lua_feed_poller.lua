-- A change poller written in Lua ("Writing a Change Poller") for a system the master does
-- not know: a plain HTTP JSON feed that lists commits, newest last, as
--   [{"id": 41, "author": "Ada <ada@example.org>", "message": "...", "files": ["a.c"]}, ...]
-- Each poll reads the feed and submits the entries after the last one seen; the last id is
-- kept in storage under the source's name, so a reconfig or a restart misses nothing and
-- replays nothing.
local c = BuildmasterConfig

local feed = changes.PollingChangeSource{
  name = "fossil-feed",
  feed = "http://fossil.example.org/commits.json",
  branch = "trunk",
  pollInterval = 60,
  pollAtLaunch = true,
  -- A reconfig that changes the feed's address restarts the poller; other edits (the poll
  -- function itself) apply from its next poll.
  compare_attrs = { "feed" },

  describe = function(self)
    return "PollingChangeSource watching " .. self.feed
  end,

  poll = function(self)
    local response = util.httpRequest{ url = self.feed, headers = { Accept = "application/json" }, timeout = 30 }
    if response.status ~= 200 then
      -- Logged with this line; the source polls again at the next interval.
      error(("%s answered %d"):format(self.feed, response.status))
    end
    local last = self:getState("lastId", 0)
    for _, entry in ipairs(util.jsonDecode(response.body)) do
      if entry.id > last then
        self:addChange{
          author = entry.author,
          revision = tostring(entry.id),
          comments = entry.message,
          files = entry.files or {},
          branch = self.branch,
          repository = self.feed,
          src = "fossil",
        }
        last = entry.id
      end
    end
    self:setState("lastId", last)
  end,
}

-- The same for a repository the master can only reach with a command of its own: the
-- process runs while the master goes on with its other work.
local hg = changes.PollingChangeSource{
  name = "hg-tip",
  repo = "https://hg.example.org/project",
  pollInterval = 300,
  poll = function(self)
    local tip = util.runProcess{ "hg", "identify", "--id", "--debug", self.repo, timeout = 60 }
    if tip.rc ~= 0 then
      error("hg identify failed: " .. tip.stderr)
    end
    local revision = tip.stdout:match("%x+")
    if revision ~= self:getState("tip") then
      self:addChange{ author = "hg", revision = revision, branch = "default", repository = self.repo }
      self:setState("tip", revision)
    end
  end,
}

c['change_source'] = { feed, hg }
