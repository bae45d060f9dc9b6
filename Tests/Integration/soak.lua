-- wrk script for wrk_checked in lib.sh (the soak, nginx.sh, bench/run.sh): one kind of request per wrk process,
-- chosen by environment variables, counting every answer whose status is not the one that kind must get, and
-- socket errors (wrk's own "status" errors are every non-2xx answer, which several kinds must get, so they are
-- not counted).
--   SOAK_METHOD, SOAK_BODY_FILE, SOAK_SIGNATURE (optional), SOAK_EXPECT
local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    expected = tonumber(os.getenv("SOAK_EXPECT"))
    unexpected = 0
    local body = ""
    local path = os.getenv("SOAK_BODY_FILE")
    if path and path ~= "" then
        local file = io.open(path, "rb")
        body = file:read("*a")
        file:close()
    end
    local headers = { ["Content-Type"] = "application/json" }
    local signature = os.getenv("SOAK_SIGNATURE")
    if signature and signature ~= "" then headers["x-signature"] = signature end
    local method = os.getenv("SOAK_METHOD")
    if method == "GET" then body = nil end
    prepared = wrk.format(method, nil, headers, body)
end

function request()
    return prepared
end

function response(status, headers, body)
    if status ~= expected then unexpected = unexpected + 1 end
end

function done(summary, latency, requests)
    local total = 0
    for _, thread in ipairs(threads) do total = total + thread:get("unexpected") end
    io.write(string.format("SOAK requests=%d unexpected=%d errors=%d p99_ms=%.2f p50_ms=%.2f rps=%.0f\n",
        summary.requests, total,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        latency:percentile(99) / 1000, latency:percentile(50) / 1000, summary.requests / (summary.duration / 1e6)))
end
