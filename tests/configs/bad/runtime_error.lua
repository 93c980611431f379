local c = BuildmasterConfig
local helpers = nil
c['title'] = helpers.title()
