//! One module per group of commands; [`run`] dispatches.

mod catalog;
mod keys;
mod migrate;
mod report;
mod rotate;
mod settings;

use crate::args::{
    CekCommand, CekRotation, CmkCommand, CmkRotation, ColumnCommand, Command, RotateCommand,
    SettingCommand,
};
use crate::config::Settings;
use crate::failure::Failure;
use crate::output::Output;

/// Runs `command`.
///
/// # Errors
/// [`Failure`]: a usage error or the operation's failure.
pub async fn run(command: &Command, settings: &Settings, output: Output) -> Result<(), Failure> {
    match command {
        Command::Init => catalog::init(settings, output).await,
        Command::Cmk(CmkCommand::Register {
            name,
            location,
            generate,
        }) => keys::register_master_key(settings, output, name, location, *generate).await,
        Command::Cmk(CmkCommand::List) => keys::list_master_keys(settings, output).await,
        Command::Cek(CekCommand::Create { cmk, location }) => {
            keys::create_column_key(settings, output, cmk, location).await
        }
        Command::Cek(CekCommand::List) => keys::list_column_keys(settings, output).await,
        Command::Cek(CekCommand::Drop { id }) => keys::drop_column_key(settings, output, *id).await,
        Command::Setting(SettingCommand::Create(new)) => {
            settings::create_setting(settings, output, new).await
        }
        Command::Setting(SettingCommand::List) => settings::list_settings(settings, output).await,
        Command::Column(ColumnCommand::Assign {
            table,
            column,
            setting,
        }) => settings::assign_column(settings, output, table, column, setting).await,
        Command::Column(ColumnCommand::Encrypt {
            table,
            column,
            setting,
            migration,
        }) => migrate::encrypt(settings, output, table, column, setting, migration).await,
        Command::Column(ColumnCommand::Decrypt {
            table,
            column,
            migration,
        }) => migrate::decrypt(settings, output, table, column, migration).await,
        Command::Column(ColumnCommand::Abort {
            table,
            column,
            lock_timeout,
        }) => migrate::abort(settings, output, table, column, *lock_timeout).await,
        Command::Column(ColumnCommand::Status { table }) => {
            settings::column_status(settings, output, table.as_deref()).await
        }
        Command::Rotate(RotateCommand::Cmk(CmkRotation::Start(args))) => {
            rotate::start_master_key(settings, output, args).await
        }
        Command::Rotate(RotateCommand::Cmk(CmkRotation::Complete(args))) => {
            rotate::complete_master_key(settings, output, args).await
        }
        Command::Rotate(RotateCommand::Cek(CekRotation::Start(args))) => {
            rotate::start_column_key(settings, output, args).await
        }
        Command::Rotate(RotateCommand::Cek(CekRotation::Status { setting })) => {
            rotate::column_key_status(settings, output, setting).await
        }
        Command::Rotate(RotateCommand::Cek(CekRotation::Complete(args))) => {
            rotate::complete_column_key(settings, output, args).await
        }
        Command::Status => report::status(settings, output).await,
        Command::Explain { sql } => report::explain(settings, output, sql).await,
        Command::Verify => report::verify(settings, output).await,
    }
}
