-- StashStatusPush publishes build status to Stash (Bitbucket Server) commits
-- (Buildbot manual, "StashStatusPush").
local c = BuildmasterConfig

c['status']:append(status.StashStatusPush("https://stash.example.com:8080/", "stash_username", "secret_password"))
