//! Rendering one access-log line, apart from writing it: gunicorn's default format, a format
//! with request/response header and timing atoms, and the JSON line (`--access-log-json`).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method, Uri, Version};

use _ferrocorn::logging::access::AccessRecord;
use _ferrocorn::logging::{AccessLog, Sink};

fn access_log(c: &mut Criterion) {
    let mut request_headers = HeaderMap::new();
    for (k, v) in [
        ("host", "shop.example.com"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"),
        ("referer", "https://shop.example.com/cart/"),
        ("x-request-id", "4bf92f3577b34da6a3ce929d0e0e4736"),
    ] {
        request_headers.insert(k, HeaderValue::from_static(v));
    }
    let mut response_headers = HeaderMap::new();
    response_headers.insert(
        "content-type",
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    let uri: Uri = "/products/espresso-cups/?colour=red&page=2"
        .parse()
        .expect("uri");
    let method = Method::GET;
    let record = AccessRecord {
        remote: "203.0.113.7",
        method: &method,
        uri: &uri,
        raw_target: None,
        path_info: Some("/products/espresso-cups/"),
        version: Version::HTTP_11,
        request_headers: &request_headers,
        response_headers: Some(&response_headers),
        environ: &[],
        status: 200,
        bytes: 18_342,
        elapsed: Duration::from_micros(2_345),
    };
    let formats = [
        (
            "gunicorn default",
            AccessLog::new(_ferrocorn::logging::access::DEFAULT_FORMAT, Sink::Stderr),
        ),
        (
            "headers and timings",
            AccessLog::new(
                r#"%(h)s %(t)s "%(r)s" %(s)s %(b)s %(D)s %(M)s %({x-request-id}i)s %({content-type}o)s %(p)s"#,
                Sink::Stderr,
            ),
        ),
        ("json", AccessLog::json(Sink::Stderr)),
    ];
    let mut group = c.benchmark_group("access log line");
    for (name, log) in &formats {
        group.bench_function(*name, |b| b.iter(|| log.render(&record)));
    }
    group.finish();
}

criterion_group!(benches, access_log);
criterion_main!(benches);
