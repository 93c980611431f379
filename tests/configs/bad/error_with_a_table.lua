-- An error object that is no message is described, at its line.
local c = BuildmasterConfig
local function check(ok)
  if not ok then
    error({ code = 1 })
  end
end
check(false)
