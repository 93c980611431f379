---@meta
-- LuaLS annotations for the build side: workers, builders, factories, steps, schedulers,
-- change filters and change sources.
-- An option that can also be given by position (a worker's name, IRC's host and nick) is
-- optional in its options table; the master reports it when it is given neither way.

---@class buildbot.worker
worker = {}
---@class buildbot.buildslave
buildslave = {}
---@class buildbot.steps
steps = {}
---@class buildbot.schedulers
schedulers = {}
---@class buildbot.changes
changes = {}

---@class buildbot.util.BuildFactory
---@field addStep fun(self: buildbot.util.BuildFactory, step: buildbot.Step)
---@field addSteps fun(self: buildbot.util.BuildFactory, steps: buildbot.Step[])
---@class buildbot.util.ShellArg
---@class buildbot.util.ForceParameter
---@class buildbot.util.CodebaseParameter
---@class buildbot.util.ChangeFilter

---@class buildbot.worker.WorkerOptions
---@field name? string
---@field password? string
---@field max_builds? integer Builds at once (no limit by default).
---@field notify_on_missing? string|string[] Mailed when the worker is gone missing_timeout seconds.
---@field missing_timeout? integer Seconds (3600); 0 turns the notice off.
---@field properties? table<string, any>
---@field defaultProperties? table<string, any>
---@field locks? any Not implemented yet.
---@field keepalive_interval? integer Seconds (3600).
---@field machine_name? string Not implemented yet.

---@param name string|buildbot.worker.WorkerOptions
---@param password string|buildbot.worker.WorkerOptions
---@param options? buildbot.worker.WorkerOptions
---@return buildbot.Worker
function worker.Worker(name, password, options) end

---@class buildbot.buildslave.BuildSlaveOptions
---@field name? string
---@field password? string
---@field max_builds? integer Builds at once (no limit by default).
---@field notify_on_missing? string|string[] Mailed when the worker is gone missing_timeout seconds.
---@field missing_timeout? integer Seconds (3600); 0 turns the notice off.
---@field properties? table<string, any>
---@field defaultProperties? table<string, any>
---@field locks? any Not implemented yet.
---@field keepalive_interval? integer Seconds (3600).
---@field machine_name? string Not implemented yet.

---@param name string|buildbot.buildslave.BuildSlaveOptions
---@param password string|buildbot.buildslave.BuildSlaveOptions
---@param options? buildbot.buildslave.BuildSlaveOptions
---@return buildbot.Worker
function buildslave.BuildSlave(name, password, options) end

---@class buildbot.worker.LocalWorkerOptions
---@field name? string
---@field workdir? string Under BASEDIR/workers; default the name.
---@field max_builds? integer Builds at once (no limit by default).
---@field notify_on_missing? string|string[] Mailed when the worker is gone missing_timeout seconds.
---@field missing_timeout? integer Seconds (3600); 0 turns the notice off.
---@field properties? table<string, any>
---@field defaultProperties? table<string, any>
---@field locks? any Not implemented yet.
---@field keepalive_interval? integer Seconds (3600).
---@field machine_name? string Not implemented yet.

---@param name string|buildbot.worker.LocalWorkerOptions
---@param options? buildbot.worker.LocalWorkerOptions
---@return buildbot.Worker
function worker.LocalWorker(name, options) end

---@class buildbot.util.BuilderConfigOptions
---@field name string
---@field workername? string
---@field workernames? string|string[]
---@field slavename? string Old name of workername.
---@field slavenames? string|string[] Old name of workernames.
---@field builddir? string Default: the name with unsafe characters as _.
---@field workerbuilddir? string Default: builddir.
---@field slavebuilddir? string Old name of workerbuilddir.
---@field factory buildbot.util.BuildFactory
---@field tags? string[]
---@field category? string Old name of tags.
---@field nextWorker? fun(builder: any, workers: any[], request: any): any
---@field nextSlave? function Old name of nextWorker.
---@field nextBuild? fun(builder: any, requests: any[]): any
---@field canStartBuild? fun(builder: any, worker: any, request: any): boolean
---@field locks? any Not implemented yet.
---@field env? table<string, buildbot.RenderableValue>
---@field properties? table<string, any>
---@field defaultProperties? table<string, any>
---@field collapseRequests? boolean|fun(master: any, builder: any, req1: any, req2: any): boolean
---@field mergeRequests? boolean|fun(builder: any, req1: any, req2: any): boolean 0.8 form of collapseRequests (no master argument).
---@field description? string
---@field description_format? 'markdown'
---@field project? string Not implemented yet.
---@field do_build_if? fun(build: any): boolean

---@param options? buildbot.util.BuilderConfigOptions
---@return buildbot.BuilderConfig
function util.BuilderConfig(options) end

---@class buildbot.util.BuildFactoryOptions
---@field steps? buildbot.Step[]

---@param steps? buildbot.Step[]|buildbot.util.BuildFactoryOptions
---@return buildbot.util.BuildFactory
function util.BuildFactory(steps) end

---@class buildbot.steps.ShellCommandOptions
---@field command buildbot.RenderableValue|buildbot.RenderableValue[] A string for the shell, or a list of arguments.
---@field env? table<string, buildbot.RenderableValue>
---@field want_stdout? boolean Default true.
---@field want_stderr? boolean Default true.
---@field usePTY? boolean
---@field logfiles? table<string, string|{filename: string, follow?: boolean}> Worker files shown as logs.
---@field lazylogfiles? boolean Leave out logfiles that stay empty.
---@field timeout? integer|false Seconds without output before the command is killed (1200); false for never.
---@field maxTime? integer|false Seconds the command may run.
---@field max_lines? integer
---@field logEnviron? boolean Default true.
---@field interruptSignal? string Default "KILL".
---@field sigtermTime? integer|false Seconds between SIGTERM and interruptSignal.
---@field initialStdin? string
---@field decodeRC? table<integer, integer> Exit codes to results, default {[0]=util.SUCCESS}.
---@field name? string Step name (at most 50 characters).
---@field description? string|string[] Shown while the step runs.
---@field descriptionDone? string|string[] Shown when it is done.
---@field descriptionSuffix? string|string[]
---@field haltOnFailure? boolean Stop the build when this step fails.
---@field flunkOnFailure? boolean A failure fails the build (default true).
---@field warnOnFailure? boolean
---@field warnOnWarnings? boolean
---@field flunkOnWarnings? boolean
---@field alwaysRun? boolean Run even after a halting failure.
---@field doStepIf? boolean|fun(step: any): boolean Default true.
---@field hideStepIf? boolean|fun(result: integer, step: any): boolean Default false.
---@field locks? any Not implemented yet.
---@field logEncoding? string
---@field updateBuildSummaryPolicy? boolean|integer[] Results (util.FAILURE, ...) whose summary becomes the build's.
---@field workdir? buildbot.RenderableValue Relative to the builder's directory.

---@param options? buildbot.steps.ShellCommandOptions
---@return buildbot.Step
function steps.ShellCommand(options) end

