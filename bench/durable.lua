-- wrk script for bench/durable.py: every request a distinct signed payload, so that the spool stores each one (the
-- same body again would only time the duplicate path). Body i is {"n":i,"run":"RUN","pad":"xxx..."} (about 1 KiB);
-- its x-signature is line i of DURABLE_SIGNATURES, computed beforehand by durable.py. Thread t of T sends bodies
-- t+1, t+1+T, t+1+2T, ...; the run fails its check if it would need more bodies than were signed.
local threads = {}
local created = 0

function setup(thread)
    thread:set("first", created)
    created = created + 1
    table.insert(threads, thread)
end

function init(args)
    signatures = {}
    for line in io.lines(os.getenv("DURABLE_SIGNATURES")) do signatures[#signatures + 1] = line end
    run = os.getenv("DURABLE_RUN")
    pad = string.rep("x", 980)
    step = tonumber(os.getenv("DURABLE_THREADS"))
    n = first + 1 - step
    unexpected = 0
    exhausted = 0
end

function request()
    n = n + step
    local i = n
    if i > #signatures then
        exhausted = 1
        i = (i - 1) % #signatures + 1
    end
    local body = string.format('{"n":%d,"run":"%s","pad":"%s"}', i, run, pad)
    return wrk.format("POST", nil, { ["Content-Type"] = "application/json", ["x-signature"] = signatures[i] }, body)
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
    io.write(string.format("DURABLE requests=%d unexpected=%d errors=%d exhausted=%d p99_ms=%.2f p50_ms=%.2f rps=%.0f\n",
        summary.requests, bad, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        short, latency:percentile(99) / 1000, latency:percentile(50) / 1000, summary.requests / (summary.duration / 1e6)))
end
