-- Each request spends a different refresh token (they rotate):
-- wrk -s refresh.lua URL -- tokens.txt <threads> "<Authorization>"
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  tokens = {}
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  stride = tonumber(args[2])
  index = id + 1
  headers = {["Content-Type"] = "application/x-www-form-urlencoded", ["Authorization"] = args[3]}
end
function request()
  local token = tokens[index]
  index = index + stride
  if index > #tokens then index = id + 1 end -- ran out: reuse (answers invalid_grant)
  return wrk.format("POST", nil, headers, "grant_type=refresh_token&refresh_token=" .. token)
end
