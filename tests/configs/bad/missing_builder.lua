local c = BuildmasterConfig
c['workers']:append(worker.LocalWorker("local"))
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{command = {"make", "test"}})
c['builders']:append(util.BuilderConfig{name = "test", workernames = {"local"}, factory = f})
c['builders']:append(util.BuilderConfig{name = "lint", workernames = {"lcoal"}, factory = f})
c['schedulers']:append(schedulers.Nightly{name = "nightly", builderNames = {"tset"}, hour = 3})
c['status']:append(status.MailNotifier{fromaddr = "ci@example.org", builders = {"docs"}})
