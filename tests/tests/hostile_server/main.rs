//! The hostile server: every attack a superuser of the server can make
//! with plain SQL and no master key — catalog rows edited, deleted,
//! swapped, replayed from older generations or another database; keys
//! re-pointed; column types changed; tables renamed and shadowed by
//! tables, views and temporary tables; search paths changed behind the
//! client's back; rules; the catalog dropped and reinstalled — each tried
//! against a fresh unpinned client, a pinned client and a warm client.
//!
//! The server logs every statement and parameter, and a proxy records
//! every byte clients send it. After all attacks, no plaintext bound for an
//! encrypted column may appear in either, while a plaintext control value
//! must (which proves the search works); and every refusal must name the
//! problem.
#![allow(clippy::unwrap_used)] // a test fails by panicking

mod attacks;
mod scene;
mod workload;

use futures_util::StreamExt;

use attacks::{Attack, Expect, ATTACKS};
use scene::{Kind, Lab, Scene};
use workload::Text;

/// Runs one attack and checks every client's answers; returns what went wrong.
async fn try_attack(lab: &Lab, attack: &Attack) -> Vec<String> {
    let mut scene = Scene::new(lab, attack.name).await;
    (attack.run)(&mut scene).await;
    let mut problems = Vec::new();
    for (kind, expect) in Kind::ALL.into_iter().zip(attack.expect) {
        let owned = scene.client(kind).await;
        let client = owned.as_ref().unwrap_or(&scene.warm);
        if let Expect::AcceptsReplay = expect {
            if let Err(error) = client.catalog().await {
                problems.push(format!(
                    "{kind:?}: expected to accept the replay, got {error}"
                ));
            }
            continue;
        }
        let texts: &[Text] = match kind {
            Kind::Warm => &[Text::Usual, Text::New],
            _ => &[Text::Usual],
        };
        let mut outcomes = Vec::new();
        for operation in attack.workload {
            for text in texts {
                let outcome = operation.run(client, lab, attack.name, kind, *text).await;
                outcomes.push((format!("{operation:?}/{text:?}"), outcome));
            }
        }
        problems.extend(judge(kind, expect, &outcomes));
    }
    problems
        .into_iter()
        .map(|problem| format!("{}: {problem}", attack.name))
        .collect()
}

/// What in `outcomes` contradicts `expect`.
fn judge(kind: Kind, expect: Expect, outcomes: &[(String, Result<(), String>)]) -> Vec<String> {
    let names = |fragments: &[&str], message: &str| fragments.iter().any(|f| message.contains(f));
    let mut problems = Vec::new();
    let refused = outcomes
        .iter()
        .filter(|(_, outcome)| outcome.is_err())
        .count();
    for (operation, outcome) in outcomes {
        match (expect, outcome) {
            (Expect::Works, Err(message)) => {
                problems.push(format!("{kind:?} {operation}: expected to work, failed: {message}"))
            }
            (Expect::Refused(_), Ok(())) => {
                problems.push(format!("{kind:?} {operation}: expected a refusal, it worked"))
            }
            (
                Expect::Refused(fragments)
                | Expect::SomeRefused(fragments)
                | Expect::Safe(fragments),
                Err(message),
            ) if !names(fragments, message) => problems.push(format!(
                "{kind:?} {operation}: the error does not name the problem ({fragments:?}): {message}"
            )),
            _ => {}
        }
    }
    if let Expect::SomeRefused(_) = expect {
        if refused == 0 {
            problems.push(format!(
                "{kind:?}: expected some refusal, everything worked"
            ));
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_attack_by_the_server_side_gets_a_plaintext() {
    let lab = Lab::start().await;
    // Attacks are independent (a database each): a few at a time.
    let mut problems: Vec<String> = futures_util::stream::iter(ATTACKS)
        .map(|attack| try_attack(&lab, attack))
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .flatten()
        .collect();
    // The search works: a plaintext control value is seen on the wire and in the log.
    let control = format!("CONTROL-plaintext-{}", rand::random::<u32>());
    let scene = Scene::new(&lab, "control").await;
    scene
        .warm
        .execute("UPDATE patients SET name = $1", &[&control])
        .await
        .unwrap();
    let log = lab.server.server_log().await.unwrap();
    assert!(
        lab.tap.saw(control.as_bytes()),
        "the wire tap missed the control value"
    );
    assert!(
        log.contains(&control),
        "the server log misses the control value"
    );

    let needles = lab.needles();
    assert!(needles.len() > 300, "{} plaintexts", needles.len());
    for needle in &needles {
        if lab.tap.saw(needle.as_bytes()) {
            problems.push(format!("plaintext {needle} reached the server"));
        }
        if log.contains(needle.as_str()) {
            problems.push(format!("plaintext {needle} is in the server log"));
        }
    }
    eprintln!(
        "{} attacks, {} plaintexts, {} bytes on the wire",
        ATTACKS.len(),
        needles.len(),
        lab.tap.bytes_sent()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
