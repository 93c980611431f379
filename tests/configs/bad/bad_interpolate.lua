local c = BuildmasterConfig
c['status']:append(status.GitHubStatus{
  token = "t",
  repoOwner = util.Interpolate("%(prop:owner"),
  repoName = util.Interpolate("%(propp:name)s"),
  sha = util.Interpolate("%(src:main)s"),
})
