---@meta
-- LuaLS annotations for change sources written in Lua ("Writing Change Sources"):
-- changes.PollingChangeSource, changes.ChangeSource, what their functions receive as
-- `self`, and util.runProcess / util.httpRequest, which they use to reach the outside.
-- The declaring table's other fields are the source's own (`self.repo`, `self.url`).

---A change as `self:addChange` takes it: the fields of the master's own changes.
---@class buildbot.changes.Change
---@field author string Who made it (`who` is the old name).
---@field who? string
---@field committer? string
---@field revision? string
---@field branch? string
---@field files? string[]
---@field comments? string
---@field when_timestamp? number Seconds since the epoch; default now.
---@field when? number Old name of when_timestamp.
---@field repository? string
---@field project? string
---@field codebase? string
---@field category? string
---@field revlink? string
---@field properties? table<string, any>
---@field src? string The version control system ("git", "hg", ...).

---A request to `/change_source/NAME[/PATH]` on the WebStatus port.
---@class buildbot.changes.Request
---@field method string "GET", "POST", ...
---@field path string What follows /change_source/NAME: "/" at least.
---@field query string The query string without "?".
---@field headers table<string, string> Names in lowercase.
---@field body string

---What `handleRequest` returns: nil (202), a string (200, text), or this (a table body goes as JSON).
---@class buildbot.changes.Response
---@field status? integer Default 200.
---@field headers? table<string, string>
---@field body? string|table

---A Lua change source's `self`: its declared fields, these methods, and what its functions
---store in it (kept until a reconfig restarts the source; use setState for what must last).
---The methods suspend the function while the master does the work.
---@class buildbot.changes.LuaSource
---@field name string
---@field master { data: { updates: { addChange: fun(change: buildbot.changes.Change): integer } } } The spec's spelling of addChange.
---@field [string] any
local LuaSource = {}

---Submits a change; returns its id.
---@param change buildbot.changes.Change
---@return integer
function LuaSource:addChange(change) end

---What `setState(key, ...)` stored, in this source's name, across reconfigs and restarts.
---@param key string
---@param default? any Returned when nothing is stored.
---@return any
function LuaSource:getState(key, default) end

---Stores plain data (strings, numbers, booleans, tables of them) under this source's name.
---@param key string
---@param value any
function LuaSource:setState(key, value) end

---Calls fn(self) after `seconds`, between the source's other functions.
---@param seconds number
---@param fn fun(self: buildbot.changes.LuaSource)
function LuaSource:callLater(seconds, fn) end

---@class buildbot.changes.ChangeSourceOptions
---@field name string Unique among change sources; the key of its state.
---@field describe? fun(self: buildbot.changes.LuaSource): string A line for the master's log.
---@field startService? fun(self: buildbot.changes.LuaSource) Called when the source starts.
---@field stopService? fun(self: buildbot.changes.LuaSource) Called when it stops (5 s at most).
---@field handleRequest? fun(self: buildbot.changes.LuaSource, request: buildbot.changes.Request): (string|buildbot.changes.Response|nil) Answers requests to /change_source/NAME.
---@field compare_attrs? string[] The fields whose change makes a reconfig restart the source.

---@class buildbot.changes.PollingChangeSourceOptions
---@field name string Unique among change sources; the key of its state.
---@field poll fun(self: buildbot.changes.LuaSource) Looks for new changes; never two at once.
---@field pollInterval? integer Seconds between polls (600).
---@field pollAtLaunch? boolean Poll when the source starts.
---@field pollRandomDelayMin? integer
---@field pollRandomDelayMax? integer
---@field describe? fun(self: buildbot.changes.LuaSource): string A line for the master's log.
---@field startService? fun(self: buildbot.changes.LuaSource) Called when the source starts.
---@field stopService? fun(self: buildbot.changes.LuaSource) Called when it stops (5 s at most).
---@field handleRequest? fun(self: buildbot.changes.LuaSource, request: buildbot.changes.Request): (string|buildbot.changes.Response|nil) Answers requests to /change_source/NAME.
---@field compare_attrs? string[] The fields whose change makes a reconfig restart the source.

---A source told of changes: by requests to /change_source/NAME, or by its own timers.
---@param options buildbot.changes.ChangeSourceOptions|table
---@return buildbot.ChangeSource
function changes.ChangeSource(options) end

---A source that polls: `poll(self)` every pollInterval seconds.
---@param options buildbot.changes.PollingChangeSourceOptions|table
---@return buildbot.ChangeSource
function changes.PollingChangeSource(options) end

---@class buildbot.util.ProcessResult
---@field rc integer The exit code; -1 when killed by a signal.
---@field stdout string
---@field stderr string

---Runs a command (no shell) and waits for it without holding up the master: only from a
---change source's functions. Raises when it cannot start or exceeds `timeout`.
---@param command { [integer]: string, timeout: number?, workdir: string?, env: table<string, string>? } timeout in seconds (60); workdir relative to the master's directory.
---@return buildbot.util.ProcessResult
function util.runProcess(command) end

---@class buildbot.util.HttpResponse
---@field status integer
---@field headers table<string, string> Names in lowercase.
---@field body string

---Makes an HTTP request and waits for the answer without holding up the master: only from
---a change source's functions. Raises when there is no answer within `timeout`.
---@param request { url: string, method: string?, headers: table<string, string>?, body: string?, timeout: number? } method "GET" by default, timeout in seconds (60).
---@return buildbot.util.HttpResponse
function util.httpRequest(request) end

---Parses JSON text; null is nil.
---@param text string
---@return any
function util.jsonDecode(text) end

---@param value any Plain data.
---@return string
function util.jsonEncode(value) end
