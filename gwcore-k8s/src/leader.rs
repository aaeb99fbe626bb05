//! Leader election on a `coordination.k8s.io/v1` Lease.
//!
//! Every replica watches, computes and serves; only the holder of the Lease
//! writes status. The holder renews the Lease every `retry_period`. Another
//! replica takes the Lease over when it has seen the Lease unchanged for
//! `leaseDurationSeconds` — measured on its own monotonic clock from the
//! moment it saw the last change, so clock skew between nodes does not
//! matter. A holder that cannot renew for `renew_deadline` (shorter than the
//! lease duration) stops writing before anyone else may start. Every update
//! of the Lease carries its `resourceVersion`, so two candidates cannot both
//! win. On shutdown the holder releases the Lease so that a successor need
//! not wait.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// Where and how to elect a leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseOptions {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease. Default `gwcore-controller`.
    pub name: String,
    /// This replica's identity (unique among replicas; the Pod name in a
    /// cluster).
    pub identity: String,
    /// How long a Lease is valid without renewal. Default 15 s.
    pub lease_duration: Duration,
    /// How long the holder keeps writing while renewals fail. Default 10 s;
    /// must be shorter than `lease_duration`.
    pub renew_deadline: Duration,
    /// How often the Lease is renewed or tried. Default 2 s.
    pub retry_period: Duration,
}

