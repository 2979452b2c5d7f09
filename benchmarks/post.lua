-- wrk script for bench_api.py: POST /api/v1/runs with the benchmark's question.
-- wrk -t2 -c32 -d10s --latency -s benchmarks/post.lua http://127.0.0.1:<port>/api/v1/runs
wrk.method = "POST"
wrk.body = '{"question": "How many battery-electric trucks did Northwind have at the end of 2024?"}'
wrk.headers["Content-Type"] = "application/json"
