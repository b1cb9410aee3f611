//! `--bulk-only`: the bulk load and the full scans (binary `COPY … TO
//! STDOUT`, and a `SELECT` streamed through `query_raw`) of aepg and plain
//! tokio-postgres alone (no pgcrypto), in turns, with the CPU each spent
//! beside its time: the client's (this process, every thread), and the
//! server's where it can be read (the Docker containers' cgroup v1
//! `cpuacct`; the benchmark's server is the only busy container). Shows
//! which side holds a bulk workload back.

use std::time::Duration;

use crate::cell_cpu::process_cpu;
use crate::{
    copy_in_aepg, copy_in_plain, in_turns, scan_aepg, scan_plain, select_scan_aepg,
    select_scan_plain, Failure, Person, Ratios,
};

/// All Docker containers' CPU time so far, in nanoseconds (cgroup v1).
const DOCKER_CPU: &str = "/sys/fs/cgroup/cpuacct/docker/cpuacct.usage";

/// The CPU a workload spent: the client's, and the server's if known.
#[derive(Clone, Copy)]
struct Spent {
    client: Duration,
    server: Option<Duration>,
}

/// The server's CPU time so far, if readable.
fn server_cpu() -> Option<Duration> {
    let nanos: u64 = std::fs::read_to_string(DOCKER_CPU)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_nanos(nanos))
}

/// Runs `work`, returning its result and the CPU spent meanwhile.
async fn measured<T>(
    work: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<(T, Spent), Failure> {
    let (client, server) = (process_cpu()?, server_cpu());
    let result = work.await?;
    let spent = Spent {
        client: process_cpu()?.saturating_sub(client),
        server: server
            .zip(server_cpu())
            .map(|(before, after)| after.saturating_sub(before)),
    };
    Ok((result, spent))
}

/// Each block's CPU ratios (aepg ÷ plain), printed as median (min .. max).
#[derive(Default)]
struct CpuRatios {
    client: Vec<f64>,
    server: Vec<f64>,
}

impl CpuRatios {
    fn add(&mut self, plain: Spent, aepg: Spent) {
        self.client
            .push(aepg.client.as_secs_f64() / plain.client.as_secs_f64());
        if let (Some(plain), Some(aepg)) = (plain.server, aepg.server) {
            self.server.push(aepg.as_secs_f64() / plain.as_secs_f64());
        }
    }

    fn print(&self, name: &str) {
        let server = if self.server.is_empty() {
            "not readable".to_owned()
        } else {
            crate::spread(&self.server)
        };
        println!(
            "  {name}: CPU aepg ÷ plain: client {}, server {server}",
            crate::spread(&self.client)
        );
    }
}

/// Loads `rows` into both tables in `blocks` blocks, then scans both
/// `blocks` times, each block in turns; prints the ratios.
pub async fn run(
    plain: &tokio_postgres::Client,
    aepg: &aepg::Client,
    rows: &[Person],
    blocks: usize,
) -> Result<(), Failure> {
    let mut load = Ratios::new("bulk load (COPY)");
    let mut load_cpu = CpuRatios::default();
    for (index, chunk) in rows.chunks(rows.len().div_ceil(blocks)).enumerate() {
        let ((plain_time, plain_cpu), (aepg_time, aepg_cpu)) = in_turns(
            index,
            || measured(copy_in_plain(plain, chunk)),
            || measured(copy_in_aepg(aepg, chunk)),
        )
        .await?;
        load.add_aepg(plain_time, aepg_time);
        load_cpu.add(plain_cpu, aepg_cpu);
    }
    let (scan, scan_cpu) = scans(
        "binary COPY out (full scan)",
        blocks,
        rows.len(),
        || scan_plain(plain),
        || scan_aepg(aepg),
    )
    .await?;
    let (select, select_cpu) = scans(
        "SELECT (full scan, query_raw)",
        blocks,
        rows.len(),
        || select_scan_plain(plain),
        || select_scan_aepg(aepg),
    )
    .await?;
    println!("{:<36} aepg ÷ plain", "workload");
    for (ratios, cpu) in [
        (&load, &load_cpu),
        (&scan, &scan_cpu),
        (&select, &select_cpu),
    ] {
        ratios.print_aepg();
        cpu.print(ratios.name);
    }
    Ok(())
}

/// `blocks` full scans each by plain's and aepg's `scan` (in turns), each
/// of `expected` rows: their ratios and CPU.
async fn scans<P, A>(
    name: &'static str,
    blocks: usize,
    expected: usize,
    plain: impl Fn() -> P,
    aepg: impl Fn() -> A,
) -> Result<(Ratios, CpuRatios), Failure>
where
    P: std::future::Future<Output = Result<(Duration, usize), Failure>>,
    A: std::future::Future<Output = Result<(Duration, usize), Failure>>,
{
    let mut scan = Ratios::new(name);
    let mut scan_cpu = CpuRatios::default();
    for index in 0..blocks {
        let (((plain_time, plain_rows), plain_cpu), ((aepg_time, aepg_rows), aepg_cpu)) =
            in_turns(index, || measured(plain()), || measured(aepg())).await?;
        if plain_rows != expected || aepg_rows != expected {
            return Err(format!(
                "{name}: {plain_rows} plain and {aepg_rows} aepg rows of {expected}"
            )
            .into());
        }
        if std::env::var_os("AEPG_BENCH_VERBOSE").is_some() {
            eprintln!(
                "{name}: plain {plain_time:?} (CPU: client {:?}, server {:?}), \
                 aepg {aepg_time:?} (CPU: client {:?}, server {:?})",
                plain_cpu.client, plain_cpu.server, aepg_cpu.client, aepg_cpu.server
            );
        }
        scan.add_aepg(plain_time, aepg_time);
        scan_cpu.add(plain_cpu, aepg_cpu);
    }
    Ok((scan, scan_cpu))
}
