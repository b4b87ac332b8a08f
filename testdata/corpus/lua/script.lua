-- Exercises the interpreter and a C extension module loaded with require.
-- `script.lua DIR` runs the checks once; `script.lua DIR live STOPFILE`
-- prints a counter until STOPFILE exists.
local dir, mode, stop = arg[1], arg[2], arg[3]
package.cpath = dir .. "/?.so;" .. package.cpath
local ext = require "hcrext"

if mode == "live" then
  local i = 0
  while true do
    i = i + 1
    print("tick", i, ext.twice(i))
    io.stdout:flush()
    local f = io.open(stop, "r")
    if f then f:close() break end
    ext.sleep_ms(20)
  end
  return
end

print(ext.twice(21), ext.join("a", "b", "c"))
local t = {}
for i = 1, 200 do t[#t + 1] = string.format("%03d", (i * 7919) % 1000) end
table.sort(t)
print(#t, t[1], t[100], t[200], table.concat(t, ","):len())
local fib = {}
local function f(n) if n < 2 then return n end if not fib[n] then fib[n] = f(n-1) + f(n-2) end return fib[n] end
print(f(80), math.floor(math.sqrt(2) * 1e6), string.rep("ab", 3, "-"))
print(("hot code reloading"):upper():gsub("O", "0"))
local co = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i * i) end end)
print(co(), co(), co())
print(pcall(error, {code = 7}), select("#", 1, nil, 3))
local ok, e = pcall(function() return ext.twice("x") end)
print(ok, (e:gsub("^.-: ", "")))
print(utf8.char(72, 228, 8364), utf8.len("häl"), #string.pack("i4d", 1, 2.5))
collectgarbage()
print(string.format("%5.2f %q %x", math.pi, "a\n", 255))