---@class buildbot.steps.ConfigureOptions
---@field command? buildbot.RenderableValue|buildbot.RenderableValue[] Default {"./configure"}.
---@field env? table<string, buildbot.RenderableValue>
---@field want_stdout? boolean Default true.
---@field want_stderr? boolean Default true.
---@field usePTY? boolean
---@field logfiles? table<string, string|{filename: string, follow?: boolean}> Worker files shown as logs.
---@field lazylogfiles? boolean Leave out logfiles that stay empty.
---@field timeout? integer|false Seconds without output before the command is killed (1200); false for never.
---@field maxTime? integer|false Seconds the command may run.
---@field max_lines? integer
---@field logEnviron? boolean Default true.
---@field interruptSignal? string Default "KILL".
---@field sigtermTime? integer|false Seconds between SIGTERM and interruptSignal.
---@field initialStdin? string
---@field decodeRC? table<integer, integer> Exit codes to results, default {[0]=util.SUCCESS}.
---@field name? string Step name (at most 50 characters).
---@field description? string|string[] Shown while the step runs.
---@field descriptionDone? string|string[] Shown when it is done.
---@field descriptionSuffix? string|string[]
---@field haltOnFailure? boolean Stop the build when this step fails.
---@field flunkOnFailure? boolean A failure fails the build (default true).
---@field warnOnFailure? boolean
---@field warnOnWarnings? boolean
---@field flunkOnWarnings? boolean
---@field alwaysRun? boolean Run even after a halting failure.
---@field doStepIf? boolean|fun(step: any): boolean Default true.
---@field hideStepIf? boolean|fun(result: integer, step: any): boolean Default false.
---@field locks? any Not implemented yet.
---@field logEncoding? string
---@field updateBuildSummaryPolicy? boolean|integer[] Results (util.FAILURE, ...) whose summary becomes the build's.
---@field workdir? buildbot.RenderableValue Relative to the builder's directory.

---@param options? buildbot.steps.ConfigureOptions
---@return buildbot.Step
function steps.Configure(options) end

---@class buildbot.steps.CompileOptions
---@field command? buildbot.RenderableValue|buildbot.RenderableValue[] Default {"make", "all"}.
---@field warningPattern? string|false Regex matched at line start; false counts no warnings.
---@field warningExtractor? any Not implemented yet.
---@field maxWarnCount? integer More warnings fail the step.
---@field directoryEnterPattern? string
---@field directoryLeavePattern? string
---@field suppressionFile? buildbot.RenderableValue
---@field suppressionList? any Not implemented yet.
---@field env? table<string, buildbot.RenderableValue>
---@field want_stdout? boolean Default true.
---@field want_stderr? boolean Default true.
---@field usePTY? boolean
---@field logfiles? table<string, string|{filename: string, follow?: boolean}> Worker files shown as logs.
---@field lazylogfiles? boolean Leave out logfiles that stay empty.
---@field timeout? integer|false Seconds without output before the command is killed (1200); false for never.
---@field maxTime? integer|false Seconds the command may run.
---@field max_lines? integer
---@field logEnviron? boolean Default true.
---@field interruptSignal? string Default "KILL".
---@field sigtermTime? integer|false Seconds between SIGTERM and interruptSignal.
---@field initialStdin? string
---@field decodeRC? table<integer, integer> Exit codes to results, default {[0]=util.SUCCESS}.
---@field name? string Step name (at most 50 characters).
---@field description? string|string[] Shown while the step runs.
---@field descriptionDone? string|string[] Shown when it is done.
---@field descriptionSuffix? string|string[]
---@field haltOnFailure? boolean Stop the build when this step fails.
---@field flunkOnFailure? boolean A failure fails the build (default true).
---@field warnOnFailure? boolean
---@field warnOnWarnings? boolean
---@field flunkOnWarnings? boolean
---@field alwaysRun? boolean Run even after a halting failure.
---@field doStepIf? boolean|fun(step: any): boolean Default true.
---@field hideStepIf? boolean|fun(result: integer, step: any): boolean Default false.
---@field locks? any Not implemented yet.
---@field logEncoding? string
---@field updateBuildSummaryPolicy? boolean|integer[] Results (util.FAILURE, ...) whose summary becomes the build's.
---@field workdir? buildbot.RenderableValue Relative to the builder's directory.

---@param options? buildbot.steps.CompileOptions
---@return buildbot.Step
function steps.Compile(options) end

---@class buildbot.steps.TestOptions
---@field command? buildbot.RenderableValue|buildbot.RenderableValue[] Default {"make", "test"}.
---@field warningPattern? string|false Regex matched at line start; false counts no warnings.
---@field warningExtractor? any Not implemented yet.
---@field maxWarnCount? integer More warnings fail the step.
---@field directoryEnterPattern? string
---@field directoryLeavePattern? string
---@field suppressionFile? buildbot.RenderableValue
---@field suppressionList? any Not implemented yet.
---@field env? table<string, buildbot.RenderableValue>
---@field want_stdout? boolean Default true.
---@field want_stderr? boolean Default true.
---@field usePTY? boolean
---@field logfiles? table<string, string|{filename: string, follow?: boolean}> Worker files shown as logs.
---@field lazylogfiles? boolean Leave out logfiles that stay empty.
---@field timeout? integer|false Seconds without output before the command is killed (1200); false for never.
---@field maxTime? integer|false Seconds the command may run.
---@field max_lines? integer
---@field logEnviron? boolean Default true.
---@field interruptSignal? string Default "KILL".
---@field sigtermTime? integer|false Seconds between SIGTERM and interruptSignal.
---@field initialStdin? string
---@field decodeRC? table<integer, integer> Exit codes to results, default {[0]=util.SUCCESS}.
---@field name? string Step name (at most 50 characters).
---@field description? string|string[] Shown while the step runs.
---@field descriptionDone? string|string[] Shown when it is done.
---@field descriptionSuffix? string|string[]
---@field haltOnFailure? boolean Stop the build when this step fails.
---@field flunkOnFailure? boolean A failure fails the build (default true).
---@field warnOnFailure? boolean
---@field warnOnWarnings? boolean
---@field flunkOnWarnings? boolean
---@field alwaysRun? boolean Run even after a halting failure.
---@field doStepIf? boolean|fun(step: any): boolean Default true.
---@field hideStepIf? boolean|fun(result: integer, step: any): boolean Default false.
---@field locks? any Not implemented yet.
---@field logEncoding? string
---@field updateBuildSummaryPolicy? boolean|integer[] Results (util.FAILURE, ...) whose summary becomes the build's.
---@field workdir? buildbot.RenderableValue Relative to the builder's directory.

---@param options? buildbot.steps.TestOptions
---@return buildbot.Step
function steps.Test(options) end

