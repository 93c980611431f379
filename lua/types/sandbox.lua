---@meta
-- What master.cfg.lua (and every function it hands the master: formatters, renderers,
-- lookups) may use of Lua's standard library. Evaluating a config reads and computes; it
-- never exits, spawns, writes, deletes, or loads binary or C code, because `checkconfig`
-- and every reconfig run it again. Calling a function taken away is an error at the line
-- that called it, saying what to use instead.
--
-- Kept whole: the base functions (print, pairs, pcall, tostring, ...), coroutine, string,
-- table, math, utf8; os.getenv, os.time, os.date, os.clock, os.difftime; io.write and
-- print (to the master's output); require of Lua modules on package.path.
--
-- Kept for reading: io.open(path) and io.open(path, "r"), io.lines(path), io.input(path),
-- io.read once io.input named a file; regular files only (a pipe or a device could block
-- the master).
--
-- Kept as text only: load, loadfile and dofile take text chunks (mode "t"); require finds
-- Lua files only (package.cpath is empty).
--
-- Limits: evaluation stops after 10 s or 512 MiB, callbacks after c['lua'] (5 s, 256 MiB);
-- a pcall, a coroutine or a metamethod cannot get past either.

---@deprecated A config cannot stop the master: call error(message) to report a problem.
function os.exit(code, close) end

---@deprecated A config runs no command: run commands in a build step (steps.ShellCommand).
function os.execute(command) end

---@deprecated A config runs no command: run commands in a build step (steps.ShellCommand).
function io.popen(prog, mode) end

---@deprecated A config changes no file: change files in a build step (steps.ShellCommand).
function os.remove(filename) end

---@deprecated A config changes no file: change files in a build step (steps.ShellCommand).
function os.rename(oldname, newname) end

---@deprecated It creates a file: keep the data in Lua values.
function os.tmpname() end

---@deprecated It creates a file: keep the data in Lua values.
function io.tmpfile() end

---Reading only: mode nil, "r" or "rb"; writing ("w", "a", "+") is an error.
---@param filename string A regular file.
---@param mode? "r"|"rb"
---@return file*?
---@return string? errmsg
function io.open(filename, mode) end

---Only io.stdout and io.stderr: a config writes no file.
---@param file? file*
---@return file*
function io.output(file) end

---Only to read the locale: os.setlocale() with no locale.
---@return string
function os.setlocale() end

---Text chunks only (mode "t").
---@param chunk string|function
---@param chunkname? string
---@param mode? "t"
---@param env? table
function load(chunk, chunkname, mode, env) end

---Text chunks only (mode "t"); a file name is required.
---@param filename string
---@param mode? "t"
---@param env? table
function loadfile(filename, mode, env) end

---A file name is required; text chunks only.
---@param filename string
function dofile(filename) end

---@deprecated A config loads no C code: write the module in Lua.
function package.loadlib(libname, funcname) end

---A metatable with a __gc field is refused: finalizers run where no time limit reaches.
---@generic T
---@param object T
---@param metatable? table
---@return T
function setmetatable(object, metatable) end

---Of the debug library, a config has debug.traceback only.
debug = {}

---@param message? any
---@param level? integer
---@return string
function debug.traceback(message, level) end
