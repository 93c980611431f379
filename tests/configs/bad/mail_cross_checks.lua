-- The checks Buildbot makes on MailNotifier's options.
local c = BuildmasterConfig
c['status']:append(status.MailNotifier{name = "a", fromaddr = "ci@example.org", builders = {"x"}, tags = {"fast"}})
c['status']:append(status.MailNotifier{name = "b", fromaddr = "ci@example.org", useTls = true, smtpUser = "me"})
c['status']:append(status.MailNotifier{name = "c", fromaddr = "ci@example.org", mode = {"failing", "broken"}})
c['status']:append(status.MailNotifier{name = "d", sendToInterestedUsers = false})
c['status']:append(status.MailNotifier{name = "e", fromaddr = "ci@example.org", useTls = true})
