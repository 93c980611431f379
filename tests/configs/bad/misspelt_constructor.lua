local c = BuildmasterConfig
c['status']:append(status.MailNotifer{fromaddr = "ci@example.org"})
