-- What a change source written in Lua calls to reach the master and the outside world:
-- util.runProcess, util.httpRequest, and the methods of its `self`. Each one yields the
-- source's coroutine with a request that the master carries out while its other work goes
-- on, then resumes the coroutine with the answer, so the Lua code reads as if synchronous.
-- Run once per config VM after the prelude; Rust keeps what it returns.

local util = ...
local TOKEN = {}
-- The coroutines the master runs change source functions in; only they may ask.
local sessions = setmetatable({}, { __mode = "k" })
local running, yield, error, setmetatable = coroutine.running, coroutine.yield, error, setmetatable

local function ask(what, kind, args)
  if not sessions[(running())] then
    error(("%s can only be called from a change source's functions (poll, startService, "
      .. "stopService, handleRequest, or one given to callLater), not from a coroutine of "
      .. "their own"):format(what), 3)
  end
  local ok, answer = yield(TOKEN, kind, args)
  if not ok then
    error(answer, 3)
  end
  return answer
end

rawset(util, "runProcess", function(command)
  local result = ask("util.runProcess", "process", command)
  return result
end)

rawset(util, "httpRequest", function(request)
  local response = ask("util.httpRequest", "http", request)
  return response
end)

local function add_change(change)
  local id = ask("addChange", "addChange", change)
  return id
end

local methods = {
  master = { data = { updates = { addChange = add_change } } },
}

function methods:addChange(change)
  local id = ask("self:addChange", "addChange", change)
  return id
end

function methods:getState(key, default)
  local value = ask("self:getState", "getState", key)
  if value == nil then
    return default
  end
  return value
end

function methods:setState(key, value)
  ask("self:setState", "setState", { key = key, value = value })
end

function methods:callLater(seconds, fn)
  ask("self:callLater", "callLater", { seconds = seconds, fn = fn })
end

-- A source's `self`: the fields it was declared with, then the methods above. What the
-- source assigns to `self` stays in memory until a reconfig; getState/setState persist.
local function make_self(fields)
  return setmetatable({}, {
    __index = function(_, key)
      local value = fields[key]
      if value == nil then
        value = methods[key]
      end
      return value
    end,
  })
end

return TOKEN, sessions, make_self
