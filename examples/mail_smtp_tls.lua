-- MailNotifier sending through an authenticating relay with STARTTLS, and one mailing the
-- authors of each build's changes through a lookup (Buildbot manual, "MailNotifier").
local c = BuildmasterConfig

c['status']:append(status.MailNotifier{
  name = "list",
  fromaddr = "myuser@example.com",
  sendToInterestedUsers = false,
  extraRecipients = { "listaddr@example.org" },
  useTls = true,
  relayhost = "smtp.example.com",
  smtpPort = 587,
  smtpUser = "myuser@example.com",
  smtpPassword = "mypassword",
})

-- Mail the developers whose changes are in the build: "alice" becomes alice@example.org.
c['status']:append(status.MailNotifier{
  name = "authors",
  fromaddr = "buildbot@example.org",
  lookup = "example.org",
  mode = { "change", "problem" },
  subject = "[ci] %(builder)s",
  extraHeaders = { ["X-CI-Revision"] = util.Interpolate("%(src::revision)s") },
})

-- A lookup object written in Lua: getAddress(name) returns an address or nil.
local directory = { alice = "alice@corp.example.org" }
c['status']:append(status.MailNotifier{
  name = "directory",
  fromaddr = "buildbot@example.org",
  lookup = { getAddress = function(self, user) return directory[user] end },
})
