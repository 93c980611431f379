local c = BuildmasterConfig
c['status']:append(status.WebStatus{
  http_port = 8010,
  change_hook_dialects = {githib = true, github = {class = "MyHandler"}},
  jinja_loaders = {"templates"},
})
