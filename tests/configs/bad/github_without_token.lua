local c = BuildmasterConfig
c['status']:append(status.GitHubStatus{
  repoOwner = util.Interpolate("%(prop:owner)s"),
  repoName = "bbtools",
})
