//! Callback parsing, the gateway's hot path: `cargo bench -p daraja --bench callback`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("callback_parse");
    group.throughput(Throughput::Elements(1));
    for name in ["success_balance_valueless.json", "failure_cancelled.json"] {
        let body = fixture(name);
        group.bench_function(name.trim_end_matches(".json"), |b| {
            b.iter(|| daraja::callback::parse(black_box(&body)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
