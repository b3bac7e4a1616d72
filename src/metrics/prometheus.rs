//! A `Snapshot` in Prometheus's text exposition format 0.0.4: `# HELP` and `# TYPE` lines, then
//! samples; counters end in `_total`, the latency histogram has cumulative `_bucket{le=...}`
//! samples with `_sum` and `_count`. Written by hand: the format is a few lines per metric.

use std::fmt::Write as _;

use super::{Snapshot, LATENCY_BUCKETS_US};

/// The `Content-Type` of what `render` writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders `s` (every metric, each with its help and type).
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(4096);
    let head = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };

    head(
        &mut out,
        "ferrocorn_requests_total",
        "counter",
        "Requests answered, by status code and class.",
    );
    for &(code, n) in &s.status {
        let _ = writeln!(
            out,
            "ferrocorn_requests_total{{code=\"{code}\",class=\"{}xx\"}} {n}",
            code / 100
        );
    }

    let name = "ferrocorn_request_duration_seconds";
    head(
        &mut out,
        name,
        "histogram",
        "Time from receiving a request to the end of its response body.",
    );
    let mut cumulative = 0;
    for (i, n) in s.latency.iter().enumerate() {
        cumulative += n;
        let le = match LATENCY_BUCKETS_US.get(i) {
            Some(&us) => format!("{}", us as f64 / 1e6),
            None => "+Inf".to_string(),
        };
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_sum {}", s.latency_sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {cumulative}");

    // The single-sample metrics: name, type, help, value.
    let plain: [(&str, &str, &str, String); 14] = [
        ("ferrocorn_requests_in_flight", "gauge", "Requests received and not yet fully answered.", s.in_flight.to_string()),
        ("ferrocorn_request_body_bytes_total", "counter", "Request body bytes read from clients.", s.request_bytes.to_string()),
        ("ferrocorn_response_body_bytes_total", "counter", "Response body bytes sent to clients.", s.response_bytes.to_string()),
        ("ferrocorn_connections_accepted_total", "counter", "Client connections accepted.", s.connections_accepted.to_string()),
        ("ferrocorn_connections_open", "gauge", "Client connections open now.", s.connections_open.to_string()),
        ("ferrocorn_pool_threads", "gauge", "Python threads the pool is kept at (workers x threads, in every worker process).", s.pool.size.to_string()),
        ("ferrocorn_pool_threads_busy", "gauge", "Pool threads running a request.", s.pool.busy.to_string()),
        ("ferrocorn_pool_threads_idle", "gauge", "Pool threads waiting for a request.", s.pool.idle.to_string()),
        ("ferrocorn_pool_queue_depth", "gauge", "Requests waiting for a pool thread.", s.pool.queued.to_string()),
        ("ferrocorn_gil_wait_seconds_total", "counter", "Time pool threads spent waiting to take the GIL back after waiting for work.", format!("{}", s.gil_wait_ns as f64 / 1e9)),
        ("ferrocorn_gil_waits_total", "counter", "Times pool threads took the GIL back after waiting for work.", s.gil_waits.to_string()),
        ("ferrocorn_thread_restarts_total", "counter", "Pool threads replaced (--max-requests, or stuck past --timeout, or waiting on a slow client).", s.thread_restarts.to_string()),
        ("ferrocorn_worker_restarts_total", "counter", "Worker processes started to replace one (--processes).", s.worker_restarts.to_string()),
        ("ferrocorn_worker_processes", "gauge", "Processes serving requests.", s.processes.to_string()),
    ];
    for (name, kind, help, value) in plain {
        head(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_inf() {
        let mut s = Snapshot {
            status: vec![(200, 3), (503, 1)],
            latency_sum_us: 1_500_000,
            ..Snapshot::default()
        };
        s.latency[0] = 2;
        s.latency[9] = 1;
        s.latency[LATENCY_BUCKETS_US.len()] = 1;
        let text = render(&s);
        assert!(text.contains("ferrocorn_requests_total{code=\"503\",class=\"5xx\"} 1\n"));
        assert!(text.contains("ferrocorn_request_duration_seconds_bucket{le=\"0.001\"} 2\n"));
        assert!(text.contains("ferrocorn_request_duration_seconds_bucket{le=\"1\"} 3\n"));
        assert!(text.contains("ferrocorn_request_duration_seconds_bucket{le=\"60\"} 3\n"));
        assert!(text.contains("ferrocorn_request_duration_seconds_bucket{le=\"+Inf\"} 4\n"));
        assert!(text.contains("ferrocorn_request_duration_seconds_sum 1.5\n"));
        assert!(text.contains("ferrocorn_request_duration_seconds_count 4\n"));
        // Every sample follows its own HELP and TYPE.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| b.ends_with("_seconds"))
                .unwrap_or(name);
            assert!(text.contains(&format!("# TYPE {base} ")), "{line}");
        }
    }
}
