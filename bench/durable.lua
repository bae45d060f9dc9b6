-- wrk script for bench/durable.py: every request a distinct signed payload, so that the spool stores each one (the
-- same body again would only time the duplicate path). Body i is {"n":i,"run":"RUN","pad":"xxx..."} (about 1 KiB);
-- its x-signature was computed beforehand (bench/sign-bodies.c). Thread t of T sends bodies t+1, t+1+T, ...,
-- reading their signatures one a line from DURABLE_SIGNATURES-t as it goes (millions of them for a sustained run:
-- never all in memory). At the end of the file it starts again from its first body if DURABLE_WRAP is set (a
-- handler without a spool stores nothing, so repeats time the same work); otherwise the run fails its check.
local threads = {}
local created = 0

function setup(thread)
    thread:set("first", created)
    created = created + 1
    table.insert(threads, thread)
end

function init(args)
    path = os.getenv("DURABLE_SIGNATURES") .. "-" .. first
    signatures = assert(io.open(path))
    wrap = os.getenv("DURABLE_WRAP") == "1"
    run = os.getenv("DURABLE_RUN")
    pad = string.rep("x", 980)
    step = tonumber(os.getenv("DURABLE_THREADS"))
    n = first + 1 - step
    unexpected = 0
    exhausted = 0
end

function request()
    local signature = signatures:read("*l")
    n = n + step
    if not signature then
        if not wrap then exhausted = 1 end
        signatures:seek("set", 0)
        signature = signatures:read("*l")
        n = first + 1
    end
    local body = string.format('{"n":%d,"run":"%s","pad":"%s"}', n, run, pad)
    return wrk.format("POST", nil, { ["Content-Type"] = "application/json", ["x-signature"] = signature }, body)
end

function response(status, headers, body)
    if status ~= 200 then unexpected = unexpected + 1 end
end

function done(summary, latency, requests)
    local bad, short = 0, 0
    for _, thread in ipairs(threads) do
        bad = bad + thread:get("unexpected")
        short = short + thread:get("exhausted")
    end
    io.write(string.format("DURABLE requests=%d unexpected=%d errors=%d exhausted=%d p99_ms=%.2f p50_ms=%.2f rps=%.0f seconds=%.3f\n",
        summary.requests, bad, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        short, latency:percentile(99) / 1000, latency:percentile(50) / 1000, summary.requests / (summary.duration / 1e6),
        summary.duration / 1e6))
end