---@class buildbot.steps.ShellSequenceOptions
---@field commands buildbot.util.ShellArg[]
---@field env? table<string, buildbot.RenderableValue>
---@field want_stdout? boolean Default true.
---@field want_stderr? boolean Default true.
---@field usePTY? boolean
---@field logfiles? table<string, string|{filename: string, follow?: boolean}> Worker files shown as logs.
---@field lazylogfiles? boolean Leave out logfiles that stay empty.
---@field timeout? integer|false Seconds without output before the command is killed (1200); false for never.
---@field maxTime? integer|false Seconds the command may run.
---@field max_lines? integer
---@field logEnviron? boolean Default true.
---@field interruptSignal? string Default "KILL".
---@field sigtermTime? integer|false Seconds between SIGTERM and interruptSignal.
---@field initialStdin? string
---@field decodeRC? table<integer, integer> Exit codes to results, default {[0]=util.SUCCESS}.
---@field name? string Step name (at most 50 characters).
---@field description? string|string[] Shown while the step runs.
---@field descriptionDone? string|string[] Shown when it is done.
---@field descriptionSuffix? string|string[]
---@field haltOnFailure? boolean Stop the build when this step fails.
---@field flunkOnFailure? boolean A failure fails the build (default true).
---@field warnOnFailure? boolean
---@field warnOnWarnings? boolean
---@field flunkOnWarnings? boolean
---@field alwaysRun? boolean Run even after a halting failure.
---@field doStepIf? boolean|fun(step: any): boolean Default true.
---@field hideStepIf? boolean|fun(result: integer, step: any): boolean Default false.
---@field locks? any Not implemented yet.
---@field logEncoding? string
---@field updateBuildSummaryPolicy? boolean|integer[] Results (util.FAILURE, ...) whose summary becomes the build's.
---@field workdir? buildbot.RenderableValue Relative to the builder's directory.

---@param options? buildbot.steps.ShellSequenceOptions
---@return buildbot.Step
function steps.ShellSequence(options) end

---@class buildbot.util.ShellArgOptions
---@field command? buildbot.RenderableValue|buildbot.RenderableValue[] A string for the shell, or a list of arguments.
---@field logname? string
---@field haltOnFailure? boolean
---@field flunkOnFailure? boolean Default true.
---@field warnOnFailure? boolean
---@field warnOnWarnings? boolean
---@field flunkOnWarnings? boolean

---@param command buildbot.RenderableValue|buildbot.RenderableValue[]|buildbot.util.ShellArgOptions
---@param logname string|buildbot.util.ShellArgOptions
---@param options? buildbot.util.ShellArgOptions
---@return buildbot.util.ShellArg
function util.ShellArg(command, logname, options) end

---@class buildbot.steps.SetPropertyFromCommandOptions
---@field command buildbot.RenderableValue|buildbot.RenderableValue[] A string for the shell, or a list of arguments.
---@field property? buildbot.RenderableValue Exactly one of property and extract_fn.
---@field extract_fn? fun(rc: integer, stdout: string, stderr: string): table<string, any>
---@field strip? boolean Default true.
---@field includeStdout? boolean Default true.
---@field includeStderr? boolean
---@field env? table<string, buildbot.RenderableValue>
---@field want_stdout? boolean Default true.
---@field want_stderr? boolean Default true.
---@field usePTY? boolean
---@field logfiles? table<string, string|{filename: string, follow?: boolean}> Worker files shown as logs.
---@field lazylogfiles? boolean Leave out logfiles that stay empty.
---@field timeout? integer|false Seconds without output before the command is killed (1200); false for never.
---@field maxTime? integer|false Seconds the command may run.
---@field max_lines? integer
---@field logEnviron? boolean Default true.
---@field interruptSignal? string Default "KILL".
---@field sigtermTime? integer|false Seconds between SIGTERM and interruptSignal.
---@field initialStdin? string
---@field decodeRC? table<integer, integer> Exit codes to results, default {[0]=util.SUCCESS}.
---@field name? string Step name (at most 50 characters).
---@field description? string|string[] Shown while the step runs.
---@field descriptionDone? string|string[] Shown when it is done.
---@field descriptionSuffix? string|string[]
---@field haltOnFailure? boolean Stop the build when this step fails.
---@field flunkOnFailure? boolean A failure fails the build (default true).
---@field warnOnFailure? boolean
---@field warnOnWarnings? boolean
---@field flunkOnWarnings? boolean
---@field alwaysRun? boolean Run even after a halting failure.
---@field doStepIf? boolean|fun(step: any): boolean Default true.
---@field hideStepIf? boolean|fun(result: integer, step: any): boolean Default false.
---@field locks? any Not implemented yet.
---@field logEncoding? string
---@field updateBuildSummaryPolicy? boolean|integer[] Results (util.FAILURE, ...) whose summary becomes the build's.
---@field workdir? buildbot.RenderableValue Relative to the builder's directory.

---@param options? buildbot.steps.SetPropertyFromCommandOptions
---@return buildbot.Step
function steps.SetPropertyFromCommand(options) end

---@class buildbot.steps.MasterShellCommandOptions
---@field command? buildbot.RenderableValue|buildbot.RenderableValue[] A string for the shell, or a list of arguments.
---@field env? table<string, buildbot.RenderableValue>
---@field usePTY? boolean
---@field interruptSignal? string
---@field logEnviron? boolean
---@field runtime_timeout? integer Seconds (3600).
---@field name? string Step name (at most 50 characters).
---@field description? string|string[] Shown while the step runs.
---@field descriptionDone? string|string[] Shown when it is done.
---@field descriptionSuffix? string|string[]
---@field haltOnFailure? boolean Stop the build when this step fails.
---@field flunkOnFailure? boolean A failure fails the build (default true).
---@field warnOnFailure? boolean
---@field warnOnWarnings? boolean
---@field flunkOnWarnings? boolean
---@field alwaysRun? boolean Run even after a halting failure.
---@field doStepIf? boolean|fun(step: any): boolean Default true.
---@field hideStepIf? boolean|fun(result: integer, step: any): boolean Default false.
---@field locks? any Not implemented yet.
---@field logEncoding? string
---@field updateBuildSummaryPolicy? boolean|integer[] Results (util.FAILURE, ...) whose summary becomes the build's.
---@field workdir? buildbot.RenderableValue Relative to the builder's directory.

---@param command buildbot.RenderableValue|buildbot.RenderableValue[]|buildbot.steps.MasterShellCommandOptions
---@param options? buildbot.steps.MasterShellCommandOptions
---@return buildbot.Step
function steps.MasterShellCommand(command, options) end

