-- GitHubStatus with the repository taken from builder properties (Buildbot manual,
-- "GitHubStatus").
local c = BuildmasterConfig

c['protocols'] = { msgpack_experimental_v7 = { port = 9989 } }
c['workers']:append(worker.Worker("worker1", "pass"))

local f = util.BuildFactory()
f:addStep(steps.ShellCommand{ command = { "make", "test" } })

c['builders']:append(util.BuilderConfig{
  name = "builder-name",
  slavenames = { "worker1" },
  factory = f,
  properties = { github_repo_owner = "buildbot", github_repo_name = "bbtools" },
})

c['status']:append(status.GitHubStatus{
  token = "githubAPIToken",
  repoOwner = util.Interpolate("%(prop:github_repo_owner)s"),
  repoName = util.Interpolate("%(prop:github_repo_name)s"),
  sha = util.Interpolate("%(src::revision)s"),
  startDescription = "Build started.",
  endDescription = "Build done.",
})
