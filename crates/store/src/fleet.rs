//! Several server instances sharing one fleet, coordinated by PostgreSQL alone.
//!
//! - **Instances** register in `fleet_instances` and renew a heartbeat; one whose
//!   heartbeat is older than the lease time is expired by the next instance that
//!   coordinates, which frees its gateways.
//! - **Leases**: `gateway_leases` names the instance that connects each gateway and a
//!   fencing number that grows with every new holder; writes about a gateway carry the
//!   number their writer holds and are refused once it is stale.
//! - **One coordinator at a time**: every round runs in one transaction under a
//!   transaction-level advisory lock, so assignments never race and the lock table
//!   holds one lock whatever the fleet's size.
//! - **Balance**: free leases go to the instance holding the fewest; an instance holding
//!   more than 20 % above the mean is asked to hand the excess over (`handover_to`),
//!   which it does only after closing those connections ([`Store::hand_over`]), so a
//!   gateway is never connected twice.
//! - **Live state** each holder publishes to `gateway_live` ([`Store::publish_live`]) is
//!   what other instances show, announced on [`FLEET_CHANNEL`].

use crate::{Store, StoreError};
use chrono::{DateTime, Utc};
use domain::live::Instance;
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// The channel instances talk on: lease changes, live state, commands for a holder.
pub const FLEET_CHANNEL: &str = "fleet";

/// Taken by every coordination round (a transaction-level advisory lock).
const COORDINATION_LOCK: i64 = 0x666c_6565_745f_6c6b; // "fleet_lk"

/// Share of the mean an instance may hold above it before gateways move away.
const BALANCE_TOLERANCE: f64 = 0.2;

/// A gateway this instance holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub gateway: Uuid,
    pub fence: i64,
    /// Asked to close the gateway and pass the lease on.
    pub handing_over: bool,
}

/// One coordination round of an instance.
#[derive(Debug, Clone)]
pub struct Round<'a> {
    pub instance: Uuid,
    pub address: &'a str,
    pub started_at: DateTime<Utc>,
    /// How long a heartbeat keeps an instance alive.
    pub lease_time: Duration,
    /// Expire instances whose heartbeat is too old. Only an instance that has itself been
    /// reaching the database for a whole lease time may: after an outage everyone gets
    /// that long to renew before anyone is declared dead.
    pub may_expire: bool,
    /// Create leases for new gateways and drop those of deleted ones (after inventory changes).
    pub sync_gateways: bool,
    /// Hand out free leases and even out the load.
    pub balance: bool,
    /// The `leases_version` this instance last read its leases at: they are returned
    /// only if they changed since.
    pub known_version: Option<i64>,
}

/// What a round found.
#[derive(Debug, Clone)]
pub struct RoundOutcome {
    /// Live instances, this one included.
    pub instances: usize,
    pub leases_version: i64,
    /// This instance's leases, when they changed since `known_version`.
    pub leases: Option<Vec<Lease>>,
    /// Another instance's leases changed: it should be told.
    pub others_changed: bool,
}

fn interval(lease_time: Duration) -> String {
    format!("{} milliseconds", lease_time.as_millis())
}

