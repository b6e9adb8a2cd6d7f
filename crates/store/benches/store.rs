//! Criterion benchmarks of the library's operations on a real-disk store
//! (under cargo's `target/tmp`, never a tmpfs): save, load, update, log,
//! checkpoint and lock at 1 KB, 100 KB and 5 MB states.
//!
//! Small sample sizes keep `cargo bench -p mstate-store` to a few minutes.
//! These track the library alone over time; the comparisons with the I/O
//! floor, SQLite and whole processes are `mstate-bench` (`scripts/bench.sh`).

use mstate_store::prelude::*;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::{json, Value};

use mstate_store::model::{LockRequest, NewEvent, StateEdit};
use mstate_store::{CheckpointName, EventType, FsOptions, FsStore, MilestoneId, WriteOptions};

/// A state of about `size` bytes of compact JSON: a phase and task records.
fn state(size: usize) -> Value {
    let mut tasks = Vec::new();
    let mut total = 100;
    let mut i = 0u64;
    while total < size {
        let t = json!({
            "id": format!("task-{i:06}"),
            "status": "done",
            "attempts": i % 3,
            "progress": (i % 100) as f64 / 100.0,
            "notes": format!("step {i} compiled and tested in {}.{:02}s", i % 60, i % 100),
        });
        total += t.to_string().len() + 1;
        tasks.push(t);
        i += 1;
    }
    json!({"phase": "build", "tasks": tasks})
}

/// A fresh store under cargo's target/tmp (real disk).
fn store(name: &str) -> (FsStore, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("store-bench-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create bench dir");
    let root = dir.join(".milestones/state");
    (
        FsStore::open(&root, FsOptions::default()).expect("open store"),
        dir,
    )
}

fn sizes() -> [(usize, &'static str); 3] {
    [(1_000, "1KB"), (100_000, "100KB"), (5_000_000, "5MB")]
}

fn benches(c: &mut Criterion) {
    let id = MilestoneId::new("m").unwrap();
    let opts = WriteOptions {
        expect_revision: None,
        lock_timeout: Duration::from_secs(60),
        lock_token: None,
    };
    let cp = CheckpointName::new("c").unwrap();
    let progress = EventType::new("progress").unwrap();
    for (size, name) in sizes() {
        let st = state(size);
        let (s, dir) = store(name);
        s.init(&id).unwrap();
        s.save(&id, &st, &opts).unwrap();

        let mut g = c.benchmark_group(format!("state-{name}"));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2))
            .throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::new("save", name), |b| {
            b.iter(|| s.save(&id, &st, &opts).unwrap())
        });
        g.bench_function(BenchmarkId::new("load", name), |b| {
            b.iter(|| s.load(&id, &opts).unwrap())
        });
        let mut n = 0u64;
        g.bench_function(BenchmarkId::new("update", name), |b| {
            b.iter(|| {
                n += 1;
                let edit = StateEdit::set("/phase", json!(format!("phase-{n}")));
                s.update(&id, &edit, &opts).unwrap()
            })
        });
        g.bench_function(BenchmarkId::new("checkpoint", name), |b| {
            b.iter(|| s.checkpoint_create(&id, Some(&cp), true, &opts).unwrap())
        });
        g.finish();

        if size == 1_000 {
            let mut g = c.benchmark_group("no-state");
            g.sample_size(10)
                .warm_up_time(Duration::from_millis(300))
                .measurement_time(Duration::from_secs(2));
            let data = json!({"task": "compile", "percentage": 42});
            g.bench_function("log", |b| {
                b.iter(|| {
                    let ev = NewEvent {
                        event_type: progress.clone(),
                        data: data.clone(),
                        session_id: None,
                    };
                    s.log(&id, &ev).unwrap()
                })
            });
            let req = LockRequest {
                operation: "bench".into(),
                timeout: Duration::from_secs(60),
                owner_pid: std::process::id(),
                ttl: None,
                group: None,
            };
            g.bench_function("lock-acquire-release", |b| {
                b.iter(|| s.lock_scoped(&id, &req).unwrap().release().unwrap())
            });
            g.finish();
        }
        drop(s);
        let _ = std::fs::remove_dir_all(dir);
    }
}

criterion_group!(store_benches, benches);
criterion_main!(store_benches);
