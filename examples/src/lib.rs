//! Example programs live in this crate as `[[example]]` targets; this
//! library holds what they share.

/// What an example's `main` returns on failure.
pub type Failure = Box<dyn std::error::Error + Send + Sync>;

/// `DATABASE_URL`, or a database named after `label` on a throwaway server
/// started as the test suite starts one (a container, or a local `initdb`
/// cluster). The server is returned too: dropping it removes the server,
/// database and all.
///
/// # Errors
/// No server could be started.
pub async fn database(label: &str) -> Result<(String, Option<aepg_pgserver::Server>), Failure> {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        println!("using DATABASE_URL");
        return Ok((url, None));
    }
    let server = aepg_pgserver::Server::start(&[]).await?;
    println!(
        "using a throwaway PostgreSQL ({})",
        server.info().description
    );
    let database = server.create_database(label).await?;
    Ok((database.connection_string(), Some(server)))
}
