-- wrk script for `lipa bench ingest --serve`: each request settles its own seeded payment.
-- Payment i has callback token format("%032x", i), CheckoutRequestID ws_CO_bench<i>,
-- receipt UB<i:08>, amount 10, phone 2547<i:08>.
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

-- Each thread runs in its own Lua state, so the thread count comes as an argument:
-- wrk -t2 ... -s scripts/ingest.lua <url> -- 2
function init(args)
  stride = tonumber(args[1]) or 1
  n = id
end

request = function()
  local i = n
  n = n + stride
  local body = string.format(
    '{"Body":{"stkCallback":{"MerchantRequestID":"m-%d","CheckoutRequestID":"ws_CO_bench%d","ResultCode":0,' ..
    '"ResultDesc":"The service request is processed successfully.","CallbackMetadata":{"Item":[' ..
    '{"Name":"Amount","Value":10.00},{"Name":"MpesaReceiptNumber","Value":"UB%08d"},{"Name":"Balance"},' ..
    '{"Name":"TransactionDate","Value":20261122101010},{"Name":"PhoneNumber","Value":2547%08d}]}}}}',
    i, i, i, i)
  return wrk.format("POST", string.format("/callbacks/stk/%032x", i), {["Content-Type"] = "application/json"}, body)
end

done = function(summary, latency, requests)
  io.write(string.format("wrk: %d requests, %d non-2xx/3xx, %.0f req/s, p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
    summary.requests, summary.errors.status, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
