-- GET with one Authorization header: wrk -s get.lua URL -- "<Authorization>"
function init(args)
  if args[1] and args[1] ~= "" then wrk.headers["Authorization"] = args[1] end
end
