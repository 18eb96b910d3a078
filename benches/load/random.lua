-- wrk script: every request GETs a random path among the first N lines of a file.
--   wrk ... -s random.lua http://127.0.0.1:PORT -- PATHS_FILE N
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("id", counter)
end

local paths = {}

function init(args)
   local limit = tonumber(args[2]) or math.huge
   for line in io.lines(args[1]) do
      if #paths >= limit then
         break
      end
      paths[#paths + 1] = line
   end
   -- Each thread its own sequence, so two threads do not walk the same keys in lockstep.
   math.randomseed(os.time() * 1000 + (id or 0) * 7919)
end

function request()
   return wrk.format("GET", paths[math.random(#paths)])
end
