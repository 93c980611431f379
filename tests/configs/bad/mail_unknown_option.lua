local c = BuildmasterConfig
c['status']:append(status.MailNotifier{
  fromaddr = "ci@example.org",
  extraRecipient = {"list@example.org"},
})