impl LeaseOptions {
    /// Options with the defaults above.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> LeaseOptions {
        LeaseOptions {
            namespace: namespace.into(),
            name: "gwcore-controller".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What to change when the Lease cannot be read or written because of how
/// it is configured (its namespace does not exist, or the account may not
/// touch Leases there), naming the `gwcore` flags that fix it; `None` for
/// other failures (the API server is unreachable: retrying is all there
/// is to do).
pub(crate) fn lease_advice(err: &kube::Error, opts: &LeaseOptions) -> Option<String> {
    let kube::Error::Api(status) = err else {
        return None;
    };
    let ns = &opts.namespace;
    let lease = format!("Lease {ns}/{}", opts.name);
    let otherwise = "or --no-leader-election to write status without a Lease \
                     (a single replica only)";
    if status.is_not_found() {
        Some(format!(
            "the {lease} cannot be created: namespace {ns} does not exist; create it, \
             or pass --lease-namespace NS (LeaseOptions::namespace) naming one that \
             exists, {otherwise}"
        ))
    } else if status.is_forbidden() {
        Some(format!(
            "the {lease} may not be read or written by this account: grant it get, \
             create and update on leases.coordination.k8s.io in namespace {ns} (as \
             deploy/rbac.yaml does), or pass --lease-namespace NS (LeaseOptions::namespace) \
             naming a namespace where it may, {otherwise}"
        ))
    } else {
        None
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// What one look at the Lease found.
struct Elector {
    api: Api<Lease>,
    opts: LeaseOptions,
    /// The Lease's `resourceVersion` when last seen changed, and when.
    observed: Option<(String, Instant)>,
}

impl Elector {
    /// Tries to take or renew the Lease; `Ok(true)` when we hold it.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let duration_secs =
            i32::try_from(self.opts.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX);
        let pp = PostParams::default();
        let Some(mut lease) = self.api.get_opt(&self.opts.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.opts.name.clone()),
                    namespace: Some(self.opts.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.opts.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&pp, &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => Ok(false),
                Err(e) => Err(e),
            };
        };
        let rv = lease.metadata.resource_version.clone().unwrap_or_default();
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        if holder == self.opts.identity {
            spec.renew_time = Some(now());
            spec.lease_duration_seconds = Some(duration_secs);
        } else {
            if self.observed.as_ref().is_none_or(|(seen, _)| *seen != rv) {
                self.observed = Some((rv, Instant::now()));
            }
            let valid_for = Duration::from_secs(
                spec.lease_duration_seconds.unwrap_or(duration_secs).max(0) as u64,
            );
            let unchanged_for = self
                .observed
                .as_ref()
                .map_or(Duration::ZERO, |(_, at)| at.elapsed());
            if !holder.is_empty() && unchanged_for < valid_for {
                return Ok(false);
            }
            spec.holder_identity = Some(self.opts.identity.clone());
            spec.acquire_time = Some(now());
            spec.renew_time = Some(now());
            spec.lease_duration_seconds = Some(duration_secs);
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            tracing::info!(lease = %self.opts.name, previous = %holder, "taking over the lease");
        }
        match self.api.replace(&self.opts.name, &pp, &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up if we hold it.
    async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.opts.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.opts.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now());
        self.api
            .replace(&self.opts.name, &PostParams::default(), &lease)
            .await?;
        Ok(())
    }
}

/// Runs the election until `stop` turns true, publishing whether we lead on
/// `leader`; then releases the Lease if held.
pub(crate) async fn run(
    client: kube::Client,
    opts: LeaseOptions,
    leader: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut e = Elector {
        api: Api::namespaced(client, &opts.namespace),
        opts,
        observed: None,
    };
    let mut last_renewal: Option<Instant> = None;
    let set = |v: bool| {
        metrics.set_leader(v);
        leader.send_if_modified(|cur| {
            let changed = *cur != v;
            *cur = v;
            changed
        });
    };
    loop {
        // A request that hangs counts as a failure once the renew deadline
        // has passed, so a leader cut off from the API server steps down in
        // time.
        let attempt = tokio::time::timeout(e.opts.renew_deadline, e.try_acquire_or_renew()).await;
        let attempt = attempt.unwrap_or_else(|_| {
            Err(kube::Error::Service(
                std::io::Error::new(std::io::ErrorKind::TimedOut, "lease request timed out").into(),
            ))
        });
        match attempt {
            Ok(true) => {
                if !*leader.borrow() {
                    tracing::info!(lease = %e.opts.name, identity = %e.opts.identity, "became the leader: writing status");
                }
                last_renewal = Some(Instant::now());
                set(true);
            }
            Ok(false) => {
                if *leader.borrow() {
                    tracing::info!(lease = %e.opts.name, "lost the lease: no longer writing status");
                }
                last_renewal = None;
                set(false);
            }
            Err(err) => {
                match lease_advice(&err, &e.opts) {
                    Some(advice) => {
                        tracing::error!(lease = %e.opts.name, error = %err, "{advice}; retrying");
                    }
                    None => {
                        tracing::warn!(lease = %e.opts.name, error = %err, "cannot reach the lease");
                    }
                }
                if last_renewal.is_none_or(|t| t.elapsed() >= e.opts.renew_deadline)
                    && *leader.borrow()
                {
                    tracing::warn!(lease = %e.opts.name, "renew deadline passed: no longer writing status");
                    set(false);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(e.opts.retry_period) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    if *leader.borrow() {
        set(false);
        if let Err(err) = e.release().await {
            tracing::warn!(lease = %e.opts.name, error = %err, "cannot release the lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api_error(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(Status::failure("refused", reason).with_code(code).boxed())
    }

    #[test]
    fn a_missing_namespace_names_the_flag_that_moves_the_lease() {
        let opts = LeaseOptions::new("nowhere", "me");
        let advice = lease_advice(&api_error(404, "NotFound"), &opts).expect("advice");
        assert!(
            advice.contains("namespace nowhere does not exist"),
            "{advice}"
        );
        assert!(advice.contains("--lease-namespace"), "{advice}");
        assert!(advice.contains("--no-leader-election"), "{advice}");
    }

    #[test]
    fn a_forbidden_lease_names_the_permission_and_the_flag() {
        let opts = LeaseOptions::new("locked", "me");
        let advice = lease_advice(&api_error(403, "Forbidden"), &opts).expect("advice");
        assert!(
            advice.contains("leases.coordination.k8s.io in namespace locked"),
            "{advice}"
        );
        assert!(advice.contains("--lease-namespace"), "{advice}");
    }

    #[test]
    fn an_unreachable_server_gets_no_advice() {
        let opts = LeaseOptions::new("ns", "me");
        assert_eq!(lease_advice(&api_error(500, "InternalError"), &opts), None);
        let io = kube::Error::Service(std::io::Error::other("connection refused").into());
        assert_eq!(lease_advice(&io, &opts), None);
    }
}
