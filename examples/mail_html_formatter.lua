-- MailNotifier with an HTML messageFormatter that shows the changes of the build and the
-- last 80 lines of the last finished step's stdio log (Buildbot manual, "MailNotifier"),
-- translated line by line. Python's 0-based tuples are 1-based tables here
-- (`ss.patch_info[2]` is the comment), and an empty string is true in Lua, so
-- `if ss.codebase` becomes `if ss.codebase ~= ""`. Unlike the original, it also works for a
-- build with no source stamp, no step or no log (one that failed before its first step).
local c = BuildmasterConfig

-- Python's cgi.escape.
local function escape(s)
  return (s:gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;"))
end

-- Python's str.splitlines.
local function splitlines(s)
  local lines = {}
  for line in s:gmatch("([^\n]*)\n?") do
    lines[#lines + 1] = line
  end
  return lines
end

local function html_message_formatter(mode, name, build, results, master_status)
  -- Provide a customized message to Buildbot's MailNotifier.
  --
  -- The last 80 lines of the log are provided as well as the changes
  -- relevant to the build.  Message content is formatted as html.
  local result = util.Results[results]

  local limit_lines = 80
  local text = {}
  local function append(line) text[#text + 1] = line end
  append(("<h4>Build status: %s</h4>"):format(result:upper()))
  append('<table cellspacing="10"><tr>')
  append(("<td>Buildslave for this Build:</td><td><b>%s</b></td></tr>"):format(build:getSlavename()))
  if master_status:getURLForThing(build) then
    append(('<tr><td>Complete logs for all build steps:</td><td><a href="%s">%s</a></td></tr>')
      :format(master_status:getURLForThing(build), master_status:getURLForThing(build)))
    append(("<tr><td>Build Reason:</td><td>%s</td></tr>"):format(build:getReason()))
    local source = ""
    local stamps = build:getSourceStamps()
    local ss = stamps[#stamps] -- the last one, as Python's loop variable after the loop
    for _, s in ipairs(stamps) do
      ss = s
      if ss.codebase ~= "" then
        source = source .. ("%s: "):format(ss.codebase)
      end
      if ss.branch then
        source = source .. ("[branch %s] "):format(ss.branch)
      end
      if ss.revision then
        source = source .. ss.revision
      else
        source = source .. "HEAD"
      end
      if ss.patch then
        source = source .. " (plus patch)"
      end
      if ss.patch_info then -- add patch comment
        source = source .. (" (%s)"):format(ss.patch_info[2])
      end
    end
    append(("<tr><td>Build Source Stamp:</td><td><b>%s</b></td></tr>"):format(source))
    append(("<tr><td>Blamelist:</td><td>%s</td></tr>"):format(table.concat(build:getResponsibleUsers(), ",")))
    append("</table>")
    if ss and #ss.changes > 0 then -- a build may have no source stamp
      append("<h4>Recent Changes:</h4>")
      for _, c in ipairs(ss.changes) do
        local cd = c:asDict()
        local when = os.date("!%c", cd.when)
        append('<table cellspacing="10">')
        append(("<tr><td>Repository:</td><td>%s</td></tr>"):format(cd.repository))
        append(("<tr><td>Project:</td><td>%s</td></tr>"):format(cd.project))
        append(("<tr><td>Time:</td><td>%s</td></tr>"):format(when))
        append(("<tr><td>Changed by:</td><td>%s</td></tr>"):format(cd.who))
        append(("<tr><td>Comments:</td><td>%s</td></tr>"):format(cd.comments))
        append("</table>")
        local files = cd.files
        if #files > 0 then
          append('<table cellspacing="10"><tr><th align="left">Files</th></tr>')
          for _, file in ipairs(files) do
            append(("<tr><td>%s:</td></tr>"):format(file.name))
          end
          append("</table>")
        end
      end
    end
    append("<br>")
    -- get all the steps in build in reversed order, and find the last step that finished
    local steps = build:getSteps()
    local step = steps[#steps]
    for i = #steps, 1, -1 do
      step = steps[i]
      if step:isFinished() then
        break
      end
    end
    -- If no step finished, the loop just exhausted itself; so as a special case we fetch all logs
    local logs = build:getLogs()
    if step and step:isFinished() then -- a build may have no step at all
      -- get logs for the last finished step
      logs = step:getLogs()
    end
    -- logs within a step are in reverse order. Search back until we find stdio
    local log = logs[#logs]
    for i = #logs, 1, -1 do
      log = logs[i]
      if log:getName() == "stdio" then
        break
      end
    end
    if #logs > 0 then -- a build may have no log
      local name = ("%s.%s"):format(log:getStep():getName(), log:getName())
      local status, _ = log:getStep():getResults()
      local content = splitlines(log:getText()) -- Note: can be VERY LARGE
      local url = ("%s/steps/%s/logs/%s"):format(master_status:getURLForThing(build),
        log:getStep():getName(), log:getName())

      append(('<i>Detailed log of last build step:</i> <a href="%s">%s</a>'):format(url, url))
      append("<br>")
      append(('<h4>Last %d lines of "%s"</h4>'):format(limit_lines, name))
      local unilist = {}
      for i = math.max(1, #content - limit_lines + 1), #content do
        unilist[#unilist + 1] = escape(content[i])
      end
      append("<pre>")
      for _, line in ipairs(unilist) do
        append(line)
      end
      append("</pre>")
    end
    append("<br><br>")
    append("<b>-The Buildbot</b>")
    return {
      body = table.concat(text, "\n"),
      type = "html",
    }
  end
end

c['status']:append(status.MailNotifier{
  fromaddr = "buildbot@example.org",
  sendToInterestedUsers = false,
  mode = { "failing" },
  extraRecipients = { "listaddr@example.org" },
  messageFormatter = html_message_formatter,
})
