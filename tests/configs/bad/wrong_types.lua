local c = BuildmasterConfig
c['title'] = {"not", "a", "string"}
c['status']:append(status.MailNotifier{
  fromaddr = 42,
  extraRecipients = "one@example.org",
  addLogs = "yes",
})
c['status']:append(status.WebStatus{http_port = "unix:/tmp/web.sock"})
