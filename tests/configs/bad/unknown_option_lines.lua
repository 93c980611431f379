-- Unknown options are reported at the line they are written on, in multi-line tables.
local c = BuildmasterConfig
c['workers']:append(worker.LocalWorker("local", {
  max_builds = 2,
  max_bulids = 3,
}))
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{
  command = { "make", "check" }, -- haltOnFailure = true would be fine here
  name = "check",
  ["haltOnFailur"] = true,
})
c['builders']:append(util.BuilderConfig{ name = "check", workernames = { "local" },
  factory = f, bogus = "a string with tags=1 inside",
  tags = { "ci" }, tgas = { "x" } })
c['schedulers']:append(schedulers.ForceScheduler{ name = "force", builderNames = { "check" }, buildernames = {} })
-- An options table built elsewhere: the call's line.
local options = {
  max_builds = 1, nmae = "x",
}
c['workers']:append(worker.LocalWorker("other", options))
