local c = BuildmasterConfig
c['title'] = "ok"
c['status']:append(status.MailNotifier{fromaddr = "ci@example.org",)
