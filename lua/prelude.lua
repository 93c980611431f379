-- The pure-Lua part of the buildbot library, run in every fresh config VM before
-- master.cfg.lua. It puts the sandbox in place and builds BuildmasterConfig and the
-- namespace tables; Rust fills the namespaces with constructors afterwards.

-- From Rust: suggest(name, {known...}) gives "did you mean"; caller_location(level) gives
-- "file:line" of the Lua code `level` calls up from it; regular_file(path) says whether
-- path is a regular file (nil when there is nothing there).
local suggest, caller_location, regular_file = ...

---------------------------------------------------------------------------------------
-- The sandbox: a config reads (files, the environment, the clock) and computes; it never
-- exits, spawns, writes, deletes, loads binary or C code, or reaches below Lua. Each
-- function taken away raises an error at the config's line that says what to use instead.
-- lua/types/sandbox.lua documents the set for users.

local getinfo, traceback = debug.getinfo, debug.traceback
local base_error, base_load, base_loadfile, base_setmetatable = error, load, loadfile, setmetatable
local rawget, type, tostring = rawget, type, tostring
local open, lines, input, output = io.open, io.lines, io.input, io.output
local stdin, stdout, stderr = io.stdin, io.stdout, io.stderr
local setlocale, searchpath = os.setlocale, package.searchpath
local PRELUDE = "buildbot/prelude.lua"

-- Raises `message` at the line of the config code that called into the sandbox.
local function refuse(message)
  local level = 2
  while true do
    local info = getinfo(level, "Sl")
    if not info then
      base_error(message, 0)
    end
    if info.what ~= "C" and info.short_src ~= PRELUDE and info.currentline > 0 then
      base_error(("%s:%d: %s"):format(info.short_src, info.currentline, message), 0)
    end
    level = level + 1
  end
end

local function refused(name, instead)
  return function()
    refuse(("%s is not available in a config: %s"):format(name, instead))
  end
end

local NO_COMMANDS = "it would run a command on the master's machine; run commands in a build step (steps.ShellCommand)"
local NO_FILES = "a config changes no file; change files in a build step (steps.ShellCommand)"
local NO_STDIN = "a config does not read standard input; read a file with io.open(path) or io.lines(path)"

os.exit = refused("os.exit", "it would stop the master; call error(message) to report a problem")
os.execute = refused("os.execute", NO_COMMANDS)
io.popen = refused("io.popen", NO_COMMANDS)
os.remove = refused("os.remove", NO_FILES)
os.rename = refused("os.rename", NO_FILES)
os.tmpname = refused("os.tmpname", "it creates a file; keep the data in Lua values")
io.tmpfile = refused("io.tmpfile", "it creates a file; keep the data in Lua values")
package.loadlib = refused("package.loadlib", "a config loads no C code; write the module in Lua")
for name in pairs(debug) do
  if name ~= "traceback" then
    debug[name] = refused("debug." .. name, "of the debug library, a config has debug.traceback only")
  end
end
debug.traceback = traceback

-- Reading a pipe or a device could block the master whatever the time limit.
local function check_readable(name, path)
  if (type(path) == "string" or type(path) == "number") and regular_file(tostring(path)) == false then
    refuse(("%s: '%s' is not a regular file; a config reads regular files only"):format(name, tostring(path)))
  end
end

function io.open(path, mode)
  if mode ~= nil and mode ~= "r" and mode ~= "rb" then
    refuse(("io.open(path, %q) is not available in a config: a config writes no file; open files for reading (io.open(path) or mode \"r\"), and write them in a build step"):format(tostring(mode)))
  end
  check_readable("io.open", path)
  return open(path, mode)
end

function io.lines(path, ...)
  if path == nil then
    refuse("io.lines() is not available in a config: " .. NO_STDIN)
  end
  check_readable("io.lines", path)
  return lines(path, ...)
end

-- The default input stays standard input until io.input names a file; it is not handed out.
local function default_input(name)
  if input() == stdin then
    refuse(name .. " is not available in a config: " .. NO_STDIN)
  end
  return input()
end

function io.input(file)
  if file == nil then
    return default_input("io.input()")
  end
  check_readable("io.input", file)
  return input(file)
end

function io.read(...)
  return default_input("io.read"):read(...)
end
io.stdin = nil

function io.output(file)
  if file ~= nil and file ~= stdout and file ~= stderr then
    refuse("io.output(file) is not available in a config: a config writes no file; print() and io.write() write to the master's output")
  end
  return output(file)
end

function os.setlocale(locale, ...)
  if locale ~= nil then
    refuse("os.setlocale(locale) is not available in a config: it would change the whole master's locale; os.setlocale() reads it")
  end
  return setlocale(locale, ...)
end

local function check_text_mode(name, mode)
  if mode ~= nil and mode ~= "t" then
    refuse(("%s(..., %q) is not available in a config: a config loads text chunks only (mode \"t\")"):format(name, tostring(mode)))
  end
end

-- `...` keeps an explicit nil `env` apart from none, as load itself does.
function load(chunk, name, mode, ...)
  check_text_mode("load", mode)
  return base_load(chunk, name, "t", ...)
end

function loadfile(path, mode, ...)
  if path == nil then
    refuse("loadfile() is not available in a config: " .. NO_STDIN)
  end
  check_text_mode("loadfile", mode)
  check_readable("loadfile", path)
  return base_loadfile(path, "t", ...)
end

function dofile(path)
  if path == nil then
    refuse("dofile() is not available in a config: " .. NO_STDIN)
  end
  check_readable("dofile", path)
  local chunk, message = base_loadfile(path, "t")
  if not chunk then
    refuse(message)
  end
  return chunk()
end

-- `require` finds Lua modules on package.path and loads them as text; no C modules.
package.cpath = ""
package.searchers[2] = function(name)
  local path, why = searchpath(name, package.path)
  if not path then
    return why
  end
  local chunk, message = base_loadfile(path, "t")
  if not chunk then
    refuse(("error loading module '%s' from file '%s':\n\t%s"):format(name, path, message))
  end
  return chunk, path
end
package.searchers[3] = nil
package.searchers[4] = nil

-- Finalizers run inside the garbage collector, where no time limit reaches.
function setmetatable(value, metatable)
  if type(metatable) == "table" and rawget(metatable, "__gc") ~= nil then
    refuse("setmetatable with a __gc metamethod is not available in a config: finalizers run where the time limit cannot stop them; release what you hold explicitly")
  end
  return base_setmetatable(value, metatable)
end

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
    if type(key) ~= "string" then
      error(("BuildmasterConfig keys must be strings, got %s"):format(type(key)), 2)
    end
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

return store, locations, getinfo