---@class buildbot.steps.GitOptions
---@field repourl? buildbot.RenderableValue
---@field branch? buildbot.RenderableValue Default "HEAD".
---@field mode? 'incremental'|'full'
---@field method? 'clean'|'fresh'|'clobber'|'copy' Only with mode full (default fresh).
---@field submodules? boolean
---@field remoteSubmodules? boolean
---@field tags? boolean
---@field shallow? boolean|integer Clone depth.
---@field reference? buildbot.RenderableValue
---@field filters? string[]
---@field progress? boolean Default true.
---@field retryFetch? boolean
---@field clobberOnFailure? boolean
---@field getDescription? boolean|table<string, any> git describe options.
---@field config? table<string, string>
---@field origin? string
---@field sshPrivateKey? buildbot.RenderableValue
---@field sshHostKey? buildbot.RenderableValue
---@field sshKnownHosts? buildbot.RenderableValue
---@field port? integer Default 22.
---@field auth_credentials? any Not implemented yet.
---@field git_credentials? any Not implemented yet.
---@field codebase? string
---@field alwaysUseLatest? boolean
---@field timeout? integer Seconds (1200).
---@field retry? integer[] {delay, repeats}.
---@field env? table<string, buildbot.RenderableValue>
---@field logEnviron? boolean
---@field name? string Step name (at most 50 characters).
---@field description? string|string[] Shown while the step runs.
---@field descriptionDone? string|string[] Shown when it is done.
---@field descriptionSuffix? string|string[]
---@field haltOnFailure? boolean Stop the build when this step fails.
---@field flunkOnFailure? boolean A failure fails the build (default true).
---@field warnOnFailure? boolean
---@field warnOnWarnings? boolean
---@field flunkOnWarnings? boolean
---@field alwaysRun? boolean Run even after a halting failure.
---@field doStepIf? boolean|fun(step: any): boolean Default true.
---@field hideStepIf? boolean|fun(result: integer, step: any): boolean Default false.
---@field locks? any Not implemented yet.
---@field logEncoding? string
---@field updateBuildSummaryPolicy? boolean|integer[] Results (util.FAILURE, ...) whose summary becomes the build's.
---@field workdir? buildbot.RenderableValue Relative to the builder's directory.

---@param repourl buildbot.RenderableValue|buildbot.steps.GitOptions
---@param options? buildbot.steps.GitOptions
---@return buildbot.Step
function steps.Git(repourl, options) end

---@class buildbot.steps.SetPropertyOptions
---@field property? buildbot.RenderableValue
---@field value? buildbot.RenderableValue
---@field name? string Step name (at most 50 characters).
---@field description? string|string[] Shown while the step runs.
---@field descriptionDone? string|string[] Shown when it is done.
---@field descriptionSuffix? string|string[]
---@field haltOnFailure? boolean Stop the build when this step fails.
---@field flunkOnFailure? boolean A failure fails the build (default true).
---@field warnOnFailure? boolean
---@field warnOnWarnings? boolean
---@field flunkOnWarnings? boolean
---@field alwaysRun? boolean Run even after a halting failure.
---@field doStepIf? boolean|fun(step: any): boolean Default true.
---@field hideStepIf? boolean|fun(result: integer, step: any): boolean Default false.
---@field locks? any Not implemented yet.
---@field logEncoding? string
---@field updateBuildSummaryPolicy? boolean|integer[] Results (util.FAILURE, ...) whose summary becomes the build's.
---@field workdir? buildbot.RenderableValue Relative to the builder's directory.

---@param property buildbot.RenderableValue|buildbot.steps.SetPropertyOptions
---@param value buildbot.RenderableValue|buildbot.steps.SetPropertyOptions
---@param options? buildbot.steps.SetPropertyOptions
---@return buildbot.Step
function steps.SetProperty(property, value, options) end

---@class buildbot.steps.TriggerOptions
---@field schedulerNames string[]
---@field unimportantSchedulerNames? string[]
---@field waitForFinish? boolean
---@field updateSourceStamp? boolean
---@field alwaysUseLatest? boolean
---@field sourceStamp? table<string, buildbot.RenderableValue>
---@field sourceStamps? table<string, buildbot.RenderableValue>[]
---@field set_properties? table<string, buildbot.RenderableValue>
---@field copy_properties? string[]
---@field parent_relationship? string
---@field name? string Step name (at most 50 characters).
---@field description? string|string[] Shown while the step runs.
---@field descriptionDone? string|string[] Shown when it is done.
---@field descriptionSuffix? string|string[]
---@field haltOnFailure? boolean Stop the build when this step fails.
---@field flunkOnFailure? boolean A failure fails the build (default true).
---@field warnOnFailure? boolean
---@field warnOnWarnings? boolean
---@field flunkOnWarnings? boolean
---@field alwaysRun? boolean Run even after a halting failure.
---@field doStepIf? boolean|fun(step: any): boolean Default true.
---@field hideStepIf? boolean|fun(result: integer, step: any): boolean Default false.
---@field locks? any Not implemented yet.
---@field logEncoding? string
---@field updateBuildSummaryPolicy? boolean|integer[] Results (util.FAILURE, ...) whose summary becomes the build's.
---@field workdir? buildbot.RenderableValue Relative to the builder's directory.

---@param options? buildbot.steps.TriggerOptions
---@return buildbot.Step
function steps.Trigger(options) end

---@class buildbot.steps.FileUploadOptions
---@field workersrc? buildbot.RenderableValue
---@field slavesrc? buildbot.RenderableValue Old name of workersrc.
---@field masterdest? buildbot.RenderableValue
---@field maxsize? integer
---@field blocksize? integer
---@field mode? integer|string 420 or "0644".
---@field keepstamp? boolean
---@field url? buildbot.RenderableValue
---@field urlText? buildbot.RenderableValue
---@field name? string Step name (at most 50 characters).
---@field description? string|string[] Shown while the step runs.
---@field descriptionDone? string|string[] Shown when it is done.
---@field descriptionSuffix? string|string[]
---@field haltOnFailure? boolean Stop the build when this step fails.
---@field flunkOnFailure? boolean A failure fails the build (default true).
---@field warnOnFailure? boolean
---@field warnOnWarnings? boolean
---@field flunkOnWarnings? boolean
---@field alwaysRun? boolean Run even after a halting failure.
---@field doStepIf? boolean|fun(step: any): boolean Default true.
---@field hideStepIf? boolean|fun(result: integer, step: any): boolean Default false.
---@field locks? any Not implemented yet.
---@field logEncoding? string
---@field updateBuildSummaryPolicy? boolean|integer[] Results (util.FAILURE, ...) whose summary becomes the build's.
---@field workdir? buildbot.RenderableValue Relative to the builder's directory.

---@param workersrc buildbot.RenderableValue|buildbot.steps.FileUploadOptions
---@param masterdest buildbot.RenderableValue|buildbot.steps.FileUploadOptions
---@param options? buildbot.steps.FileUploadOptions
---@return buildbot.Step
function steps.FileUpload(workersrc, masterdest, options) end

---@class buildbot.steps.FileDownloadOptions
---@field mastersrc? buildbot.RenderableValue
---@field workerdest? buildbot.RenderableValue
---@field slavedest? buildbot.RenderableValue Old name of workerdest.
---@field maxsize? integer
---@field blocksize? integer
---@field mode? integer|string
---@field name? string Step name (at most 50 characters).
---@field description? string|string[] Shown while the step runs.
---@field descriptionDone? string|string[] Shown when it is done.
---@field descriptionSuffix? string|string[]
---@field haltOnFailure? boolean Stop the build when this step fails.
---@field flunkOnFailure? boolean A failure fails the build (default true).
---@field warnOnFailure? boolean
---@field warnOnWarnings? boolean
---@field flunkOnWarnings? boolean
---@field alwaysRun? boolean Run even after a halting failure.
---@field doStepIf? boolean|fun(step: any): boolean Default true.
---@field hideStepIf? boolean|fun(result: integer, step: any): boolean Default false.
---@field locks? any Not implemented yet.
---@field logEncoding? string
---@field updateBuildSummaryPolicy? boolean|integer[] Results (util.FAILURE, ...) whose summary becomes the build's.
---@field workdir? buildbot.RenderableValue Relative to the builder's directory.

