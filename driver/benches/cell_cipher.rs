//! Throughput of aepg's cell cipher against the anchors' constructions.
//!
//! `cargo bench -p aepg --bench cell_cipher`, then
//! `python3 scripts/bench_ratios.py` prints the ratios for docs/BENCHMARKS.md.
#![allow(missing_docs, clippy::unwrap_used)] // a bench binary

mod reference_ciphers;

use std::hint::black_box;
use std::time::Duration;

use aepg::cell::{CellCipher, CellSetting, EncryptionMode, PaddingPolicy, PlaintextType};
use aepg::keystore::ColumnKey;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use reference_ciphers::{MongoCell, SqlServerCell};

const SIZES: [usize; 3] = [16, 256, 4096];

fn aepg_setting(mode: EncryptionMode) -> CellSetting {
    CellSetting {
        setting_id: 1,
        mode,
        plaintext_type: PlaintextType {
            oid: 17,
            typmod: -1,
        }, // bytea
        padding: PaddingPolicy::Block16,
    }
}

fn bench(c: &mut Criterion) {
    let aepg = CellCipher::new(1, &ColumnKey::generate().unwrap());
    let sql_server = SqlServerCell::new(&[7; 32]);
    let mongo = MongoCell::new(&[9; 96]);

    for (mode_name, mode) in [
        ("deterministic", EncryptionMode::Deterministic),
        ("randomized", EncryptionMode::Randomized),
    ] {
        let deterministic = mode == EncryptionMode::Deterministic;
        let setting = aepg_setting(mode);
        for operation in ["encrypt", "decrypt"] {
            let mut group = c.benchmark_group(format!("{operation}-{mode_name}"));
            for size in SIZES {
                let plaintext = vec![0x61u8; size];
                group.throughput(Throughput::Bytes(size as u64));
                if operation == "encrypt" {
                    group.bench_function(BenchmarkId::new("aepg", size), |b| {
                        b.iter(|| aepg.encrypt(&setting, black_box(&plaintext)).unwrap())
                    });
                    group.bench_function(BenchmarkId::new("sqlserver", size), |b| {
                        b.iter(|| sql_server.encrypt(black_box(&plaintext), deterministic))
                    });
                    group.bench_function(BenchmarkId::new("mongodb", size), |b| {
                        b.iter(|| mongo.encrypt(black_box(&plaintext), deterministic))
                    });
                } else {
                    let cell = aepg.encrypt(&setting, &plaintext).unwrap();
                    assert_eq!(&aepg.decrypt(&setting, &cell).unwrap()[..], &plaintext[..]);
                    group.bench_function(BenchmarkId::new("aepg", size), |b| {
                        b.iter(|| aepg.decrypt(&setting, black_box(&cell)).unwrap())
                    });
                    let cell = sql_server.encrypt(&plaintext, deterministic);
                    assert_eq!(sql_server.decrypt(&cell).unwrap(), plaintext);
                    group.bench_function(BenchmarkId::new("sqlserver", size), |b| {
                        b.iter(|| sql_server.decrypt(black_box(&cell)).unwrap())
                    });
                    let cell = mongo.encrypt(&plaintext, deterministic);
                    assert_eq!(mongo.decrypt(&cell).unwrap(), plaintext);
                    group.bench_function(BenchmarkId::new("mongodb", size), |b| {
                        b.iter(|| mongo.decrypt(black_box(&cell)).unwrap())
                    });
                }
            }
            group.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
