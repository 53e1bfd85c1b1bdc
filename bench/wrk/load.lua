-- The one wrk script of the benchmarks (throughput, popular, capacity,
-- profile_orders): every endpoint, and mixes of them.
--   BENCH_TARGET  menus | popular | login | charge | orders | mix
--   BENCH_MIX     for mix: the kinds of one cycle of a thread's requests,
--                 comma-separated (menus, popular, charge, orders), e.g.
--                 "menus,orders,menus,popular": the thread sends them in that
--                 order, over and over
--   BENCH_USERS   file of "id token email" lines (bench/src/bin/prepare_users.rs)
--   BENCH_THREADS wrk's -t: how many threads share the users
--   BENCH_MENU    the menu id every order orders (one of it)
--   BENCH_RUN     a word unique to this run, in every idempotency key
-- Each wrk thread takes every n-th user, and each request the thread's next
-- one, so no two in-flight requests of a thread share a user (no lock queue on
-- one balance row that a real crowd of customers would not have). Every
-- charge and order carries a fresh Idempotency-Key.
-- done() prints one JSON line with the throughput and latency percentiles.

local target = os.getenv("BENCH_TARGET") or "menus"
local run = os.getenv("BENCH_RUN") or tostring(os.time())
local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("tid", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  tid = tid or 0
  step = tonumber(os.getenv("BENCH_THREADS") or "1")
  users = {}
  counter = 0
  local path = os.getenv("BENCH_USERS")
  if path then
    for line in io.lines(path) do
      local id, token, email = line:match("^(%S+) (%S+) (%S+)$")
      if id then table.insert(users, { id = id, token = token, email = email }) end
    end
  end
  local menu = os.getenv("BENCH_MENU") or ""
  order_body = '{"items":[{"menuId":"' .. menu .. '","quantity":1}]}'
  json = { ["Content-Type"] = "application/json" }
  mix, sent = {}, 0
  if target == "mix" then
    for kind in string.gmatch(os.getenv("BENCH_MIX") or "", "[^,%s]+") do
      if kind ~= "menus" and kind ~= "popular" and kind ~= "charge" and kind ~= "orders" then
        error("BENCH_MIX: unknown kind " .. kind)
      end
      table.insert(mix, kind)
    end
    if #mix == 0 then error("BENCH_TARGET=mix needs BENCH_MIX") end
  end
end

local function next_user()
  -- Users tid, tid + step, tid + 2 step, ...: disjoint between threads.
  local per_thread = math.floor(#users / step)
  local i = (counter % per_thread) * step + tid + 1
  counter = counter + 1
  return users[i]
end

local function key()
  return run .. "-" .. tid .. "-" .. counter
end

function request()
  local kind = target
  if target == "mix" then
    sent = sent + 1
    kind = mix[(sent - 1) % #mix + 1]
  end
  if kind == "menus" then
    return wrk.format("GET", "/menus")
  elseif kind == "popular" then
    return wrk.format("GET", "/menus/popular")
  end
  local u = next_user()
  if kind == "login" then
    return wrk.format("POST", "/auth/login", json,
      '{"email":"' .. u.email .. '","password":"correct horse battery staple"}')
  end
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. u.token,
    ["Idempotency-Key"] = key(),
  }
  if kind == "charge" then
    return wrk.format("POST", "/users/" .. u.id .. "/points/charge", headers, '{"amount":1}')
  end
  return wrk.format("POST", "/orders", headers, order_body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"seconds":%.3f,"perSecond":%.1f,"non2xx":%d,"socketErrors":%d,'
      .. '"p50Ms":%.3f,"p99Ms":%.3f,"p999Ms":%.3f,"maxMs":%.3f}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
    latency.max / 1000))
end