---@param mastersrc buildbot.RenderableValue|buildbot.steps.FileDownloadOptions
---@param workerdest buildbot.RenderableValue|buildbot.steps.FileDownloadOptions
---@param options? buildbot.steps.FileDownloadOptions
---@return buildbot.Step
function steps.FileDownload(mastersrc, workerdest, options) end

---@class buildbot.steps.DirectoryUploadOptions
---@field workersrc? buildbot.RenderableValue Relative to the step's workdir.
---@field slavesrc? buildbot.RenderableValue Old name of workersrc.
---@field masterdest? buildbot.RenderableValue Relative to the master's base directory.
---@field maxsize? integer Bytes of the archive.
---@field blocksize? integer
---@field compress? 'gz'|'bz2'
---@field url? buildbot.RenderableValue Not implemented yet.
---@field urlText? buildbot.RenderableValue Not implemented yet.
---@field name? string Step name (at most 50 characters).
---@field description? string|string[] Shown while the step runs.
---@field descriptionDone? string|string[] Shown when it is done.
---@field descriptionSuffix? string|string[]
---@field haltOnFailure? boolean Stop the build when this step fails.
---@field flunkOnFailure? boolean A failure fails the build (default true).
---@field warnOnFailure? boolean
---@field warnOnWarnings? boolean
---@field flunkOnWarnings? boolean
---@field alwaysRun? boolean Run even after a halting failure.
---@field doStepIf? boolean|fun(step: any): boolean Default true.
---@field hideStepIf? boolean|fun(result: integer, step: any): boolean Default false.
---@field locks? any Not implemented yet.
---@field logEncoding? string
---@field updateBuildSummaryPolicy? boolean|integer[] Results (util.FAILURE, ...) whose summary becomes the build's.
---@field workdir? buildbot.RenderableValue Relative to the builder's directory.

---@param workersrc buildbot.RenderableValue|buildbot.steps.DirectoryUploadOptions
---@param masterdest buildbot.RenderableValue|buildbot.steps.DirectoryUploadOptions
---@param options? buildbot.steps.DirectoryUploadOptions
---@return buildbot.Step
function steps.DirectoryUpload(workersrc, masterdest, options) end

---@class buildbot.steps.MultipleFileUploadOptions
---@field workersrcs? buildbot.RenderableValue|string[]
---@field slavesrcs? buildbot.RenderableValue|string[] Old name of workersrcs.
---@field masterdest? buildbot.RenderableValue A directory; each source goes in under its own name.
---@field maxsize? integer
---@field blocksize? integer
---@field glob? boolean The sources are patterns, expanded on the worker.
---@field mode? integer|string
---@field compress? 'gz'|'bz2'
---@field keepstamp? boolean
---@field url? buildbot.RenderableValue Not implemented yet.
---@field urlText? buildbot.RenderableValue Not implemented yet.
---@field name? string Step name (at most 50 characters).
---@field description? string|string[] Shown while the step runs.
---@field descriptionDone? string|string[] Shown when it is done.
---@field descriptionSuffix? string|string[]
---@field haltOnFailure? boolean Stop the build when this step fails.
---@field flunkOnFailure? boolean A failure fails the build (default true).
---@field warnOnFailure? boolean
---@field warnOnWarnings? boolean
---@field flunkOnWarnings? boolean
---@field alwaysRun? boolean Run even after a halting failure.
---@field doStepIf? boolean|fun(step: any): boolean Default true.
---@field hideStepIf? boolean|fun(result: integer, step: any): boolean Default false.
---@field locks? any Not implemented yet.
---@field logEncoding? string
---@field updateBuildSummaryPolicy? boolean|integer[] Results (util.FAILURE, ...) whose summary becomes the build's.
---@field workdir? buildbot.RenderableValue Relative to the builder's directory.

---@param workersrcs buildbot.RenderableValue|buildbot.steps.MultipleFileUploadOptions
---@param masterdest buildbot.RenderableValue|buildbot.steps.MultipleFileUploadOptions
---@param options? buildbot.steps.MultipleFileUploadOptions
---@return buildbot.Step
function steps.MultipleFileUpload(workersrcs, masterdest, options) end

---@class buildbot.steps.StringDownloadOptions
---@field s? buildbot.RenderableValue
---@field workerdest? buildbot.RenderableValue
---@field slavedest? buildbot.RenderableValue Old name of workerdest.
---@field maxsize? integer
---@field blocksize? integer
---@field mode? integer|string
---@field name? string Step name (at most 50 characters).
---@field description? string|string[] Shown while the step runs.
---@field descriptionDone? string|string[] Shown when it is done.
---@field descriptionSuffix? string|string[]
---@field haltOnFailure? boolean Stop the build when this step fails.
---@field flunkOnFailure? boolean A failure fails the build (default true).
---@field warnOnFailure? boolean
---@field warnOnWarnings? boolean
---@field flunkOnWarnings? boolean
---@field alwaysRun? boolean Run even after a halting failure.
---@field doStepIf? boolean|fun(step: any): boolean Default true.
---@field hideStepIf? boolean|fun(result: integer, step: any): boolean Default false.
---@field locks? any Not implemented yet.
---@field logEncoding? string
---@field updateBuildSummaryPolicy? boolean|integer[] Results (util.FAILURE, ...) whose summary becomes the build's.
---@field workdir? buildbot.RenderableValue Relative to the builder's directory.

---@param s buildbot.RenderableValue|buildbot.steps.StringDownloadOptions
---@param workerdest buildbot.RenderableValue|buildbot.steps.StringDownloadOptions
---@param options? buildbot.steps.StringDownloadOptions
---@return buildbot.Step
function steps.StringDownload(s, workerdest, options) end

---@class buildbot.steps.JSONStringDownloadOptions
---@field o? any Written as JSON.
---@field workerdest? buildbot.RenderableValue
---@field slavedest? buildbot.RenderableValue Old name of workerdest.
---@field maxsize? integer
---@field blocksize? integer
---@field mode? integer|string
---@field name? string Step name (at most 50 characters).
---@field description? string|string[] Shown while the step runs.
---@field descriptionDone? string|string[] Shown when it is done.
---@field descriptionSuffix? string|string[]
---@field haltOnFailure? boolean Stop the build when this step fails.
---@field flunkOnFailure? boolean A failure fails the build (default true).
---@field warnOnFailure? boolean
---@field warnOnWarnings? boolean
---@field flunkOnWarnings? boolean
---@field alwaysRun? boolean Run even after a halting failure.
---@field doStepIf? boolean|fun(step: any): boolean Default true.
---@field hideStepIf? boolean|fun(result: integer, step: any): boolean Default false.
---@field locks? any Not implemented yet.
---@field logEncoding? string
---@field updateBuildSummaryPolicy? boolean|integer[] Results (util.FAILURE, ...) whose summary becomes the build's.
---@field workdir? buildbot.RenderableValue Relative to the builder's directory.

