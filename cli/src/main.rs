//! `aepg`: the command line for aepg's key administration, column
//! migrations, rotation and `explain`. Only `--version` exists so far; the
//! administration is available as library calls in `aepg::catalog`.

fn main() {
    match std::env::args().nth(1).as_deref() {
        None | Some("--version" | "-V") => println!("aepg {}", env!("CARGO_PKG_VERSION")),
        Some(other) => {
            eprintln!(
                "aepg {}: unknown command {other:?}; the CLI offers only --version so far \
                 (key administration is in the aepg::catalog library API)",
                env!("CARGO_PKG_VERSION")
            );
            std::process::exit(2);
        }
    }
}
