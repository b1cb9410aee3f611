//! `column encrypt|decrypt`: in-place column migrations, with progress.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use aepg::migration::{MigrationOptions, MigrationProgress, MigrationReport, MigrationStage};
use aepg::ColumnName;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::catalog::admin;
use super::settings::column_name;
use crate::args::MigrationArgs;
use crate::config::Settings;
use crate::connect;
use crate::failure::Failure;
use crate::output::{clean, Output};

/// `aepg column encrypt --table T --column C --setting S`
pub async fn encrypt(
    settings: &Settings,
    output: Output,
    table: &str,
    column: &str,
    setting: &str,
    args: &MigrationArgs,
) -> Result<(), Failure> {
    let column = column_name(table, column);
    let options = options(args)?;
    let mut client = connect::plain(settings).await?;
    let mut progress = Progress::new(&format!("encrypt {column}"));
    let report = admin(settings)
        .encrypt_column(&mut client, &column, setting, &options, &mut |update| {
            progress.update(update)
        })
        .await;
    progress.finish();
    let report = report?;
    output.result(
        || {
            summary(
                &report,
                &column,
                &format!("encrypted under setting {setting:?}"),
            )
        },
        || result_json(&report, &column, "encrypt"),
    );
    Ok(())
}

/// `aepg column decrypt --table T --column C`
pub async fn decrypt(
    settings: &Settings,
    output: Output,
    table: &str,
    column: &str,
    args: &MigrationArgs,
) -> Result<(), Failure> {
    let column = column_name(table, column);
    let options = options(args)?;
    let mut client = connect::plain(settings).await?;
    let mut progress = Progress::new(&format!("decrypt {column}"));
    let report = admin(settings)
        .decrypt_column(&mut client, &column, &options, &mut |update| {
            progress.update(update)
        })
        .await;
    progress.finish();
    let report = report?;
    output.result(
        || summary(&report, &column, "decrypted: it holds plaintext values"),
        || result_json(&report, &column, "decrypt"),
    );
    Ok(())
}

/// `aepg column abort --table T --column C`
pub async fn abort(
    settings: &Settings,
    output: Output,
    table: &str,
    column: &str,
    lock_timeout: f64,
) -> Result<(), Failure> {
    let column = column_name(table, column);
    let options =
        MigrationOptions::default().lock_timeout(seconds(lock_timeout, "--lock-timeout")?);
    let mut client = connect::plain(settings).await?;
    let abandoned = admin(settings)
        .abort_migration(&mut client, &column, &options)
        .await?;
    output.result(
        || {
            if abandoned {
                format!("the migration of column {column} is abandoned; the column is as it was")
            } else {
                format!("column {column} has no migration under way")
            }
        },
        || json!({ "column": column.to_string(), "abandoned": abandoned }),
    );
    Ok(())
}

fn seconds(value: f64, flag: &str) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| Failure::usage(format!("{flag} takes a number of seconds, not {value}")))
}

pub(super) fn options(args: &MigrationArgs) -> Result<MigrationOptions, Failure> {
    Ok(MigrationOptions::default()
        .batch_size(usize::try_from(args.batch_size).unwrap_or(usize::MAX))
        .grace(seconds(args.grace, "--grace")?)
        .lock_timeout(seconds(args.lock_timeout, "--lock-timeout")?)
        .swap_attempts(args.swap_attempts))
}

fn summary(report: &MigrationReport, column: &ColumnName, outcome: &str) -> String {
    if report.already_done {
        return format!("column {column} is {outcome} already; nothing to do");
    }
    format!(
        "column {column} is {outcome} ({} rows converted{}; catalog generation {})",
        report.rows_converted,
        if report.resumed {
            ", resuming an earlier run"
        } else {
            ""
        },
        report.generation
    )
}

fn result_json(
    report: &MigrationReport,
    column: &ColumnName,
    direction: &str,
) -> serde_json::Value {
    json!({
        "column": column.to_string(),
        "direction": direction,
        "rows_converted": report.rows_converted,
        "resumed": report.resumed,
        "already_done": report.already_done,
        "generation": report.generation,
    })
}

/// Progress on stderr: a bar with rows, rate and ETA on a terminal, a line
/// at most every second (and at every stage) otherwise.
pub(super) struct Progress {
    label: String,
    bar: Option<ProgressBar>,
    started: Instant,
    first_done: Option<u64>,
    last_line: Option<(Instant, MigrationStage)>,
}

impl Progress {
    /// A progress display for the operation `label` names.
    pub(super) fn new(label: &str) -> Self {
        let label = clean(label);
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {human_pos}/{human_len} rows, {per_sec}, ETA {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Self {
            label,
            bar,
            started: Instant::now(),
            first_done: None,
            last_line: None,
        }
    }

    pub(super) fn update(&mut self, progress: &MigrationProgress) {
        let first_done = *self.first_done.get_or_insert(progress.rows_done);
        let stage = progress.stage.as_str();
        if let Some(bar) = &self.bar {
            bar.set_length(progress.rows_total);
            bar.set_position(progress.rows_done);
            bar.set_message(format!("{}: {stage}", self.label));
            return;
        }
        let now = Instant::now();
        let due = match self.last_line {
            Some((at, last_stage)) => {
                last_stage != progress.stage || now.duration_since(at) >= Duration::from_secs(1)
            }
            None => true,
        };
        if !due {
            return;
        }
        self.last_line = Some((now, progress.stage));
        let elapsed = now.duration_since(self.started).as_secs_f64();
        let rate = if elapsed > 0.0 {
            (progress.rows_done.saturating_sub(first_done)) as f64 / elapsed
        } else {
            0.0
        };
        eprintln!(
            "{}: {stage}: {}/{} rows ({rate:.0} rows/s)",
            self.label, progress.rows_done, progress.rows_total
        );
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