---@param o buildbot.RenderableValue|buildbot.steps.JSONStringDownloadOptions
---@param workerdest buildbot.RenderableValue|buildbot.steps.JSONStringDownloadOptions
---@param options? buildbot.steps.JSONStringDownloadOptions
---@return buildbot.Step
function steps.JSONStringDownload(o, workerdest, options) end

---@class buildbot.steps.JSONPropertiesDownloadOptions
---@field workerdest? buildbot.RenderableValue
---@field slavedest? buildbot.RenderableValue Old name of workerdest.
---@field maxsize? integer
---@field blocksize? integer
---@field mode? integer|string
---@field name? string Step name (at most 50 characters).
---@field description? string|string[] Shown while the step runs.
---@field descriptionDone? string|string[] Shown when it is done.
---@field descriptionSuffix? string|string[]
---@field haltOnFailure? boolean Stop the build when this step fails.
---@field flunkOnFailure? boolean A failure fails the build (default true).
---@field warnOnFailure? boolean
---@field warnOnWarnings? boolean
---@field flunkOnWarnings? boolean
---@field alwaysRun? boolean Run even after a halting failure.
---@field doStepIf? boolean|fun(step: any): boolean Default true.
---@field hideStepIf? boolean|fun(result: integer, step: any): boolean Default false.
---@field locks? any Not implemented yet.
---@field logEncoding? string
---@field updateBuildSummaryPolicy? boolean|integer[] Results (util.FAILURE, ...) whose summary becomes the build's.
---@field workdir? buildbot.RenderableValue Relative to the builder's directory.

---@param workerdest buildbot.RenderableValue|buildbot.steps.JSONPropertiesDownloadOptions
---@param options? buildbot.steps.JSONPropertiesDownloadOptions
---@return buildbot.Step
function steps.JSONPropertiesDownload(workerdest, options) end

---@class buildbot.steps.CopyDirectoryOptions
---@field src? buildbot.RenderableValue Relative to the builder's directory.
---@field dest? buildbot.RenderableValue Relative to the builder's directory.
---@field timeout? integer|false Seconds without output (default 120).
---@field maxTime? integer|false
---@field name? string Step name (at most 50 characters).
---@field description? string|string[] Shown while the step runs.
---@field descriptionDone? string|string[] Shown when it is done.
---@field descriptionSuffix? string|string[]
---@field haltOnFailure? boolean Stop the build when this step fails.
---@field flunkOnFailure? boolean A failure fails the build (default true).
---@field warnOnFailure? boolean
---@field warnOnWarnings? boolean
---@field flunkOnWarnings? boolean
---@field alwaysRun? boolean Run even after a halting failure.
---@field doStepIf? boolean|fun(step: any): boolean Default true.
---@field hideStepIf? boolean|fun(result: integer, step: any): boolean Default false.
---@field locks? any Not implemented yet.
---@field logEncoding? string
---@field updateBuildSummaryPolicy? boolean|integer[] Results (util.FAILURE, ...) whose summary becomes the build's.
---@field workdir? buildbot.RenderableValue Relative to the builder's directory.

---@param src buildbot.RenderableValue|buildbot.steps.CopyDirectoryOptions
---@param dest buildbot.RenderableValue|buildbot.steps.CopyDirectoryOptions
---@param options? buildbot.steps.CopyDirectoryOptions
---@return buildbot.Step
function steps.CopyDirectory(src, dest, options) end

---@class buildbot.steps.MakeDirectoryOptions
---@field dir? buildbot.RenderableValue
---@field name? string Step name (at most 50 characters).
---@field description? string|string[] Shown while the step runs.
---@field descriptionDone? string|string[] Shown when it is done.
---@field descriptionSuffix? string|string[]
---@field haltOnFailure? boolean Stop the build when this step fails.
---@field flunkOnFailure? boolean A failure fails the build (default true).
---@field warnOnFailure? boolean
---@field warnOnWarnings? boolean
---@field flunkOnWarnings? boolean
---@field alwaysRun? boolean Run even after a halting failure.
---@field doStepIf? boolean|fun(step: any): boolean Default true.
---@field hideStepIf? boolean|fun(result: integer, step: any): boolean Default false.
---@field locks? any Not implemented yet.
---@field logEncoding? string
---@field updateBuildSummaryPolicy? boolean|integer[] Results (util.FAILURE, ...) whose summary becomes the build's.
---@field workdir? buildbot.RenderableValue Relative to the builder's directory.

---@param dir buildbot.RenderableValue|buildbot.steps.MakeDirectoryOptions
---@param options? buildbot.steps.MakeDirectoryOptions
---@return buildbot.Step
function steps.MakeDirectory(dir, options) end

---@class buildbot.steps.RemoveDirectoryOptions
---@field dir? buildbot.RenderableValue
---@field name? string Step name (at most 50 characters).
---@field description? string|string[] Shown while the step runs.
---@field descriptionDone? string|string[] Shown when it is done.
---@field descriptionSuffix? string|string[]
---@field haltOnFailure? boolean Stop the build when this step fails.
---@field flunkOnFailure? boolean A failure fails the build (default true).
---@field warnOnFailure? boolean
---@field warnOnWarnings? boolean
---@field flunkOnWarnings? boolean
---@field alwaysRun? boolean Run even after a halting failure.
---@field doStepIf? boolean|fun(step: any): boolean Default true.
---@field hideStepIf? boolean|fun(result: integer, step: any): boolean Default false.
---@field locks? any Not implemented yet.
---@field logEncoding? string
---@field updateBuildSummaryPolicy? boolean|integer[] Results (util.FAILURE, ...) whose summary becomes the build's.
---@field workdir? buildbot.RenderableValue Relative to the builder's directory.

---@param dir buildbot.RenderableValue|buildbot.steps.RemoveDirectoryOptions
---@param options? buildbot.steps.RemoveDirectoryOptions
---@return buildbot.Step
function steps.RemoveDirectory(dir, options) end

---@class buildbot.schedulers.SingleBranchSchedulerOptions
---@field name? string
---@field builderNames string[]
---@field properties? table<string, any> Set on every build it starts.
---@field codebases? string[]|table<string, {branch?: string, repository?: string, revision?: string}>
---@field priority? integer|fun(builderName: string, changesByCodebase: table): integer
---@field branch? string|false false for the default branch.
---@field change_filter? buildbot.util.ChangeFilter
---@field categories? string|string[] Old form of a change filter.
---@field treeStableTimer? integer|false
---@field fileIsImportant? fun(change: any): boolean
---@field onlyImportant? boolean
---@field reason? string
---@field createAbsoluteSourceStamps? boolean

---@param name string|buildbot.schedulers.SingleBranchSchedulerOptions
---@param options? buildbot.schedulers.SingleBranchSchedulerOptions
---@return buildbot.Scheduler
function schedulers.SingleBranchScheduler(name, options) end

