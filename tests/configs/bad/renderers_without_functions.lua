-- util.renderer and util.Transform want functions; both are reported and evaluation goes on.
local c = BuildmasterConfig
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{ command = { "echo", util.renderer(5) } })
f:addStep(steps.ShellCommand{ command = { "echo", util.Transform("x", 1) } })
f:addStep(steps.ShellCommand{ command = { "echo", util.Transform(string.upper, print) } })
