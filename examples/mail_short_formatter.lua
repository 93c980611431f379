-- MailNotifier with a short messageFormatter, e.g. for delivery to phones
-- (Buildbot manual, "MailNotifier": the short example).
local c = BuildmasterConfig

local function messageFormatter(mode, name, build, results, master_status)
  local result = util.Results[results]
  local text = {}
  table.insert(text, ("STATUS: %s"):format(result:title()))
  return { body = table.concat(text, "\n"), type = "plain" }
end

c['status']:append(status.MailNotifier{
  fromaddr = "buildbot@example.org",
  sendToInterestedUsers = false,
  mode = { "problem" },
  extraRecipients = { "listaddr@example.org" },
  messageFormatter = messageFormatter,
})