---@class buildbot.schedulers.SchedulerOptions
---@field name? string
---@field builderNames string[]
---@field properties? table<string, any> Set on every build it starts.
---@field codebases? string[]|table<string, {branch?: string, repository?: string, revision?: string}>
---@field priority? integer|fun(builderName: string, changesByCodebase: table): integer
---@field branch? string|false
---@field change_filter? buildbot.util.ChangeFilter
---@field categories? string|string[]
---@field treeStableTimer? integer|false
---@field fileIsImportant? fun(change: any): boolean
---@field onlyImportant? boolean
---@field reason? string
---@field createAbsoluteSourceStamps? boolean

---@param name string|buildbot.schedulers.SchedulerOptions
---@param options? buildbot.schedulers.SchedulerOptions
---@return buildbot.Scheduler
function schedulers.Scheduler(name, options) end

---@class buildbot.schedulers.AnyBranchSchedulerOptions
---@field name? string
---@field builderNames string[]
---@field properties? table<string, any> Set on every build it starts.
---@field codebases? string[]|table<string, {branch?: string, repository?: string, revision?: string}>
---@field priority? integer|fun(builderName: string, changesByCodebase: table): integer
---@field branches? string|false|(string|false)[]
---@field change_filter? buildbot.util.ChangeFilter
---@field categories? string|string[]
---@field treeStableTimer? integer|false
---@field fileIsImportant? fun(change: any): boolean
---@field onlyImportant? boolean
---@field reason? string

---@param name string|buildbot.schedulers.AnyBranchSchedulerOptions
---@param options? buildbot.schedulers.AnyBranchSchedulerOptions
---@return buildbot.Scheduler
function schedulers.AnyBranchScheduler(name, options) end

---@class buildbot.schedulers.PeriodicOptions
---@field name? string
---@field builderNames string[]
---@field properties? table<string, any> Set on every build it starts.
---@field codebases? string[]|table<string, {branch?: string, repository?: string, revision?: string}>
---@field priority? integer|fun(builderName: string, changesByCodebase: table): integer
---@field periodicBuildTimer number Seconds.
---@field reason? string %(name)s is replaced.
---@field createAbsoluteSourceStamps? boolean
---@field onlyIfChanged? boolean Skip the build without new important changes.
---@field branch? string|false false for the default branch.
---@field change_filter? buildbot.util.ChangeFilter
---@field fileIsImportant? fun(change: any): boolean
---@field onlyImportant? boolean

---@param name string|buildbot.schedulers.PeriodicOptions
---@param options? buildbot.schedulers.PeriodicOptions
---@return buildbot.Scheduler
function schedulers.Periodic(name, options) end

---@class buildbot.schedulers.NightlyOptions
---@field name? string
---@field builderNames string[]
---@field properties? table<string, any> Set on every build it starts.
---@field codebases? string[]|table<string, {branch?: string, repository?: string, revision?: string}>
---@field priority? integer|fun(builderName: string, changesByCodebase: table): integer
---@field minute? integer|integer[]|'*' Default 0.
---@field hour? integer|integer[]|'*'
---@field dayOfMonth? integer|integer[]|'*'
---@field month? integer|integer[]|'*'
---@field dayOfWeek? integer|integer[]|'*' 0 is Monday.
---@field force_at_minute? integer|integer[]|'*'
---@field force_at_hour? integer|integer[]|'*'
---@field force_at_day_of_month? integer|integer[]|'*'
---@field force_at_month? integer|integer[]|'*'
---@field force_at_day_of_week? integer|integer[]|'*'
---@field reason? string %(name)s is replaced.
---@field createAbsoluteSourceStamps? boolean
---@field onlyIfChanged? boolean Skip the build without new important changes.
---@field branch? string|false false for the default branch.
---@field change_filter? buildbot.util.ChangeFilter
---@field fileIsImportant? fun(change: any): boolean
---@field onlyImportant? boolean

---@param name string|buildbot.schedulers.NightlyOptions
---@param options? buildbot.schedulers.NightlyOptions
---@return buildbot.Scheduler
function schedulers.Nightly(name, options) end

---@class buildbot.schedulers.TriggerableOptions
---@field name? string
---@field builderNames string[]
---@field properties? table<string, any> Set on every build it starts.
---@field codebases? string[]|table<string, {branch?: string, repository?: string, revision?: string}>
---@field priority? integer|fun(builderName: string, changesByCodebase: table): integer
---@field reason? string

---@param name string|buildbot.schedulers.TriggerableOptions
---@param options? buildbot.schedulers.TriggerableOptions
---@return buildbot.Scheduler
function schedulers.Triggerable(name, options) end

---@class buildbot.schedulers.DependentOptions
---@field name? string
---@field builderNames? string[]
---@field properties? table<string, any> Set on every build it starts.
---@field codebases? string[]|table<string, {branch?: string, repository?: string, revision?: string}>
---@field priority? integer|fun(builderName: string, changesByCodebase: table): integer
---@field upstream? buildbot.Scheduler|string

---@param name string|buildbot.schedulers.DependentOptions
---@param upstream buildbot.Scheduler|string|buildbot.schedulers.DependentOptions
---@param builderNames string[]|buildbot.schedulers.DependentOptions
---@param options? buildbot.schedulers.DependentOptions
---@return buildbot.Scheduler
function schedulers.Dependent(name, upstream, builderNames, options) end

---@class buildbot.schedulers.ForceSchedulerOptions
---@field name? string An identifier.
---@field builderNames? string[]
---@field reason? buildbot.util.ForceParameter
---@field reasonString? string
---@field username? buildbot.util.ForceParameter
---@field branch? buildbot.util.ForceParameter|string|false 0.8: a field of the unnamed codebase.
---@field revision? buildbot.util.ForceParameter|string|false
---@field repository? buildbot.util.ForceParameter|string|false
---@field project? buildbot.util.ForceParameter|string|false
---@field codebases? (string|buildbot.util.CodebaseParameter)[]
---@field properties? buildbot.util.ForceParameter[]
---@field buttonName? string
---@field label? string
---@field priority? buildbot.util.ForceParameter An IntParameter.

---@param name string|buildbot.schedulers.ForceSchedulerOptions
---@param builderNames string[]|buildbot.schedulers.ForceSchedulerOptions
---@param options? buildbot.schedulers.ForceSchedulerOptions
---@return buildbot.Scheduler
function schedulers.ForceScheduler(name, builderNames, options) end

---@class buildbot.util.FixedParameterOptions
---@field name? string
---@field label? string Default: the name.
---@field tablabel? string
---@field default? any
---@field required? boolean
---@field regex? string The value must match.
---@field hide? boolean
---@field tooltip? string
---@field maxsize? integer

---@param name string|buildbot.util.FixedParameterOptions
---@param label string|buildbot.util.FixedParameterOptions
---@param options? buildbot.util.FixedParameterOptions
---@return buildbot.util.ForceParameter
function util.FixedParameter(name, label, options) end

---@class buildbot.util.StringParameterOptions
---@field name? string
---@field label? string Default: the name.
---@field tablabel? string
---@field default? any
---@field required? boolean
---@field regex? string The value must match.
---@field hide? boolean
---@field tooltip? string
---@field maxsize? integer
---@field size? integer

