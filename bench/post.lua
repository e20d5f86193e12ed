-- wrk script: POST the JSON body read from the file named after `--`, on every request (with the bearer token
-- given after it, if any).
-- The request is built once per thread (no per-request Lua), so wrk stays far from being the bottleneck.
--   wrk -t1 -c64 -d10s -s bench/post.lua http://127.0.0.1:PORT/task_in_queue -- body.json
function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.body = file:read("*a")
  file:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if args[2] then  -- a bearer token, when the server wants one
    wrk.headers["Authorization"] = "Bearer " .. args[2]
  end
end
