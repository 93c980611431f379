-- GerritStatusPush reviews each patchset with Lua callbacks (Buildbot manual,
-- "GerritStatusPush": reviewCB, startCB and summaryCB).
local c = BuildmasterConfig

local function gerritReviewCB(builderName, build, result, master_status, arg)
  if result == util.RETRY then
    return {}
  end
  local message = "Buildbot finished compiling your patchset\n"
  message = message .. ("on configuration: %s\n"):format(builderName)
  message = message .. ("The result is: %s\n"):format(util.Results[result]:upper())
  if arg then
    message = message .. "\nFor more details visit:\n" .. master_status:getURLForThing(build) .. "\n"
  end
  return { message = message, labels = { Verified = result == util.SUCCESS and 1 or -1 } }
end

local function gerritStartCB(builderName, build, arg)
  return "Buildbot started compiling your patchset\non configuration: " .. builderName .. "\n"
end

local function gerritSummaryCB(buildInfoList, results, master_status, arg)
  local success, failure, msgs = false, false, {}
  for _, buildInfo in ipairs(buildInfoList) do
    local msg = ("Builder %s %s (%s)"):format(buildInfo.name, buildInfo.resultText, buildInfo.text)
    if buildInfo.url then
      msg = msg .. " - " .. buildInfo.url
    else
      msg = msg .. "."
    end
    msgs[#msgs + 1] = msg
    if buildInfo.result == util.SUCCESS then success = true else failure = true end
  end
  return {
    message = table.concat(msgs, "\n\n"),
    labels = { Verified = (success and not failure) and 1 or -1 },
  }
end

c['status']:append(status.GerritStatusPush("gerrit.example.org", "buildbot", {
  reviewCB = gerritReviewCB,
  reviewArg = true,
  startCB = gerritStartCB,
  summaryCB = gerritSummaryCB,
  identity_file = "/home/buildbot/.ssh/id_gerrit",
}))
