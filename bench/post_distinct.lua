-- wrk script: POST a job whose params differ on every request (a counter that starts at the second argument), so
-- that no two are the same job; the first argument is JSON appended to the job object (e.g. a unique window).
--   wrk -t1 -c64 -d10s -s bench/post_distinct.lua http://127.0.0.1:PORT/task_in_queue -- ',"unique":{"for":60}' 0
local counter = 0
local extra = ""
function init(args)
  extra = args[1] or ""
  counter = tonumber(args[2] or "0")
end
request = function()
  counter = counter + 1
  local body = '{"method":"GET","name":"http://127.0.0.1:9/never","delay":864000,"params":{"n":' .. counter .. "}"
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body .. extra .. "}")
end
