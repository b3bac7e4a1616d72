-- soak.lua: the wrk script behind benches/soak/run.sh.
--
-- wrk runs for a duration; this script turns that into a count. Every 10th request it sends
-- goes to /raise (the rest to /), it counts responses by status, and once SOAK_TOTAL responses
-- have arrived it stops the thread; run.sh then sends wrk SIGINT, which ends the run at once
-- (wrk's -d is only a backstop). Responses that land after the quota, in the same event-loop
-- pass, are counted apart as `late`, so the status counts add up to exactly SOAK_TOTAL.
-- Requests still in flight at the stop are dropped when wrk exits; run.sh reads how many the
-- server saw from the app's /count.
--
-- Every SOAK_PROGRESS_EVERY responses the count is written to SOAK_PROGRESS_FILE, which
-- run.sh's RSS sampler reads, so each RSS sample knows how far the run had got.
--
-- The counts live in the thread's own Lua state; done() runs in another state and fetches
-- them with thread:get(). One wrk thread (-t1) only: the quota is not split across threads.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   if #threads > 1 then
      error("soak.lua counts one quota per run: use wrk -t1")
   end
end

function init(args)
   total = tonumber(os.getenv("SOAK_TOTAL") or "1000000")
   raise_every = tonumber(os.getenv("SOAK_RAISE_EVERY") or "10")
   progress_every = tonumber(os.getenv("SOAK_PROGRESS_EVERY") or "10000")
   progress_file = os.getenv("SOAK_PROGRESS_FILE")

   -- Built once: request() then only picks one of two ready strings.
   ok_req = wrk.format("GET", "/")
   raise_req = wrk.format("GET", "/raise")

   sent, got, late = 0, 0, 0
   raise_sent = 0
   n200, n500, nother = 0, 0, 0
   other_statuses = ""
end

function request()
   sent = sent + 1
   if sent % raise_every == 0 then
      raise_sent = raise_sent + 1
      return raise_req
   end
   return ok_req
end

local function write_progress()
   if progress_file then
      local f = io.open(progress_file, "w")
      f:write(got, "\n")
      f:close()
   end
end

function response(status, headers, body)
   if got >= total then
      late = late + 1
      return
   end
   got = got + 1
   if status == 200 then
      n200 = n200 + 1
   elseif status == 500 then
      n500 = n500 + 1
   else
      nother = nother + 1
      if #other_statuses < 200 then
         other_statuses = other_statuses .. status .. " "
      end
   end
   if got % progress_every == 0 then
      write_progress()
   end
   if got == total then
      -- run.sh sees this count and sends wrk SIGINT: wrk's main thread sleeps for the whole
      -- -d whatever its threads do, and SIGINT is what wakes it early.
      write_progress()
      wrk.thread:stop()
   end
end

function done(summary, latency, requests)
   local t = threads[1]
   local e = summary.errors
   -- One key=value per line: run.sh greps these.
   local lines = {
      "soak_total=" .. t:get("total"),
      "soak_responses=" .. t:get("got"),
      "soak_200=" .. t:get("n200"),
      "soak_500=" .. t:get("n500"),
      "soak_other=" .. t:get("nother"),
      "soak_other_statuses=" .. t:get("other_statuses"),
      "soak_late=" .. t:get("late"),
      "soak_sent=" .. t:get("sent"),
      "soak_raise_sent=" .. t:get("raise_sent"),
      "wrk_requests=" .. summary.requests,
      "wrk_duration_us=" .. summary.duration,
      "wrk_err_connect=" .. e.connect,
      "wrk_err_read=" .. e.read,
      "wrk_err_write=" .. e.write,
      "wrk_err_timeout=" .. e.timeout,
      "wrk_err_status=" .. e.status,
      "wrk_lat_p50_us=" .. latency:percentile(50),
      "wrk_lat_p99_us=" .. latency:percentile(99),
      "wrk_lat_p999_us=" .. latency:percentile(99.9),
      "wrk_lat_max_us=" .. latency.max,
   }
   io.write(table.concat(lines, "\n"), "\n")
end
