-- WebStatus accepting every change hook dialect, protected by change_hook_auth
-- (Buildbot manual, "Change Hooks").
local c = BuildmasterConfig

c['status']:append(status.WebStatus{
  http_port = 8010,
  change_hook_dialects = {
    base = true,
    github = {
      secret = "MY-SECRET",
      strict = true,
      codebase = function(payload) return payload.repository.name end,
    },
    bitbucket = true,
    googlecode = { secret_key = "FSP3p-Ghdn4T0oqX", branch = "master" },
    poller = { allowed = { "https://amanda.svn.sourceforge.net/svnroot/amanda/amanda" } },
    gitlab = true,
    gitorious = true,
  },
  change_hook_auth = { "file:changehook.passwd" },
  revlink = "http://github.com/buildbot/buildbot/tree/%s",
  changecommentlink = { "#(\\d+)", "http://buildbot.net/trac/ticket/\\1", "Ticket \\g<0>" },
  order_console_by_time = true,
})