impl Store {
    /// Renews this instance's heartbeat, expires dead instances, keeps one lease per
    /// gateway, hands out free leases and evens out the load, in one transaction.
    pub async fn coordinate(&self, round: &Round<'_>) -> Result<RoundOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(COORDINATION_LOCK)
            .execute(&mut *tx)
            .await?;
        let (mut version, inserted): (i64, bool) = sqlx::query_as(
            "INSERT INTO fleet_instances (id, address, started_at) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET last_heartbeat_at = now(), address = EXCLUDED.address
             RETURNING leases_version, (xmax = 0)",
        )
        .bind(round.instance)
        .bind(round.address)
        .bind(round.started_at)
        .fetch_one(&mut *tx)
        .await?;
        let mut changed: Vec<Uuid> = Vec::new();
        let mut balance = round.balance || inserted;
        if round.may_expire {
            let expired: Vec<Uuid> = sqlx::query_scalar(
                "DELETE FROM fleet_instances WHERE id <> $1 AND last_heartbeat_at < now() - $2::interval RETURNING id",
            )
            .bind(round.instance)
            .bind(interval(round.lease_time))
            .fetch_all(&mut *tx)
            .await?;
            if !expired.is_empty() {
                tracing::warn!(instances = ?expired, "expired instances that stopped renewing their heartbeat");
                // Their leases are free, and handovers to them were cancelled: everyone re-reads.
                let all: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM fleet_instances")
                    .fetch_all(&mut *tx)
                    .await?;
                changed.extend(all);
                balance = true;
            }
        }
        if round.sync_gateways {
            sqlx::query(
                "INSERT INTO gateway_leases (gateway_id, instance_id)
                 SELECT id, NULL FROM gateways WHERE deleted_at IS NULL ON CONFLICT DO NOTHING",
            )
            .execute(&mut *tx)
            .await?;
            let holders: Vec<Option<Uuid>> = sqlx::query_scalar(
                "DELETE FROM gateway_leases l USING gateways g
                 WHERE g.id = l.gateway_id AND g.deleted_at IS NOT NULL RETURNING l.instance_id",
            )
            .fetch_all(&mut *tx)
            .await?;
            changed.extend(holders.into_iter().flatten());
            balance = true;
        }
        if balance {
            changed.extend(assign(&mut tx).await?);
        }
        changed.sort();
        changed.dedup();
        if !changed.is_empty() {
            sqlx::query("UPDATE fleet_instances SET leases_version = leases_version + 1 WHERE id = ANY($1)")
                .bind(&changed)
                .execute(&mut *tx)
                .await?;
        }
        if changed.contains(&round.instance) {
            version += 1;
        }
        let leases = if inserted || round.known_version != Some(version) {
            Some(leases_of(&mut tx, round.instance).await?)
        } else {
            None
        };
        let instances: i64 = sqlx::query_scalar("SELECT count(*) FROM fleet_instances")
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(RoundOutcome {
            instances: instances as usize,
            leases_version: version,
            leases,
            others_changed: changed.iter().any(|id| *id != round.instance),
        })
    }

