local c = BuildmasterConfig
c['buildbotURL'] = "http://ci.example.org"
c['db_url'] = "mysql://ci@localhost/ci"
c['protocols'] = {pb = {port = 9989}}
c['slavePortnum'] = 9989
c['change_sources'] = {}
c['eventHorizon'] = 2.5
