-- A config reads files (a password file, say) but writes none.
local c = BuildmasterConfig
local log = io.open("checkconfig.log", "a")
