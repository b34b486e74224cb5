//! Consumers of one nonce whose connections are cut mid call, queued on its row's lock: exactly
//! one of them wins, whatever the order of calls, cuts and the lock's release.

use std::rc::Rc;

use lti_storage_lambda::Storage;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use test_support::proxy::Proxy;
use test_support::TestDb;
use tokio::task::LocalSet;

use super::{lock_nonce, nonce_row, store_for_an_hour, until_waiting_on_a_lock};

/// A container whose connection to the test's schema goes through a proxy of its own (so its
/// connection can be cut alone) under its own `application_name` (so its backends can be
/// watched), with time limits that a test holding row locks does not reach.
async fn consumer(db: &TestDb, name: &str) -> (Proxy, Rc<Storage>) {
    let proxy = Proxy::start(&db.url).await;
    let url = test_support::with_param(
        &proxy.redirect(&db.url),
        &format!("application_name={name}"),
    );
    let storage = db.storage_with(&[("DATABASE_URL", &url), ("QUERY_TIMEOUT_MS", "30000")]);
    // Connected, and the consuming statement prepared: a cut then loses the call itself.
    assert!(!storage.validate_nonce("warm-up").await.unwrap());
    (proxy, Rc::new(storage))
}

#[tokio::test]
async fn of_many_consumers_whose_connections_are_cut_mid_call_exactly_one_wins() {
    const CONSUMERS: usize = 8;
    let db = TestDb::migrated().await;
    let admin = db.sql().await;
    let prefix = format!("race_{}", &db.schema[2..14]);
    let mut consumers = Vec::new();
    for i in 0..CONSUMERS {
        consumers.push(consumer(&db, &format!("{prefix}_{i}")).await);
    }
    LocalSet::new()
        .run_until(async {
            // Round 0 cuts every call; round 1 every other one, the first in line uncut; round
            // 2 every other one, the first in line cut.
            for round in 0..3 {
                let nonce = format!("raced-{round}");
                store_for_an_hour(&db, &nonce).await;
                let holder = lock_nonce(&db, &nonce).await;
                let mut calls = Vec::new();
                for (i, (_, storage)) in consumers.iter().enumerate() {
                    let (storage, nonce) = (storage.clone(), nonce.clone());
                    calls.push(tokio::task::spawn_local(async move {
                        storage.validate_nonce(&nonce).await
                    }));
                    // One at a time, so the queue for the row's lock is in this order.
                    until_waiting_on_a_lock(&admin, &prefix, i as i64 + 1, &calls).await;
                }
                let cut: Vec<bool> = (0..CONSUMERS)
                    .map(|i| round == 0 || (i + round) % 2 == 0)
                    .collect();
                for ((proxy, _), cut) in consumers.iter().zip(&cut) {
                    if *cut {
                        proxy.cut_all();
                    }
                }
                // Each cut call's statement still waits on the server, and its repeat
                // queues behind it.
                let cuts = cut.iter().filter(|cut| **cut).count();
                until_waiting_on_a_lock(&admin, &prefix, (CONSUMERS + cuts) as i64, &calls).await;
                holder.batch_execute("COMMIT").await.unwrap();

                let mut answers = Vec::new();
                for call in calls {
                    answers.push(call.await.unwrap().expect("no call fails"));
                }
                assert_eq!(
                    answers.iter().filter(|won| **won).count(),
                    1,
                    "round {round}: exactly one true of {answers:?}"
                );
                let (_, used_at) = nonce_row(&db, &nonce).await.unwrap();
                assert!(used_at.is_some(), "round {round}: consumed");
                assert!(!consumers[0].1.validate_nonce(&nonce).await.unwrap());
            }
        })
        .await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Consumer `i` calls validateNonce (it queues for the row's lock while that is held).
    Call(usize),
    /// Consumer `i`'s connection is cut, whatever its call is doing.
    Cut(usize),
    /// The transaction holding the row's lock ends.
    Release,
}

/// Two consumers, each cut or not, their calls and cuts in any order around the release of
/// the row's lock; the lock holder may have consumed the nonce itself, as @lti-tool/postgresql
/// does.
fn interleavings() -> impl Strategy<Value = (Vec<Step>, bool)> {
    (any::<[bool; 2]>(), any::<bool>())
        .prop_flat_map(|(cut, holder_consumes)| {
            let mut steps = vec![Step::Call(0), Step::Call(1), Step::Release];
            steps.extend((0..2).filter(|&i| cut[i]).map(Step::Cut));
            (Just(steps).prop_shuffle(), Just(holder_consumes))
        })
        .prop_filter("a cut comes after its call", |(steps, _)| {
            steps.iter().enumerate().all(|(at, step)| match step {
                Step::Cut(i) => steps[..at].contains(&Step::Call(*i)),
                _ => true,
            })
        })
}

#[test]
fn two_consumers_and_cut_connections_in_any_interleaving_give_one_true_at_most() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(TestDb::migrated());
    let admin = rt.block_on(db.sql());
    let case = std::cell::Cell::new(0);
    let mut runner = TestRunner::new(proptest::test_runner::Config {
        cases: 32,
        failure_persistence: None,
        ..Default::default()
    });
    runner
        .run(&interleavings(), |(steps, holder_consumes)| {
            case.set(case.get() + 1);
            rt.block_on(LocalSet::new().run_until(async {
                let nonce = format!("interleaved-{}", case.get());
                let names = [0, 1].map(|i| format!("p{}_{i}_{}", case.get(), &db.schema[2..14]));
                let a = consumer(&db, &names[0]).await;
                let b = consumer(&db, &names[1]).await;
                let consumers = [a, b];
                store_for_an_hour(&db, &nonce).await;
                let holder = lock_nonce(&db, &nonce).await;
                if holder_consumes {
                    holder
                        .execute(
                            "UPDATE nonces SET used_at = now() WHERE nonce = $1 AND used_at IS NULL",
                            &[&nonce],
                        )
                        .await
                        .unwrap();
                }
                let mut locked = true;
                let mut calls = Vec::new();
                for step in &steps {
                    match *step {
                        Step::Call(i) => {
                            let (storage, nonce) = (consumers[i].1.clone(), nonce.clone());
                            calls.push(tokio::task::spawn_local(async move {
                                storage.validate_nonce(&nonce).await
                            }));
                            if locked {
                                until_waiting_on_a_lock(&admin, &names[i], 1, &calls).await;
                            }
                        }
                        Step::Cut(i) => {
                            consumers[i].0.cut_all();
                            if locked {
                                // The cut statement waits on; the repeat queues behind it.
                                until_waiting_on_a_lock(&admin, &names[i], 2, &calls).await;
                            }
                        }
                        Step::Release => {
                            holder.batch_execute("COMMIT").await.unwrap();
                            locked = false;
                        }
                    }
                }
                let mut wins = 0;
                for call in calls {
                    let answer = call.await.unwrap();
                    prop_assert!(answer.is_ok(), "a call failed: {answer:?}");
                    wins += usize::from(answer == Ok(true));
                }
                prop_assert_eq!(wins, usize::from(!holder_consumes), "true answers");
                let (_, used_at) = nonce_row(&db, &nonce).await.unwrap();
                prop_assert!(used_at.is_some(), "consumed");
                prop_assert!(!db.storage().validate_nonce(&nonce).await.unwrap());
                Ok(())
            }))
        })
        .unwrap();
}