    /// Passes the leases of `gateways` that `instance` was asked to hand over to their new
    /// holders (with new fencing numbers). Call only once those connections are closed.
    /// Returns how many moved.
    pub async fn hand_over(&self, instance: Uuid, gateways: &[Uuid]) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(COORDINATION_LOCK)
            .execute(&mut *tx)
            .await?;
        let receivers: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE gateway_leases SET instance_id = handover_to, handover_to = NULL,
                 fence = nextval('gateway_lease_fence')
             WHERE gateway_id = ANY($2) AND instance_id = $1 AND handover_to IS NOT NULL
             RETURNING instance_id",
        )
        .bind(instance)
        .bind(gateways)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("UPDATE fleet_instances SET leases_version = leases_version + 1 WHERE id = ANY($1) OR id = $2")
            .bind(&receivers)
            .bind(instance)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(receivers.len() as u64)
    }

    /// A clean stop: this instance's row goes, its leases are free at once, and every
    /// other instance re-reads its own (handovers to this one are cancelled).
    pub async fn leave_fleet(&self, instance: Uuid) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(COORDINATION_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM fleet_instances WHERE id = $1")
            .bind(instance)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE fleet_instances SET leases_version = leases_version + 1")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Live instances (heartbeat within `lease_time`) with how many gateways each holds,
    /// oldest first.
    pub async fn list_instances(&self, lease_time: Duration) -> Result<Vec<Instance>, StoreError> {
        type Row = (Uuid, String, DateTime<Utc>, DateTime<Utc>, i64);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT i.id, i.address, i.started_at, i.last_heartbeat_at,
                    (SELECT count(*) FROM gateway_leases l WHERE l.instance_id = i.id)
             FROM fleet_instances i WHERE i.last_heartbeat_at >= now() - $1::interval
             ORDER BY i.started_at, i.id",
        )
        .bind(interval(lease_time))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, address, started_at, last_heartbeat_at, gateways)| Instance {
                id,
                address,
                started_at,
                last_heartbeat_at,
                gateways: gateways as u64,
            })
            .collect())
    }

    /// Publishes gateways' live records, each only if its writer still holds the lease
    /// under that fencing number. Returns the gateways written.
    pub async fn publish_live(&self, records: &[(Uuid, i64, serde_json::Value)]) -> Result<Vec<Uuid>, StoreError> {
        // The last record of a gateway wins (one statement may not update a row twice).
        let mut latest: HashMap<Uuid, (i64, &serde_json::Value)> = HashMap::new();
        for (id, fence, live) in records {
            latest.insert(*id, (*fence, live));
        }
        if latest.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = latest.keys().copied().collect();
        let fences: Vec<i64> = ids.iter().map(|id| latest[id].0).collect();
        let lives: Vec<sqlx::types::Json<&serde_json::Value>> =
            ids.iter().map(|id| sqlx::types::Json(latest[id].1)).collect();
        let written = sqlx::query_scalar(
            "INSERT INTO gateway_live (gateway_id, live)
             SELECT u.id, u.live FROM UNNEST($1::uuid[], $2::bigint[], $3::jsonb[]) AS u(id, fence, live)
             WHERE EXISTS (SELECT 1 FROM gateway_leases l WHERE l.gateway_id = u.id AND l.fence = u.fence)
             ON CONFLICT (gateway_id) DO UPDATE SET live = EXCLUDED.live, version = gateway_live.version + 1
             RETURNING gateway_id",
        )
        .bind(&ids)
        .bind(&fences)
        .bind(&lives)
        .fetch_all(&self.pool)
        .await?;
        Ok(written)
    }

    /// Published live records (all, or of `gateways`): (gateway, version, record).
    pub async fn live_records(
        &self,
        gateways: Option<&[Uuid]>,
    ) -> Result<Vec<(Uuid, i64, serde_json::Value)>, StoreError> {
        let rows: Vec<(Uuid, i64, sqlx::types::Json<serde_json::Value>)> = sqlx::query_as(
            "SELECT gateway_id, version, live FROM gateway_live WHERE $1::uuid[] IS NULL OR gateway_id = ANY($1)",
        )
        .bind(gateways)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, version, live)| (id, version, live.0))
            .collect())
    }

    /// Sends `payload` to every instance listening on [`FLEET_CHANNEL`] (after any commit:
    /// this statement is its own transaction).
    pub async fn tell_fleet(&self, payload: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(FLEET_CHANNEL)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A connection listening on [`FLEET_CHANNEL`] and the inventory channel (it holds one
    /// of the pool's connections).
    pub async fn listen_to_fleet(&self) -> Result<sqlx::postgres::PgListener, StoreError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen_all([FLEET_CHANNEL, crate::INVENTORY_CHANNEL]).await?;
        Ok(listener)
    }

    /// Gateways whose published state is online (of `gateways`, or all), not under
    /// `not_held_by`: how benchmarks watch a fleet of several processes.
    pub async fn count_online_published(
        &self,
        gateways: Option<&[Uuid]>,
        not_held_by: Option<Uuid>,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM gateway_live WHERE live->>'state' = 'online'
               AND ($1::uuid[] IS NULL OR gateway_id = ANY($1))
               AND ($2::text IS NULL OR live->>'owner' IS DISTINCT FROM $2)",
        )
        .bind(gateways)
        .bind(not_held_by.map(|id| id.to_string()))
        .fetch_one(&self.pool)
        .await?)
    }

    /// Every instance row, oldest first: (id, address, gateways held).
    pub async fn instance_census(&self) -> Result<Vec<(Uuid, String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT i.id, i.address, count(l.gateway_id) FROM fleet_instances i
             LEFT JOIN gateway_leases l ON l.instance_id = i.id GROUP BY i.id ORDER BY i.started_at, i.id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The gateways `instance` holds.
    pub async fn gateways_held_by(&self, instance: Uuid) -> Result<Vec<Uuid>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT gateway_id FROM gateway_leases WHERE instance_id = $1")
                .bind(instance)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Transactions this database has committed or rolled back so far (PostgreSQL's
    /// statistics, updated about once a second): the load a cluster puts on it.
    pub async fn transactions_so_far(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Gateways edited since `since` (deleted ones included), with their login version,
    /// and the database's time now, to pass as the next `since`.
    pub async fn gateways_changed_since(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<(Vec<(domain::Gateway, bool, i64)>, DateTime<Utc>), StoreError> {
        let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()").fetch_one(&self.pool).await?;
        let rows = self.gateways_with_login(since).await?;
        Ok((rows, now))
    }

    /// Ends readings left unfinished on these gateways (whose previous holder went away
    /// while taking them) as `failed`, except `in_flight`. Returns (reading, gateway, serial).
    pub async fn fail_unfinished_readings_of(
        &self,
        gateways: &[Uuid],
        in_flight: &[Uuid],
        reason: &str,
    ) -> Result<Vec<(Uuid, Uuid, u64)>, StoreError> {
        let rows: Vec<(Uuid, Uuid, i64)> = sqlx::query_as(
            "UPDATE readings SET status = 'failed', finished_at = now(), error = $3
             WHERE status IN ('requested', 'started') AND gateway_id = ANY($1) AND NOT (id = ANY($2))
             RETURNING id, gateway_id, serial",
        )
        .bind(gateways)
        .bind(in_flight)
        .bind(reason)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, gateway, serial)| (id, gateway, serial as u64))
            .collect())
    }
}

