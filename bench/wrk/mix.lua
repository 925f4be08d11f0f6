-- wrk script of the DentiaPro benchmark (scripts/bench.py writes the config and reads the result).
--
--   BENCH_CONFIG=/path/config.lua BENCH_MIX=read wrk -t1 -c32 -d10s -s bench/wrk/mix.lua URL
--
-- The config file returns a table:
--   tenants  = { {token = "...", cabinet = 1, patients = {{1, 1000}}, consultations = {{1, 3000}}}, ... }
--              (ids as inclusive {first, last} ranges: 100,000 ids stay a few bytes)
--   searches = {"dubo", "mart"}       terms for ?search=
--   pages    = 20                     list pages are drawn from 1..pages
--   page_size = 20                    optional: lists and searches ask for &page_size=20
--   mixes    = { read = {get_patient = 25, ...}, ... }   weights of each operation per mix
-- Each request picks a tenant at random (its token and its ids), then an operation by weight.
-- done() prints one line "BENCH_RESULT {json}": requests, latency percentiles (microseconds),
-- socket errors and every non-2xx status seen.

local config = dofile(os.getenv("BENCH_CONFIG"))
local mix_name = os.getenv("BENCH_MIX") or "read"
local weights = config.mixes[mix_name]
if weights == nil then
  error("unknown mix " .. mix_name)
end

-- Operations sorted by name, so every thread draws from the same cumulative table.
local operations, cumulative, total = {}, {}, 0
for name, weight in pairs(weights) do
  table.insert(operations, name)
end
table.sort(operations)
for i, name in ipairs(operations) do
  total = total + weights[name]
  cumulative[i] = total
end

local function pick(list)
  return list[math.random(#list)]
end

-- An id drawn uniformly from a list of {first, last} ranges.
local function prepare(ranges)
  local bounds, size = {}, 0
  for i, range in ipairs(ranges) do
    size = size + range[2] - range[1] + 1
    bounds[i] = size
  end
  return { ranges = ranges, bounds = bounds, size = size }
end

local function pick_id(ids)
  local n = math.random(ids.size)
  for i, bound in ipairs(ids.bounds) do
    if n <= bound then
      local range = ids.ranges[i]
      return range[2] - (bound - n)
    end
  end
end

for _, tenant in ipairs(config.tenants) do
  tenant.patients = prepare(tenant.patients)
  tenant.consultations = prepare(tenant.consultations)
end

local function headers_for(tenant, with_body)
  local headers = { ["Authorization"] = "Bearer " .. tenant.token, ["Accept"] = "application/json" }
  if with_body then
    headers["Content-Type"] = "application/json"
  end
  return headers
end

-- Appended to list and search requests: the same page size against DentiaPro and the DRF peer
-- (which ignores the parameter and always serves its PAGE_SIZE).
local page_suffix = ""
if config.page_size ~= nil then
  page_suffix = "&page_size=" .. config.page_size
end

local counter = 0

local function patient_body()
  counter = counter + 1
  return string.format(
    '{"name":"Bench Patient %d-%d","birthdate":"1984-%02d-%02d",'
      .. '"contact_number":"+33 6 12 34 %02d %02d","email":"bench%d@example.com"}',
    math.random(1e6), counter, math.random(12), math.random(28),
    math.random(99), math.random(99), counter
  )
end

local function consultation_body(tenant)
  return string.format(
    '{"patient":%d,"cabinet":%d,"date":"2026-%02d-%02dT%02d:30:00Z",'
      .. '"diagnosis":"Caries on tooth %d","treatment":"Composite filling"}',
    pick_id(tenant.patients), tenant.cabinet, math.random(12), math.random(28),
    math.random(8, 18), math.random(11, 48)
  )
end

local builders = {
  get_patient = function(t)
    return wrk.format("GET", "/api/patients/" .. pick_id(t.patients) .. "/", headers_for(t))
  end,
  get_consultation = function(t)
    return wrk.format("GET", "/api/consultations/" .. pick_id(t.consultations) .. "/", headers_for(t))
  end,
  list_patients = function(t)
    local path = "/api/patients/?page=" .. math.random(config.pages) .. page_suffix
    return wrk.format("GET", path, headers_for(t))
  end,
  search_patients = function(t)
    local path = "/api/patients/?search=" .. pick(config.searches) .. page_suffix
    return wrk.format("GET", path, headers_for(t))
  end,
  create_patient = function(t)
    return wrk.format("POST", "/api/patients/", headers_for(t, true), patient_body())
  end,
  create_consultation = function(t)
    return wrk.format("POST", "/api/consultations/", headers_for(t, true), consultation_body(t))
  end,
  update_patient = function(t)
    return wrk.format(
      "PUT", "/api/patients/" .. pick_id(t.patients) .. "/", headers_for(t, true), patient_body()
    )
  end,
  hello = function(t)
    return wrk.format("GET", "/")
  end,
}

for _, name in ipairs(operations) do
  if builders[name] == nil then
    error("unknown operation " .. name)
  end
end

-- Main thread: keep every thread to collect its counters in done().
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + (id or 0))
  statuses = {}
end

function request()
  local draw = math.random() * total
  local chosen = operations[#operations]
  for i, bound in ipairs(cumulative) do
    if draw < bound then
      chosen = operations[i]
      break
    end
  end
  return builders[chosen](pick(config.tenants))
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    local key = tostring(status)
    statuses[key] = (statuses[key] or 0) + 1
  end
end

function done(summary, latency, requests)
  local seen, non2xx = {}, 0
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses") or {}
    for status, count in pairs(counts) do
      seen[status] = (seen[status] or 0) + count
      non2xx = non2xx + count
    end
  end
  local parts = {}
  for status, count in pairs(seen) do
    table.insert(parts, string.format('"%s":%d', status, count))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"duration_us":%d,"requests":%d,"bytes":%d,'
      .. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f},'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d,'
      .. '"non2xx":%d,"statuses":{%s}}}\n',
    summary.duration, summary.requests, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean,
    e.connect, e.read, e.write, e.timeout, e.status, non2xx, table.concat(parts, ",")
  ))
end
