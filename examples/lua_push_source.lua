-- A notification-based change source written in Lua ("Writing a Notification-based Change
-- Source"). A Lua source opens no socket of its own: the web server hands it the requests
-- to /change_source/NAME, here what a forge's post-receive hook POSTs:
--   curl -d '{"rev": "abc123", "author": "Ada", "branch": "main"}' \
--        http://master.example.org:8010/change_source/forge-hook
local c = BuildmasterConfig

c['status']:append(status.WebStatus{ http_port = 8010 })

c['change_source'] = { changes.ChangeSource{
  name = "forge-hook",
  secret = "s3cret",

  describe = function(self)
    return "ChangeSource taking pushes at /change_source/forge-hook"
  end,

  startService = function(self)
    -- A timer: say once a day how many pushes came.
    local function report(self)
      print(("forge-hook: %d pushes so far"):format(self:getState("pushes", 0)))
      self:callLater(24 * 3600, report)
    end
    self:callLater(24 * 3600, report)
  end,

  handleRequest = function(self, request)
    if request.method ~= "POST" then
      return { status = 405, body = { error = "POST a push" } }
    end
    if request.headers["x-hook-secret"] ~= self.secret then
      return { status = 403, body = { error = "wrong secret" } }
    end
    local push = util.jsonDecode(request.body)
    -- The spec's spelling; self:addChange{...} is the same.
    local id = self.master.data.updates.addChange{
      author = push.author,
      revision = push.rev,
      branch = push.branch,
      files = push.files or {},
      comments = push.message or "",
    }
    self:setState("pushes", self:getState("pushes", 0) + 1)
    return { status = 200, body = { change = id } }
  end,
} }
