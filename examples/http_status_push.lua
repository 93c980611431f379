-- HttpStatusPush posts the events, JSON-encoded, to a server (Buildbot manual, "HttpStatusPush").
local c = BuildmasterConfig

c['status']:append(status.HttpStatusPush{ serverUrl = "http://example.com/submit" })
