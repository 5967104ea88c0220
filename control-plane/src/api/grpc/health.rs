//! The standard gRPC health service (`grpc.health.v1.Health`), answering
//! from the same state as `/readyz`: `SERVING` for `""` and every
//! `herald.api.v1` service while the control plane is ready, `NOT_SERVING`
//! while it is not (database or bus unreachable) or draining. `Watch`
//! sends the status at once and then each change, looking every second.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse, health_server};

use crate::core::Core;

/// The health service's full name.
pub const SERVICE: &str = health_server::SERVICE_NAME;

/// How often `Watch` looks at readiness.
const WATCH_PERIOD: Duration = Duration::from_secs(1);

/// The health service over the shared core.
pub struct Health {
    core: Arc<Core>,
}

impl Health {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }
}

/// Whether `service` is one health answers for.
fn known(service: &str) -> bool {
    service.is_empty() || super::SERVICES.contains(&service)
}

async fn status(core: &Core) -> ServingStatus {
    if core.readiness().await.is_ok() { ServingStatus::Serving } else { ServingStatus::NotServing }
}

fn answer(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse { status: status as i32 }
}

#[tonic::async_trait]
impl health_server::Health for Health {
    async fn check(&self, req: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        if !known(&req.get_ref().service) {
            return Err(Status::not_found("no such service"));
        }
        Ok(Response::new(answer(status(&self.core).await)))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

    async fn watch(&self, req: Request<HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let core = Arc::downgrade(&self.core);
        let known = known(&req.get_ref().service);
        let stream = futures_util::stream::unfold(None, move |last: Option<ServingStatus>| {
            let core = core.clone();
            async move {
                if !known {
                    // Unknown now and forever: say so once, then stay open.
                    if last.is_some() {
                        std::future::pending::<()>().await;
                    }
                    let unknown = ServingStatus::ServiceUnknown;
                    return Some((Ok(answer(unknown)), Some(unknown)));
                }
                let mut first = last.is_none();
                loop {
                    if !first {
                        tokio::time::sleep(WATCH_PERIOD).await;
                    }
                    first = false;
                    let now = status(&*core.upgrade()?).await;
                    if Some(now) != last {
                        return Some((Ok(answer(now)), Some(now)));
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
