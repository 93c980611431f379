-- error() with no message still names its line.
local c = BuildmasterConfig
c['title'] = 'Moon'
error()
