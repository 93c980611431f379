local c = BuildmasterConfig
-- A config is evaluated, never waited on: processes run from a change source's functions.
local head = util.runProcess{"git", "rev-parse", "HEAD"}
