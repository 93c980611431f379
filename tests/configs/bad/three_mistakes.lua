-- Three independent mistakes: all three are reported, in line order.
local c = BuildmasterConfig
c['titel'] = "CI"
c['status']:append(status.MailNotifier{fromaddr = "ci@example.org", smtpPort = "587"})
c['status']:append(status.IRC("irc.example.org", "bot", {chanels = {"#ci"}}))
