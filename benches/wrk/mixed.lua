-- wrk script for scripts/bench's goal P6: a mixed read load across many
-- tenants. Its argument (after `--`) is a file of lines `token path`, one per
-- tenant and route; each wrk thread walks the whole list from its own random
-- starting point, so every line is requested equally often and every
-- tenant is touched in each pass. Prints report.lua's SOUK_WRK line at the
-- end.
local requests = {}
local next_index = 1
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_number", thread_count)
end

function init(args)
  local file = args[1]
  if file == nil then
    error("mixed.lua needs a file of `token path` lines")
  end
  for line in io.lines(file) do
    local token, path = line:match("^(%S+)%s+(%S+)$")
    if token ~= nil then
      requests[#requests + 1] =
        wrk.format("GET", path, { ["Authorization"] = "Bearer " .. token })
    end
  end
  if #requests == 0 then
    error("no `token path` lines in " .. file)
  end
  math.randomseed(os.time() + 7919 * (thread_number or 1))
  next_index = math.random(#requests)
end

function request()
  local r = requests[next_index]
  next_index = next_index + 1
  if next_index > #requests then
    next_index = 1
  end
  return r
end

-- The closing line is report.lua's, loaded from beside this file so both
-- scripts print it the same way.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")
