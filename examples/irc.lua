-- An IRC bot that joins two channels and announces transitions (Buildbot manual, "IRC Bot").
local c = BuildmasterConfig

c['status']:append(status.IRC("irc.example.org", "botnickname", {
  useColors = false,
  channels = {
    { channel = "#example1" },
    { channel = "#example2", password = "somesecretpassword" },
  },
  password = "mysecretnickservpassword",
  notify_events = {
    exception = 1,
    successToFailure = 1,
    failureToSuccess = 1,
  },
}))
