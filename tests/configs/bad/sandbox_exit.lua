-- A config cannot stop the master.
local c = BuildmasterConfig
if not os.getenv("MOONBOT_NO_SUCH_VARIABLE") then
  os.exit(7)
end
