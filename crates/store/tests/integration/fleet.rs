//! Leases shared by several instances: one holder per gateway, expiry, fencing, handover.

use crate::new_store;
use chrono::Utc;
use domain::{FactoryInput, GatewayInput};
use serde_json::json;
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::Duration;
use store::{Lease, NewGatewayEvent, Round, Store};
use uuid::Uuid;

async fn gateways(store: &Store, count: usize) -> Vec<Uuid> {
    let factory = store
        .create_factory(
            FactoryInput {
                name: Some("F".into()),
                ..Default::default()
            }
            .validate()
            .unwrap(),
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    for n in 0..count {
        let input: GatewayInput = serde_json::from_value(json!({
            "factory_id": factory.id.to_string(), "gateway_id": format!("GW-{n}"), "name": format!("G{n}"),
            "url": "ws://127.0.0.1:5000", "email": "a@b.example", "password": "pw",
        }))
        .unwrap();
        ids.push(store.create_gateway(input.validate().unwrap()).await.unwrap().id);
    }
    ids
}

fn round(instance: Uuid, lease_time: Duration, may_expire: bool) -> Round<'static> {
    Round {
        instance,
        address: "test",
        started_at: Utc::now(),
        lease_time,
        may_expire,
        sync_gateways: true,
        balance: true,
        known_version: None,
    }
}

async fn leases(store: &Store, instance: Uuid, lease_time: Duration, may_expire: bool) -> Vec<Lease> {
    let outcome = store
        .coordinate(&round(instance, lease_time, may_expire))
        .await
        .unwrap();
    outcome.leases.expect("leases read when none are known")
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn instances_share_the_gateways_and_a_dead_ones_pass_on_with_new_fences(pool: PgPool) {
    let store = new_store(pool);
    let ids = gateways(&store, 30).await;
    let long = Duration::from_secs(60);
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());

    assert_eq!(
        leases(&store, a, long, false).await.len(),
        30,
        "a lone instance holds everything"
    );
    leases(&store, b, long, false).await;
    leases(&store, c, long, false).await;
    // A asked to hand the excess over: it does once its connections are closed.
    let of_a = leases(&store, a, long, false).await;
    let asked: Vec<Uuid> = of_a.iter().filter(|l| l.handing_over).map(|l| l.gateway).collect();
    assert!(asked.len() >= 30 - 12, "{} asked to move", asked.len());
    assert_eq!(store.hand_over(a, &asked).await.unwrap(), asked.len() as u64);

    let mut holder: HashMap<Uuid, (Uuid, i64)> = HashMap::new();
    for instance in [a, b, c] {
        for lease in leases(&store, instance, long, false).await {
            assert!(!lease.handing_over);
            let previous = holder.insert(lease.gateway, (instance, lease.fence));
            assert!(previous.is_none(), "{} held twice", lease.gateway);
        }
    }
    assert_eq!(holder.len(), 30, "every gateway held once");
    for instance in [a, b, c] {
        let held = holder.values().filter(|(i, _)| *i == instance).count();
        // No one above the mean (10) by more than 20 %, moving no more than that needs.
        assert!(held <= 12, "{instance} holds {held}");
    }
    let listed = store.list_instances(long).await.unwrap();
    assert_eq!(listed.iter().map(|i| i.gateways).sum::<u64>(), 30);

    // C stops renewing. A short lease time makes it dead; only a round allowed to expire does it.
    let short = Duration::from_millis(300);
    tokio::time::sleep(Duration::from_millis(400)).await;
    leases(&store, b, short, false).await;
    assert_eq!(
        store.list_instances(long).await.unwrap().len(),
        3,
        "not expired without may_expire"
    );
    leases(&store, a, short, true).await; // renews A, expires B? no: B renewed just now
    let after: Vec<Lease> = [
        leases(&store, a, short, true).await,
        leases(&store, b, short, true).await,
    ]
    .concat();
    assert_eq!(after.len(), 30, "C's gateways went to A and B");
    let of_c: Vec<&Uuid> = holder.iter().filter(|(_, (i, _))| *i == c).map(|(g, _)| g).collect();
    for gateway in of_c {
        let new = after.iter().find(|l| l.gateway == *gateway).unwrap();
        assert!(
            new.fence > holder[gateway].1,
            "a new holder gets a larger fencing number"
        );
        // C's late writes are refused; the new holder's are not.
        let event = |fence| NewGatewayEvent {
            gateway: *gateway,
            at: Utc::now(),
            kind: "connected",
            message: None,
            close_code: None,
            fence: Some(fence),
        };
        store
            .record_gateway_events(&[event(holder[gateway].1), event(new.fence)])
            .await
            .unwrap();
        let page = domain::PageRequest { limit: 10, offset: 0 };
        assert_eq!(
            store
                .list_gateway_events(*gateway, page)
                .await
                .unwrap()
                .pagination
                .total,
            1
        );
    }
    let _ = ids;
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_clean_leave_frees_the_leases_at_once(pool: PgPool) {
    let store = new_store(pool);
    gateways(&store, 4).await;
    let long = Duration::from_secs(60);
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(leases(&store, a, long, false).await.len(), 4);
    store.leave_fleet(a).await.unwrap();
    assert_eq!(leases(&store, b, long, false).await.len(), 4, "no expiry needed");
}
