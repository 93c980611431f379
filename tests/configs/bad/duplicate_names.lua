local c = BuildmasterConfig
c['workers']:append(worker.LocalWorker("local"))
c['workers']:append(worker.LocalWorker("local"))
local f = util.BuildFactory()
c['builders']:append(util.BuilderConfig{name = "b", workernames = {"local"}, factory = f})
c['builders']:append(util.BuilderConfig{name = "b", workernames = {"local"}, factory = f})
c['status']:append(status.MailNotifier{name = "mail", fromaddr = "ci@example.org"})
c['status']:append(status.MailNotifier{name = "mail", fromaddr = "ops@example.org"})
