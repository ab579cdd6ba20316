-- Password grant round-robin over N users (bench0 .. benchN-1), as many real users would:
-- wrk -s password.lua URL -- <users> <password> <aid> "<Authorization>"
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  users = tonumber(args[1])
  body = "&password=" .. args[2] .. "&scope=aid:" .. args[3] .. "&grant_type=password"
  headers = {["Content-Type"] = "application/x-www-form-urlencoded", ["Authorization"] = args[4]}
  index = id
end
function request()
  index = (index + 7) % users
  return wrk.format("POST", nil, headers, "username=bench" .. index .. body)
end
