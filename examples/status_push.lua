-- StatusPush hands batched events to a Lua callback (Buildbot manual, "StatusPush").
local c = BuildmasterConfig

local function process(self)
  print(tostring(self.queue:popChunk()))
  self:queueNextServerPush()
end

c['status']:append(status.StatusPush{ serverPushCb = process, bufferDelay = 0.5, retryDelay = 5 })
