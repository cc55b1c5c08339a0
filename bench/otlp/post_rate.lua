-- wrk script: POST one OTLP protobuf payload (env PAYLOAD), pausing DELAY_MS between requests on
-- each connection, for a steady, limited rate (rate ~= connections * 1000 / (DELAY_MS + latency)).
local f = assert(io.open(os.getenv("PAYLOAD"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/x-protobuf"
local pause = tonumber(os.getenv("DELAY_MS") or "100")
function delay()
  return pause
end
