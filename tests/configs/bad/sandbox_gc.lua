-- Finalizers run where no time limit reaches, so a config cannot set one.
local c = BuildmasterConfig
local guard = setmetatable({}, { __gc = function() while true do end end })
collectgarbage()
