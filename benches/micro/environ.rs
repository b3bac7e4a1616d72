//! Building one request's WSGI environ, apart from hyper and the app: what the pool thread does
//! between taking a job and calling the app. Two requests: what `wrk` sends (a `Host` header
//! only) and what a browser sends for a page (a dozen headers, a cookie).

use criterion::{criterion_group, criterion_main, Criterion};
use http::Request;
use pyo3::prelude::*;

use _ferrocorn::config::{AllowList, HeaderMapMode, ProxySettings};
use _ferrocorn::wsgi::{build_for_bench, ConnInfo, HeaderPolicy, Keep, Statics};

fn parts(headers: &[(&str, &str)], target: &str) -> http::request::Parts {
    let mut req = Request::get(target);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    match req.body(()) {
        Ok(r) => r.into_parts().0,
        Err(err) => panic!("bad benchmark request: {err}"),
    }
}

fn environ(c: &mut Criterion) {
    Python::attach(|py| {
        let policy = HeaderPolicy::new(&ProxySettings {
            forwarded_allow: AllowList::parse("127.0.0.1,::1"),
            secure_scheme_headers: vec![
                ("X-FORWARDED-PROTOCOL".into(), "ssl".into()),
                ("X-FORWARDED-PROTO".into(), "https".into()),
                ("X-FORWARDED-SSL".into(), "on".into()),
            ],
            forwarder_headers: vec!["SCRIPT_NAME".into(), "PATH_INFO".into()],
            header_map: HeaderMapMode::Drop,
        });
        let statics = Statics::new(py, "", true, false, Keep::default(), policy)
            .expect("static environ template");
        let conn = ConnInfo::new(
            "127.0.0.1".into(),
            "51234".into(),
            "127.0.0.1".into(),
            "8000".into(),
            "http",
            None,
        );
        let wrk = parts(&[("host", "127.0.0.1:8000")], "/hello/");
        let browser = parts(
            &[
                ("host", "shop.example.com"),
                ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"),
                ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                ("accept-language", "en-GB,en;q=0.9,fr;q=0.8"),
                ("accept-encoding", "gzip, deflate, br, zstd"),
                ("referer", "https://shop.example.com/cart/"),
                ("cookie", "csrftoken=Yx0lW6gkX2gC0aR0pWm3bq2Vq5X5cQjM; sessionid=3x9k1v0c7hzq2m8w5y4t6r1u0p9o8i7"),
                ("upgrade-insecure-requests", "1"),
                ("sec-fetch-dest", "document"),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-site", "same-origin"),
                ("x-forwarded-for", "203.0.113.7"),
                ("x-forwarded-proto", "https"),
            ],
            "/products/espresso-cups/?colour=red&page=2",
        );
        let mut group = c.benchmark_group("environ");
        for (name, req) in [("wrk GET", &wrk), ("browser GET", &browser)] {
            group.bench_function(name, |b| {
                b.iter(|| build_for_bench(py, &statics, req, &conn).expect("environ"))
            });
        }
        group.finish();
    });
}

criterion_group!(benches, environ);
criterion_main!(benches);
