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
      -- Events the built-in handler does not take: one function per event, answering
      -- Buildbot change dictionaries.
      class = {
        handle_release = function(payload, event)
          return { { author = payload.sender.login, comments = "release " .. payload.release.tag_name,
                     branch = payload.release.tag_name, files = {} } }
        end,
      },
    },
    bitbucket = true,
    bitbucketcloud = { codebase = "main" },
    googlecode = { secret_key = "FSP3p-Ghdn4T0oqX", branch = "master" },
    poller = { allowed = { "https://amanda.svn.sourceforge.net/svnroot/amanda/amanda" } },
    gitlab = { secret = "GITLAB-TOKEN" },
    gitorious = true,
  },
  change_hook_auth = { "file:changehook.passwd" },
  revlink = "http://github.com/buildbot/buildbot/tree/%s",
  changecommentlink = { "#(\\d+)", "http://buildbot.net/trac/ticket/\\1", "Ticket \\g<0>" },
  order_console_by_time = true,
})