async fn leases_of(tx: &mut sqlx::PgConnection, instance: Uuid) -> Result<Vec<Lease>, StoreError> {
    let rows: Vec<(Uuid, i64, bool)> =
        sqlx::query_as("SELECT gateway_id, fence, handover_to IS NOT NULL FROM gateway_leases WHERE instance_id = $1")
            .bind(instance)
            .fetch_all(&mut *tx)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(gateway, fence, handing_over)| Lease {
            gateway,
            fence,
            handing_over,
        })
        .collect())
}

/// Hands out free leases to the least loaded instances and asks the most loaded to hand
/// over what they hold above the tolerance. Load counts enabled gateways, a lease being
/// handed over counting for its receiver. Returns the instances whose leases changed.
async fn assign(tx: &mut sqlx::PgConnection) -> Result<Vec<Uuid>, StoreError> {
    let loads: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT i.id, count(g.id) FROM fleet_instances i
         LEFT JOIN gateway_leases l ON COALESCE(l.handover_to, l.instance_id) = i.id
         LEFT JOIN gateways g ON g.id = l.gateway_id AND g.enabled
         GROUP BY i.id ORDER BY i.id",
    )
    .fetch_all(&mut *tx)
    .await?;
    if loads.is_empty() {
        return Ok(Vec::new());
    }
    let free: Vec<(Uuid, bool)> = sqlx::query_as(
        "SELECT l.gateway_id, g.enabled FROM gateway_leases l JOIN gateways g ON g.id = l.gateway_id
         WHERE l.instance_id IS NULL ORDER BY l.gateway_id",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut load: Vec<(Uuid, u64)> = loads.into_iter().map(|(id, n)| (id, n as u64)).collect();
    let plan = plan_assignment(&mut load, &free);
    let mut changed: Vec<Uuid> = plan.grants.iter().map(|(_, to)| *to).collect();
    if !plan.grants.is_empty() {
        let (gateways, holders): (Vec<Uuid>, Vec<Uuid>) = plan.grants.iter().copied().unzip();
        sqlx::query(
            "UPDATE gateway_leases l SET instance_id = a.holder, fence = nextval('gateway_lease_fence')
             FROM UNNEST($1::uuid[], $2::uuid[]) AS a(gateway, holder)
             WHERE l.gateway_id = a.gateway AND l.instance_id IS NULL",
        )
        .bind(&gateways)
        .bind(&holders)
        .execute(&mut *tx)
        .await?;
    }
    for (from, count, to) in plan.moves {
        let moved: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE gateway_leases SET handover_to = $3 WHERE gateway_id IN (
                 SELECT l.gateway_id FROM gateway_leases l JOIN gateways g ON g.id = l.gateway_id
                 WHERE l.instance_id = $1 AND l.handover_to IS NULL AND g.enabled
                 ORDER BY l.gateway_id LIMIT $2)
             RETURNING gateway_id",
        )
        .bind(from)
        .bind(count as i64)
        .bind(to)
        .fetch_all(&mut *tx)
        .await?;
        if !moved.is_empty() {
            changed.push(from);
        }
    }
    Ok(changed)
}

/// What a balancing pass does: leases granted (gateway, holder) and handovers asked
/// (from, how many, to).
#[derive(Debug, Default, PartialEq)]
struct Plan {
    grants: Vec<(Uuid, Uuid)>,
    moves: Vec<(Uuid, u64, Uuid)>,
}

