-- WebStatus with authentication and per-action authorization, including a Lua callback that
-- decides who may force which builder (Buildbot manual, "WebStatus", "Authorization").
local c = BuildmasterConfig

local users = {
  { "bob", "secret-pass" },
  { "jill", "super-pass" },
}

-- The builder is a table, as the REST API shows it (`name`, `builderid`, `tags`, ...).
local function canForceBuild(username, builder)
  if builder.name == "smoketest" then
    return true -- any authenticated user can run smoketest
  elseif username == "releng" then
    return true -- releng can force whatever they want
  end
  return false -- otherwise, no way
end

local authz = util.Authz{
  auth = util.BasicAuth(users),
  forceBuild = canForceBuild,
  stopBuild = "auth", -- only authenticated users
  pingBuilder = true, -- but anyone can do this
}
c['status']:append(status.WebStatus{ http_port = 8080, authz = authz })

-- Behind a reverse proxy that authenticates: trust its header.
c['status']:append(status.WebStatus{
  name = "proxied",
  http_port = "tcp:8011:interface=127.0.0.1",
  authz = util.Authz{
    useHttpHeader = true,
    httpLoginUrl = "https://buildbot.example.org/login",
    auth = util.HTPasswdAprAuth("/var/www/htpasswd"),
    forceBuild = "auth",
  },
})
