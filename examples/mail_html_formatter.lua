-- MailNotifier with an HTML messageFormatter that shows the changes of the build and the
-- last 80 lines of the last finished step's stdio log (Buildbot manual, "MailNotifier").
local c = BuildmasterConfig

local function escape(s)
  return (tostring(s):gsub("[&<>\"]", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;" }))
end

local function splitlines(s)
  local lines = {}
  for line in (s .. "\n"):gmatch("(.-)\r?\n") do
    lines[#lines + 1] = line
  end
  if lines[#lines] == "" then
    lines[#lines] = nil
  end
  return lines
end

local function html_message_formatter(mode, name, build, results, master_status)
  local result = util.Results[results]
  local limit_lines = 80
  local text = {}
  local function add(s) text[#text + 1] = s end

  add(("<h4>Build status: %s</h4>"):format(result:upper()))
  add('<table cellspacing="10"><tr>')
  add(("<td>Worker for this Build:</td><td><b>%s</b></td></tr>"):format(build:getWorkername()))
  local url = master_status:getURLForThing(build)
  if url then
    add(('<tr><td>Complete logs for all build steps:</td><td><a href="%s">%s</a></td></tr>'):format(url, url))
    add(("<tr><td>Build Reason:</td><td>%s</td></tr>"):format(escape(build:getReason())))
    local source, last_ss = "", nil
    for _, ss in ipairs(build:getSourceStamps()) do
      last_ss = ss
      if ss.codebase ~= "" then source = source .. ss.codebase .. ": " end
      if ss.branch then source = source .. ("[branch %s] "):format(ss.branch) end
      source = source .. (ss.revision or "HEAD")
      if ss.patch then source = source .. " (plus patch)" end
      if ss.patch_info then source = source .. (" (%s)"):format(ss.patch_info[2]) end
    end
    add(("<tr><td>Build Source Stamp:</td><td><b>%s</b></td></tr>"):format(escape(source)))
    add(("<tr><td>Blamelist:</td><td>%s</td></tr>"):format(escape(table.concat(build:getResponsibleUsers(), ","))))
    add("</table>")
    if last_ss and #last_ss.changes > 0 then
      add("<h4>Recent Changes:</h4>")
      for _, change in ipairs(last_ss.changes) do
        local cd = change:asDict()
        add('<table cellspacing="10">')
        add(("<tr><td>Repository:</td><td>%s</td></tr>"):format(escape(cd.repository)))
        add(("<tr><td>Project:</td><td>%s</td></tr>"):format(escape(cd.project)))
        add(("<tr><td>Time:</td><td>%s</td></tr>"):format(os.date("!%c", cd.when)))
        add(("<tr><td>Changed by:</td><td>%s</td></tr>"):format(escape(cd.who)))
        add(("<tr><td>Comments:</td><td>%s</td></tr>"):format(escape(cd.comments)))
        add("</table>")
        if #cd.files > 0 then
          add('<table cellspacing="10"><tr><th align="left">Files</th></tr>')
          for _, file in ipairs(cd.files) do
            add(("<tr><td>%s:</td></tr>"):format(escape(file.name)))
          end
          add("</table>")
        end
      end
    end
    add("<br>")

    -- the last step that finished, and its stdio log (or any stdio log if none finished)
    local steps_list, logs = build:getSteps(), nil
    for i = #steps_list, 1, -1 do
      if steps_list[i]:isFinished() then
        logs = steps_list[i]:getLogs()
        break
      end
    end
    logs = logs or build:getLogs()
    local log
    for i = #logs, 1, -1 do
      log = logs[i]
      if log:getName() == "stdio" then break end
    end
    if log then
      local step = log:getStep()
      local log_name = ("%s.%s"):format(step:getName(), log:getName())
      local content = splitlines(log:getText())
      local log_url = ("%s/steps/%s/logs/%s"):format(url, step:getName(), log:getName())
      add(('<i>Detailed log of last build step:</i> <a href="%s">%s</a>'):format(log_url, log_url))
      add("<br>")
      add(('<h4>Last %d lines of "%s"</h4>'):format(limit_lines, log_name))
      add("<pre>")
      for i = math.max(1, #content - limit_lines + 1), #content do
        add(escape(content[i]))
      end
      add("</pre>")
    end
    add("<br><br>")
    add("<b>-The Buildbot</b>")
  end
  return { body = table.concat(text, "\n"), type = "html" }
end

c['status']:append(status.MailNotifier{
  fromaddr = "buildbot@example.org",
  sendToInterestedUsers = false,
  mode = { "failing" },
  extraRecipients = { "listaddr@example.org" },
  messageFormatter = html_message_formatter,
})
