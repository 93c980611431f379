local c = BuildmasterConfig
c['status']:append(status.IRC("irc.example.org", "bot", {
  channels = {{channel = "#ci"}},
  notify_events = {sucessToFailure = 1, started = true},
}))
