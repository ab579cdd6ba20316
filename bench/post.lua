-- POST the same form body every time: wrk -s post.lua URL -- "<body>" "<Authorization>"
function init(args)
  wrk.method = "POST"
  wrk.body = args[1]
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  if args[2] and args[2] ~= "" then wrk.headers["Authorization"] = args[2] end
end
