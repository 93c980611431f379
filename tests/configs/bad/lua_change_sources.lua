local c = BuildmasterConfig
local function poll(self) end
c['change_source']:append(changes.PollingChangeSource{name = "feed", poll = poll})
c['change_source']:append(changes.PollingChangeSource{name = "feed", poll = poll, url = "https://example.org/feed"})
c['change_source']:append(changes.PollingChangeSource{name = "typo", poll = poll,
  pollInteval = 60})
c['change_source']:append(changes.PollingChangeSource{name = "no poll", pollInterval = 60})
c['change_source']:append(changes.PollingChangeSource{name = "bad delay", poll = poll, pollInterval = 60,
  pollRandomDelayMax = 60, polInterval = 60, pollUrl = "https://example.org"})
c['change_source']:append(changes.ChangeSource{describe = "pushes", handleRequest = poll})
