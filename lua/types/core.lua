---@meta
-- LuaLS annotations for master.cfg.lua: the globals and the util renderables.
-- Point your editor's Lua language server at this folder ("workspace.library").

---@class buildbot.StatusTarget
---@class buildbot.Worker
---@class buildbot.BuilderConfig
---@class buildbot.Scheduler
---@class buildbot.ChangeSource
---@class buildbot.Step
---@class buildbot.Renderable
---@alias buildbot.RenderableValue string|number|boolean|table|buildbot.Renderable

---@class buildbot.List<T>: { [integer]: T }
---@field append fun(self: buildbot.List<T>, value: T)
---@field extend fun(self: buildbot.List<T>, values: T[])

---The table the master reads; `local c = BuildmasterConfig` by convention.
---@class buildbot.BuildmasterConfig
---@field title string
---@field titleURL string
---@field buildbotURL string Must end with '/'.
---@field workers buildbot.List<buildbot.Worker>
---@field slaves buildbot.List<buildbot.Worker> Old name of workers.
---@field builders buildbot.List<buildbot.BuilderConfig>
---@field schedulers buildbot.List<buildbot.Scheduler>
---@field change_source buildbot.List<buildbot.ChangeSource>|buildbot.ChangeSource
---@field status buildbot.List<buildbot.StatusTarget>
---@field services buildbot.List<buildbot.StatusTarget>
---@field db { db_url: string, db_poll_interval: number? }
---@field db_url string 0.8 spelling of c['db'].db_url.
---@field properties table<string, any>
---@field protocols { pb: { port: integer|string }?, msgpack_experimental_v7: { port: integer|string }? } Worker ports: remote workers connect over msgpack_experimental_v7 (pb is accepted, not served).
---@field slavePortnum integer|string 0.8 spelling of c['protocols'].pb.port.
---@field www table Buildbot 0.9's web server: {port=8010, ...}, the same as a WebStatus.
---@field lua { timeout: number?, memoryLimit: integer? } Limits for each Lua callback: seconds (default 5) and VM bytes (default 256 MiB).
---@field collapseRequests boolean|fun(master: any, builder: any, req1: any, req2: any): boolean The rule of builders that set no collapseRequests (default true).
---@field mergeRequests boolean|fun(builder: any, req1: any, req2: any): boolean 0.8 form of collapseRequests (no master argument).
---@field outbox { retryDelay: number?, maxRetryDelay: number?, giveUpAfter: number? } How status targets retry delivery, in seconds (defaults 1, 300, 86400).
BuildmasterConfig = {}

---@class buildbot.Namespaces
---@field status buildbot.status
---@field util buildbot.util
---@field steps buildbot.steps
---@field schedulers buildbot.schedulers
---@field changes buildbot.changes
---@field worker buildbot.worker
---@field buildslave buildbot.buildslave
buildbot = {}

---@class buildbot.util
---@field Results table<integer, string> Indexed by result code from 0: util.Results[2] == "failure".
---@field SUCCESS integer
---@field WARNINGS integer
---@field FAILURE integer
---@field SKIPPED integer
---@field EXCEPTION integer
---@field RETRY integer
---@field CANCELLED integer
util = {}

---Python %-formatting over build data: %(prop:NAME)s, %(src:CODEBASE:ATTR)s, %(kw:NAME)s,
---%(worker:NAME)s, each with the :-default, :~default, :+replacement, :?|yes|no and
---:#?|yes|no forms.
---@param format string
---@param ... buildbot.RenderableValue|table<string, buildbot.RenderableValue>
---@return buildbot.Renderable
function util.Interpolate(format, ...) end

---@class buildbot.util.PropertyOptions
---@field name? string
---@field default? buildbot.RenderableValue Used when the property is missing (or false, with defaultWhenFalse).
---@field defaultWhenFalse? boolean Default true.

---@param name string|buildbot.util.PropertyOptions
---@param default? buildbot.RenderableValue|buildbot.util.PropertyOptions
---@return buildbot.Renderable
function util.Property(name, default) end

---@param fn fun(props: buildbot.Properties, ...): any
---@return buildbot.Renderable
function util.renderer(fn) end

---@param fn function
---@param ... buildbot.RenderableValue
---@return buildbot.Renderable
function util.Transform(fn, ...) end

---@param format string
---@param ... string|table<string, fun(props: buildbot.Properties): any>
---@return buildbot.Renderable
function util.WithProperties(format, ...) end

---@class buildbot.util.FlattenListOptions
---@field nestedlist buildbot.RenderableValue[]
---@field types? any Refused: every nested table is flattened.

---@param nestedlist buildbot.RenderableValue[]|buildbot.util.FlattenListOptions
---@return buildbot.Renderable
function util.FlattenList(nestedlist) end

---@class buildbot.Properties
---@field getProperty fun(self: buildbot.Properties, name: string, default?: any): any
---@field hasProperty fun(self: buildbot.Properties, name: string): boolean
---@field has_key fun(self: buildbot.Properties, name: string): boolean
---@field asDict fun(self: buildbot.Properties): table<string, {[1]: any, [2]: string}>
---@field render fun(self: buildbot.Properties, value: buildbot.RenderableValue): any

---@param s string
---@return string
function string.title(s) end
