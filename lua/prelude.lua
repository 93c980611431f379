-- The pure-Lua part of the buildbot library, run in every fresh config VM before
-- master.cfg.lua. It builds BuildmasterConfig and the namespace tables; Rust fills the
-- namespaces with constructors afterwards.

-- From Rust: suggest(name, {known...}) gives "did you mean"; caller_location(level) gives
-- "file:line" of the Lua code `level` calls up from it.
local suggest, caller_location = ...

-- Lists with Python's append/extend, so `c['status']:append(x)` reads as in master.cfg.
local List = {}
List.__index = {
  append = function(self, value)
    self[#self + 1] = value
  end,
  extend = function(self, values)
    for _, value in ipairs(values) do
      self[#self + 1] = value
    end
  end,
}

local LIST_KEYS = {
  workers = true, slaves = true, builders = true, schedulers = true,
  change_source = true, status = true, services = true,
}

-- BuildmasterConfig is a proxy over `store`, so that assigning a plain table to a
-- list-valued key (`c['status'] = {}`) still gives it append and extend.
local store, locations = {}, {}
for key in pairs(LIST_KEYS) do
  store[key] = setmetatable({}, List)
end
BuildmasterConfig = setmetatable({}, {
  __index = store,
  __newindex = function(_, key, value)
    if LIST_KEYS[key] and type(value) == "table" and getmetatable(value) == nil then
      setmetatable(value, List)
    end
    locations[key] = caller_location(2)
    store[key] = value
  end,
  __pairs = function()
    return next, store, nil
  end,
})

-- A namespace that names the misspelt constructor instead of returning nil.
local function namespace(name)
  return setmetatable({}, {
    __index = function(ns, key)
      local known = {}
      for k in pairs(ns) do
        known[#known + 1] = k
      end
      local hint = suggest(tostring(key), known)
      error(("buildbot.%s has no '%s'%s"):format(name, tostring(key),
        hint and (" (did you mean '%s'?)"):format(hint) or ""), 2)
    end,
  })
end

buildbot = {}
for _, name in ipairs({ "status", "util", "steps", "schedulers", "changes", "worker", "buildslave" }) do
  buildbot[name] = namespace(name)
  _G[name] = buildbot[name]
end
package.preload["buildbot.plugins"] = function()
  return buildbot
end

-- Results, indexable by code from 0 as in Python: util.Results[2] == "failure".
local results = { [0] = "success", "warnings", "failure", "skipped", "exception", "retry", "cancelled" }
rawset(buildbot.util, "Results", results)
for code = 0, #results do
  rawset(buildbot.util, results[code]:upper(), code)
end

-- The spec's `result.title()`: util.Results[r]:title() == "Failure".
function string.title(s)
  return (s:gsub("(%a)(%w*)", function(first, rest)
    return first:upper() .. rest:lower()
  end))
end

return store, locations