/// `load`: each live instance's load (enabled gateways), updated as planned.
fn plan_assignment(load: &mut [(Uuid, u64)], free: &[(Uuid, bool)]) -> Plan {
    let mut plan = Plan::default();
    // Shared in turn, least loaded first: after a failover every survivor connects its
    // part at once (handshakes are the slow part), rather than the least loaded doing
    // most of them; the balancing below evens out what remains.
    let mut turn: Vec<usize> = (0..load.len()).collect();
    turn.sort_by_key(|&i| (load[i].1, load[i].0));
    for (n, &(gateway, enabled)) in free.iter().enumerate() {
        let taker = &mut load[turn[n % turn.len()]];
        plan.grants.push((gateway, taker.0));
        if enabled {
            taker.1 += 1;
        }
    }
    let total: u64 = load.iter().map(|(_, n)| n).sum();
    let mean = total as f64 / load.len() as f64;
    let cap = ((mean * (1.0 + BALANCE_TOLERANCE)).floor() as u64).max(mean.ceil() as u64);
    let target = mean.ceil() as u64;
    let most_above_cap = |load: &[(Uuid, u64)]| {
        load.iter()
            .copied()
            .filter(|(_, n)| *n > cap)
            .max_by_key(|(id, n)| (*n, *id))
    };
    while let Some(most) = most_above_cap(load) {
        let Some(least) = load
            .iter()
            .copied()
            .filter(|(_, n)| *n < target)
            .min_by_key(|(id, n)| (*n, *id))
        else {
            break;
        };
        let count = (most.1 - cap).min(target - least.1);
        plan.moves.push((most.0, count, least.0));
        for (id, n) in load.iter_mut() {
            if *id == most.0 {
                *n -= count;
            } else if *id == least.0 {
                *n += count;
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u128) -> Vec<Uuid> {
        (1..=n).map(Uuid::from_u128).collect()
    }

    #[test]
    fn free_leases_are_shared_in_turn_least_loaded_first() {
        let i = ids(3);
        let mut load = vec![(i[0], 5), (i[1], 3), (i[2], 4)];
        let free: Vec<(Uuid, bool)> = (100..104).map(|n| (Uuid::from_u128(n), true)).collect();
        let plan = plan_assignment(&mut load, &free);
        let holders: Vec<Uuid> = plan.grants.iter().map(|(_, to)| *to).collect();
        assert_eq!(holders, vec![i[1], i[2], i[0], i[1]]);
        assert!(plan.moves.is_empty());
        assert_eq!(load, vec![(i[0], 6), (i[1], 5), (i[2], 5)]);
    }

    #[test]
    fn a_dead_instances_gateways_are_split_between_the_survivors() {
        let i = ids(2);
        // Survivors holding 2,000 and 4,000 take over 4,000: 2,000 each, not 3,000 and 1,000.
        let mut load = vec![(i[0], 2000), (i[1], 4000)];
        let free: Vec<(Uuid, bool)> = (0..4000).map(|n| (Uuid::from_u128(10_000 + n), true)).collect();
        let plan = plan_assignment(&mut load, &free);
        let to_first = plan.grants.iter().filter(|(_, to)| *to == i[0]).count();
        assert_eq!(to_first, 2000);
        assert!(plan.moves.is_empty(), "6,000 is within 20 % of the mean of 5,000");
    }

    #[test]
    fn a_new_instance_takes_only_what_brings_everyone_within_the_tolerance() {
        let i = ids(3);
        // 3,000 gateways on two instances; a third joins: mean 1,000, cap 1,200.
        let mut load = vec![(i[0], 1500), (i[1], 1500), (i[2], 0)];
        let plan = plan_assignment(&mut load, &[]);
        let moved: u64 = plan.moves.iter().map(|(_, n, _)| n).sum();
        assert_eq!(moved, 600, "{plan:?}");
        assert!(load.iter().all(|(_, n)| *n <= 1200), "{load:?}");
        assert!(plan.moves.iter().all(|(_, _, to)| *to == i[2]));
    }

    #[test]
    fn a_balanced_fleet_moves_nothing() {
        let i = ids(3);
        let mut load = vec![(i[0], 11), (i[1], 10), (i[2], 9)];
        assert_eq!(plan_assignment(&mut load, &[]), Plan::default());
    }

    #[test]
    fn small_fleets_settle_on_the_ceiling_of_the_mean() {
        let i = ids(3);
        // 30 gateways, all on one instance.
        let mut load = vec![(i[0], 30), (i[1], 0), (i[2], 0)];
        plan_assignment(&mut load, &[]);
        assert_eq!(load.iter().map(|(_, n)| n).max(), Some(&12));
        assert_eq!(load.iter().map(|(_, n)| n).sum::<u64>(), 30);
    }
}
