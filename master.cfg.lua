-- master.cfg.lua: the sample moonbot configuration.
--
-- It reads like Buildbot's master.cfg: Python keyword arguments become one options table,
-- positional arguments come first. Check it with `moonbot checkconfig`.

local c = BuildmasterConfig

-- Identity: shown on the web pages and in notifications.
c['title'] = "Hello World CI"
c['titleURL'] = "https://example.org/hello"
c['buildbotURL'] = "http://localhost:8010/"

-- Where the master keeps its state (SQLite beside this file by default).
c['db'] = { db_url = "sqlite:///state.sqlite" }

-- Workers: a local worker runs steps as processes on this machine.
c['workers']:append(worker.LocalWorker("local", { max_builds = 2 }))

-- Change sources: poll a git repository for new commits. Point it at your repository and
-- uncomment it (and the Git step below).
-- c['change_source']:append(changes.GitPoller{
--   repourl = "https://example.org/hello.git",
--   branches = { "main" },
--   pollInterval = 300,
-- })

-- Builders: what to do, and where. Steps run in workers/local/runtests/build.
local f = util.BuildFactory()
-- f:addStep(steps.Git{ repourl = "https://example.org/hello.git", mode = "incremental" })
f:addStep(steps.ShellCommand{
  name = "hello",
  command = { "sh", "-c", util.Interpolate("echo hello from build %(prop:buildnumber)s of %(prop:buildername)s") },
  haltOnFailure = true,
})
f:addStep(steps.ShellCommand{ name = "test", command = "uname -a && ls -la" })

c['builders']:append(util.BuilderConfig{ name = "runtests", workernames = { "local" }, factory = f })

-- Schedulers: when to build. A commit on main, or a button on the web page.
c['schedulers']:append(schedulers.SingleBranchScheduler{
  name = "all",
  change_filter = util.ChangeFilter{ branch = "main" },
  treeStableTimer = nil,
  builderNames = { "runtests" },
})
c['schedulers']:append(schedulers.ForceScheduler{ name = "force", builderNames = { "runtests" } })

-- Status targets: the web UI and REST API on http://localhost:8010/. It listens on this
-- machine only, so whoever reaches it may force, stop and cancel builds; before opening it
-- to a network, ask for a login (auth = util.BasicAuth{...}, actions set to 'auth').
c['status']:append(status.WebStatus{
  http_port = "tcp:8010:interface=127.0.0.1",
  authz = util.Authz{ forceBuild = true, stopBuild = true, cancelPendingBuild = true },
})

-- Mail about failed builds: uncomment and point relayhost at your mail server. Mail waits
-- in the outbox while the relay is down; see GET /api/v2/reporters.
-- c['status']:append(status.MailNotifier{
--   fromaddr = "buildbot@example.org",
--   mode = { "failing", "problem" },
--   extraRecipients = { "team@example.org" },
--   relayhost = "localhost", smtpPort = 25,
-- })
