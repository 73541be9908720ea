-- wrk script for scripts/bench: every request is a POST of the JSON body
-- given as the script's first argument (after `--`); at the end, the same
-- one-line report as report.lua.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function init(args)
  wrk.body = args[1]
end
