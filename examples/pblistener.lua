-- PBListener for status clients (Buildbot manual, "PBListener").
local c = BuildmasterConfig

c['status']:append(status.PBListener{ port = 9988, user = "statusClient", passwd = "clientpw" })
