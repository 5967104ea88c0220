//! gRPC `NamespaceService`: channel namespaces (admin to change, the
//! app's keys too to read).

use herald_proto::api::namespace_service_server::NamespaceService;
use herald_proto::api::{self as pb};
use herald_proto::bus;
use tonic::{Request, Response as GrpcResponse, Status};

use super::Grpc;
use crate::store::Namespace;

fn options_from_pb(o: Option<pb::NamespaceOptions>) -> bus::NamespaceOptions {
    let o = o.unwrap_or_default();
    bus::NamespaceOptions {
        presence: o.presence,
        join_leave: o.join_leave,
        client_publish: o.client_publish.unwrap_or(true),
        history_size: o.history_size,
        history_ttl_ms: o.history_ttl_ms,
    }
}

fn namespace_to_pb(ns: &Namespace) -> pb::Namespace {
    let o = &ns.options;
    pb::Namespace {
        name: ns.name.to_string(),
        options: Some(pb::NamespaceOptions {
            presence: o.presence,
            join_leave: o.join_leave,
            client_publish: Some(o.client_publish),
            history_size: o.history_size,
            history_ttl_ms: o.history_ttl_ms,
        }),
        created_at_ms: ns.created_at_ms,
        updated_at_ms: ns.updated_at_ms,
    }
}

#[tonic::async_trait]
impl NamespaceService for Grpc {
    async fn put_namespace(
        &self,
        req: Request<pb::PutNamespaceRequest>,
    ) -> Result<GrpcResponse<pb::PutNamespaceResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        let (ns, created) = self.core.put_namespace(&who, &r.app_id, &r.name, options_from_pb(r.options)).await?;
        Ok(GrpcResponse::new(pb::PutNamespaceResponse { namespace: Some(namespace_to_pb(&ns)), created }))
    }

    async fn get_namespace(
        &self,
        req: Request<pb::GetNamespaceRequest>,
    ) -> Result<GrpcResponse<pb::Namespace>, Status> {
        let who = self.caller(&req).await?;
        let r = req.get_ref();
        let ns = self.core.get_namespace(&who, &r.app_id, &r.name).await?;
        Ok(GrpcResponse::new(namespace_to_pb(&ns)))
    }

    async fn list_namespaces(
        &self,
        req: Request<pb::ListNamespacesRequest>,
    ) -> Result<GrpcResponse<pb::ListNamespacesResponse>, Status> {
        let who = self.caller(&req).await?;
        let list = self.core.list_namespaces(&who, &req.get_ref().app_id).await?;
        Ok(GrpcResponse::new(pb::ListNamespacesResponse { namespaces: list.iter().map(namespace_to_pb).collect() }))
    }

    async fn delete_namespace(
        &self,
        req: Request<pb::DeleteNamespaceRequest>,
    ) -> Result<GrpcResponse<pb::DeleteNamespaceResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.get_ref();
        self.core.delete_namespace(&who, &r.app_id, &r.name).await?;
        Ok(GrpcResponse::new(pb::DeleteNamespaceResponse {}))
    }
}