---@param name string|buildbot.util.StringParameterOptions
---@param label string|buildbot.util.StringParameterOptions
---@param options? buildbot.util.StringParameterOptions
---@return buildbot.util.ForceParameter
function util.StringParameter(name, label, options) end

---@class buildbot.util.TextParameterOptions
---@field name? string
---@field label? string Default: the name.
---@field tablabel? string
---@field default? any
---@field required? boolean
---@field regex? string The value must match.
---@field hide? boolean
---@field tooltip? string
---@field maxsize? integer
---@field cols? integer
---@field rows? integer

---@param name string|buildbot.util.TextParameterOptions
---@param label string|buildbot.util.TextParameterOptions
---@param options? buildbot.util.TextParameterOptions
---@return buildbot.util.ForceParameter
function util.TextParameter(name, label, options) end

---@class buildbot.util.IntParameterOptions
---@field name? string
---@field label? string Default: the name.
---@field tablabel? string
---@field default? any
---@field required? boolean
---@field regex? string The value must match.
---@field hide? boolean
---@field tooltip? string
---@field maxsize? integer
---@field size? integer

---@param name string|buildbot.util.IntParameterOptions
---@param label string|buildbot.util.IntParameterOptions
---@param options? buildbot.util.IntParameterOptions
---@return buildbot.util.ForceParameter
function util.IntParameter(name, label, options) end

---@class buildbot.util.BooleanParameterOptions
---@field name? string
---@field label? string Default: the name.
---@field tablabel? string
---@field default? any
---@field required? boolean
---@field regex? string The value must match.
---@field hide? boolean
---@field tooltip? string
---@field maxsize? integer

---@param name string|buildbot.util.BooleanParameterOptions
---@param label string|buildbot.util.BooleanParameterOptions
---@param options? buildbot.util.BooleanParameterOptions
---@return buildbot.util.ForceParameter
function util.BooleanParameter(name, label, options) end

---@class buildbot.util.UserNameParameterOptions
---@field name? string
---@field label? string Default: the name.
---@field tablabel? string
---@field default? any
---@field required? boolean
---@field regex? string The value must match.
---@field hide? boolean
---@field tooltip? string
---@field maxsize? integer
---@field size? integer
---@field need_email? boolean Default true.

---@param name string|buildbot.util.UserNameParameterOptions
---@param label string|buildbot.util.UserNameParameterOptions
---@param options? buildbot.util.UserNameParameterOptions
---@return buildbot.util.ForceParameter
function util.UserNameParameter(name, label, options) end

---@class buildbot.util.ChoiceStringParameterOptions
---@field name? string
---@field label? string Default: the name.
---@field tablabel? string
---@field default? any
---@field required? boolean
---@field regex? string The value must match.
---@field hide? boolean
---@field tooltip? string
---@field maxsize? integer
---@field choices? string[]
---@field strict? boolean Default true.
---@field multiple? boolean

---@param name string|buildbot.util.ChoiceStringParameterOptions
---@param label string|buildbot.util.ChoiceStringParameterOptions
---@param options? buildbot.util.ChoiceStringParameterOptions
---@return buildbot.util.ForceParameter
function util.ChoiceStringParameter(name, label, options) end

---@class buildbot.util.CodebaseParameterOptions
---@field codebase? string
---@field name? string
---@field label? string
---@field branch? buildbot.util.ForceParameter|string|false
---@field revision? buildbot.util.ForceParameter|string|false
---@field repository? buildbot.util.ForceParameter|string|false
---@field project? buildbot.util.ForceParameter|string|false
---@field patch? any Not implemented yet.
---@field hide? boolean

---@param codebase string|buildbot.util.CodebaseParameterOptions
---@param options? buildbot.util.CodebaseParameterOptions
---@return buildbot.util.CodebaseParameter
function util.CodebaseParameter(codebase, options) end

---@class buildbot.util.ChangeFilterOptions
---@field filter_fn? fun(change: any): boolean
---@field project? string|string[]
---@field project_not_eq? string|string[]
---@field project_re? string|string[] Regexes matched at the start.
---@field project_not_re? string|string[]
---@field project_fn? fun(value: string?): boolean
---@field repository? string|string[]
---@field repository_not_eq? string|string[]
---@field repository_re? string|string[] Regexes matched at the start.
---@field repository_not_re? string|string[]
---@field repository_fn? fun(value: string?): boolean
---@field branch? string|false|(string|false)[] false for the default branch.
---@field branch_not_eq? string|false|(string|false)[]
---@field branch_re? string|string[] Regexes matched at the start.
---@field branch_not_re? string|string[]
---@field branch_fn? fun(value: string?): boolean
---@field category? string|string[]
---@field category_not_eq? string|string[]
---@field category_re? string|string[] Regexes matched at the start.
---@field category_not_re? string|string[]
---@field category_fn? fun(value: string?): boolean
---@field codebase? string|string[]
---@field codebase_not_eq? string|string[]
---@field codebase_re? string|string[] Regexes matched at the start.
---@field codebase_not_re? string|string[]
---@field codebase_fn? fun(value: string?): boolean
---@field property_eq? table<string, string|string[]>
---@field property_not_eq? table<string, string|string[]>
---@field property_re? table<string, string|string[]>
---@field property_not_re? table<string, string|string[]>

---@param options? buildbot.util.ChangeFilterOptions
---@return buildbot.util.ChangeFilter
function util.ChangeFilter(options) end

---@class buildbot.changes.GitPollerOptions
---@field repourl? string
---@field branches? string[]|true|fun(ref: string): boolean Default: the remote's HEAD.
---@field branch? string
---@field workdir? string Default "gitpoller-work".
---@field pollInterval? integer Seconds (600).
---@field pollinterval? integer Old spelling of pollInterval.
---@field pollAtLaunch? boolean
---@field pollRandomDelayMin? integer
---@field pollRandomDelayMax? integer
---@field gitbin? string
---@field usetimestamps? boolean Default true.
---@field category? string|fun(change: any): string
---@field codebase? any Not implemented yet.
---@field project? string
---@field fetch_refspec? any Refused: only the polled branches are fetched.
---@field encoding? string
---@field name? string Default: the repourl.
---@field buildPushesWithNoCommits? boolean
---@field only_tags? boolean
---@field sshPrivateKey? buildbot.RenderableValue
---@field sshHostKey? buildbot.RenderableValue
---@field sshKnownHosts? buildbot.RenderableValue
---@field auth_credentials? any Not implemented yet.
---@field git_credentials? any Not implemented yet.

---@param repourl string|buildbot.changes.GitPollerOptions
---@param options? buildbot.changes.GitPollerOptions
---@return buildbot.ChangeSource
function changes.GitPoller(repourl, options) end

---@class buildbot.changes.PBChangeSourceOptions
---@field port? buildbot.Port Default: the workers' port.
---@field user? string Default "change".
---@field passwd? string Default "changepw".
---@field prefix? string
---@field name? string

---@param options? buildbot.changes.PBChangeSourceOptions
---@return buildbot.ChangeSource
function changes.PBChangeSource(options) end
