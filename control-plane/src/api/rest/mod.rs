//! The REST API (axum): the route table, the extractors that turn every
//! rejection into an [`ApiError`], and one module per resource; the
//! OpenAPI document is generated from the handlers' annotations
//! (`GET /v1/openapi.json`).
//!
//! Every request body is read whole after the caller is authenticated,
//! bounded by `max_body_size` (`413 too_large` past it, from the
//! `Content-Length` alone when it says so), `max_body_reads_per_key`
//! (`429`), `min_body_rate_per_sec` and `body_read_timeout` (`408
//! request_timeout`), and parsed strictly: trailing data, duplicate keys, nesting past
//! `max_json_depth`, unknown fields, wrong types and malformed JSON answer
//! `400 bad_request` naming the field. Handlers only translate: the checks
//! live in [`crate::services`].
//!
//! [`routes`] is the one list of operations, each with its gRPC
//! counterpart; [`router`] is built from it, and a test holds
//! `docs/api.md` and `api.proto` to it.

pub mod apps;
pub mod channels;
pub mod console_links;
pub mod debug;
pub mod keys;
pub mod namespaces;
pub mod openapi;
pub mod ops;
pub mod presence;
pub mod publish;
pub mod signing_keys;
pub mod stats;
pub mod tokens;
pub mod users;
pub mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::api::strict_json;
use crate::auth::Principal;
pub(crate) use crate::body::BodyError;
use crate::body::BodyOwner;
use crate::core::Core;
use crate::error::ApiError;

pub use openapi::ApiDoc;

type Shared = State<Arc<Core>>;

const TAG_ADMIN: &str = "admin";
const TAG_APP: &str = "app";
const TAG_OPS: &str = "operations";

/// One REST operation: its method and path, and the gRPC method that does
/// the same (`Service/Method` in `herald.api.v1`), or `None` for HTTP
/// infrastructure (probes, metrics, the JWKS, the OpenAPI document).
pub struct Route {
    /// The HTTP method.
    pub method: Method,
    /// The path, with `{parameters}`.
    pub path: &'static str,
    /// The gRPC counterpart.
    pub grpc: Option<&'static str>,
    handler: MethodRouter<Arc<Core>>,
}

fn route(method: Method, path: &'static str, grpc: Option<&'static str>, handler: MethodRouter<Arc<Core>>) -> Route {
    Route { method, path, grpc, handler }
}

/// Every REST operation, in the order `docs/api.md` lists them.
#[must_use]
pub fn routes() -> Vec<Route> {
    use Method as M;
    vec![
        route(M::POST, "/v1/apps", Some("AdminService/CreateApp"), post(apps::create_app)),
        route(M::GET, "/v1/apps", Some("AdminService/ListApps"), get(apps::list_apps)),
        route(M::GET, "/v1/apps/{app_id}", Some("AdminService/GetApp"), get(apps::get_app)),
        route(M::PATCH, "/v1/apps/{app_id}", Some("AdminService/UpdateApp"), patch(apps::update_app)),
        route(M::DELETE, "/v1/apps/{app_id}", Some("AdminService/DeleteApp"), delete(apps::delete_app)),
        route(M::POST, "/v1/apps/{app_id}/keys", Some("AdminService/CreateKey"), post(keys::create_key)),
        route(M::GET, "/v1/apps/{app_id}/keys", Some("AdminService/ListKeys"), get(keys::list_keys)),
        route(M::DELETE, "/v1/apps/{app_id}/keys/{key_id}", Some("AdminService/RevokeKey"), delete(keys::revoke_key)),
        route(M::POST, "/v1/signing-keys/rotate", Some("AdminService/RotateSigningKeys"), post(signing_keys::rotate)),
        route(M::POST, "/v1/console/links", Some("AdminService/CreateConsoleLink"), post(console_links::create_link)),
        route(M::POST, "/v1/apps/{app_id}/tokens", Some("TokenService/MintToken"), post(tokens::mint_token)),
        route(
            M::POST,
            "/v1/apps/{app_id}/channels/{channel}/messages",
            Some("PublishService/Publish"),
            post(publish::publish),
        ),
        route(M::POST, "/v1/apps/{app_id}/messages", Some("PublishService/PublishBatch"), post(publish::publish_batch)),
        route(
            M::POST,
            "/v1/apps/{app_id}/users/{user_id}/messages",
            Some("UserService/PublishToUser"),
            post(users::publish_to_user),
        ),
        route(
            M::POST,
            "/v1/apps/{app_id}/users/{user_id}/terminate",
            Some("UserService/TerminateUser"),
            post(users::terminate_user),
        ),
        route(
            M::PUT,
            "/v1/apps/{app_id}/namespaces/{name}",
            Some("NamespaceService/PutNamespace"),
            put(namespaces::put_namespace),
        ),
        route(
            M::GET,
            "/v1/apps/{app_id}/namespaces/{name}",
            Some("NamespaceService/GetNamespace"),
            get(namespaces::get_namespace),
        ),
        route(
            M::GET,
            "/v1/apps/{app_id}/namespaces",
            Some("NamespaceService/ListNamespaces"),
            get(namespaces::list_namespaces),
        ),
        route(
            M::DELETE,
            "/v1/apps/{app_id}/namespaces/{name}",
            Some("NamespaceService/DeleteNamespace"),
            delete(namespaces::delete_namespace),
        ),
        route(
            M::POST,
            "/v1/apps/{app_id}/webhooks",
            Some("WebhookService/CreateWebhook"),
            post(webhooks::create_webhook),
        ),
        route(M::GET, "/v1/apps/{app_id}/webhooks", Some("WebhookService/ListWebhooks"), get(webhooks::list_webhooks)),
        route(
            M::GET,
            "/v1/apps/{app_id}/webhooks/{webhook_id}",
            Some("WebhookService/GetWebhook"),
            get(webhooks::get_webhook),
        ),
        route(
            M::PATCH,
            "/v1/apps/{app_id}/webhooks/{webhook_id}",
            Some("WebhookService/UpdateWebhook"),
            patch(webhooks::update_webhook),
        ),
        route(
            M::DELETE,
            "/v1/apps/{app_id}/webhooks/{webhook_id}",
            Some("WebhookService/DeleteWebhook"),
            delete(webhooks::delete_webhook),
        ),
        route(
            M::POST,
            "/v1/apps/{app_id}/webhooks/{webhook_id}/rotate-secret",
            Some("WebhookService/RotateWebhookSecret"),
            post(webhooks::rotate_secret),
        ),
        route(
            M::POST,
            "/v1/apps/{app_id}/webhooks/{webhook_id}/test",
            Some("WebhookService/TestWebhook"),
            post(webhooks::test_webhook),
        ),
        route(
            M::GET,
            "/v1/apps/{app_id}/webhooks/{webhook_id}/deliveries",
            Some("WebhookService/ListWebhookDeliveries"),
            get(webhooks::list_deliveries),
        ),
        route(M::GET, "/v1/apps/{app_id}/channels", Some("ChannelService/ListChannels"), get(channels::channels)),
        route(
            M::GET,
            "/v1/apps/{app_id}/channels/{channel}/history",
            Some("ChannelService/GetHistory"),
            get(channels::history),
        ),
        route(
            M::GET,
            "/v1/apps/{app_id}/channels/{channel}/presence",
            Some("PresenceService/GetPresence"),
            get(presence::presence),
        ),
        route(M::GET, "/v1/apps/{app_id}/stats", Some("StatsService/GetAppStats"), get(stats::stats)),
        route(
            M::GET,
            "/v1/apps/{app_id}/debug/events",
            Some("DebugService/WatchDebugEvents"),
            get(debug::debug_events),
        ),
        route(M::GET, "/healthz", None, get(ops::healthz)),
        route(M::GET, "/readyz", None, get(ops::readyz)),
        route(M::GET, "/metrics", None, get(ops::metrics)),
        route(M::GET, "/.well-known/jwks.json", None, get(ops::jwks)),
        route(M::GET, "/v1/openapi.json", None, get(openapi::openapi)),
    ]
}

/// The REST routes, built from [`routes`].
pub fn router(core: Arc<Core>) -> Router {
    let limit = core.config.max_body_size.as_usize();
    routes()
        .into_iter()
        .fold(Router::new(), |router, r| router.route(r.path, r.handler))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(core)
}

async fn not_found(req: Request) -> Response {
    if crate::api::grpc::is_grpc(req.headers()) {
        return crate::api::grpc::unimplemented();
    }
    ApiError::not_found(format!("no route {} {}", req.method(), req.uri().path())).into_response()
}

async fn method_not_allowed(req: Request) -> Response {
    let mut response = ApiError::bad_request(format!("method {} is not allowed on {}", req.method(), req.uri().path()))
        .into_response();
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}

/// Unix seconds of Unix milliseconds.
fn secs(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

// ----- extractors ---------------------------------------------------------------

/// The authenticated caller (`Authorization: Bearer …`).
pub struct Caller(pub Principal);

impl FromRequestParts<Arc<Core>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, core: &Arc<Core>) -> Result<Self, ApiError> {
        let value = parts.headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
        let principal = core.auth.authenticate_raw(value).await?;
        let owner = match &principal {
            Principal::Admin => "admin".to_owned(),
            Principal::Key(key) => format!("key:{}", key.id),
        };
        parts.extensions.insert(BodyOwner(owner));
        Ok(Self(principal))
    }
}

/// A strict JSON body: read as [`RawBody`], then checked by
/// [`strict_json`] and deserialized naming the field that is wrong.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<Core>> for Body<T> {
    type Rejection = Response;

    async fn from_request(req: Request, core: &Arc<Core>) -> Result<Self, Response> {
        let RawBody(bytes) = RawBody::from_request(req, core).await?;
        parse_json(&bytes, core.config.max_json_depth).map(Self).map_err(IntoResponse::into_response)
    }
}

/// The request body, read by [`crate::body::read`]: a `Content-Length`
/// over `max_body_size` is refused (413) before any byte of the body is
/// read, a body that grows past it too; a caller with
/// `max_body_reads_per_key` bodies arriving already is answered 429; a
/// body slower than `min_body_rate_per_sec` or not whole within
/// `body_read_timeout` is answered `408 request_timeout` and the
/// connection closed.
pub struct RawBody(pub Bytes);

impl FromRequest<Arc<Core>> for RawBody {
    type Rejection = Response;

    async fn from_request(req: Request, core: &Arc<Core>) -> Result<Self, Response> {
        read_body(req, core).await.map(Self).map_err(|e| {
            // The rest of a body too slow is never read: the connection
            // cannot serve another request.
            let close = matches!(e, BodyError::Slow(_));
            let mut response = e.into_api().into_response();
            if close {
                response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
            }
            response
        })
    }
}

/// Reads the body of `req` within the config's limits (see [`RawBody`]).
pub(crate) async fn read_body(req: Request, core: &Core) -> Result<Bytes, BodyError> {
    crate::body::read(req, &core.config, &core.connections).await
}

/// Parses a JSON body strictly: [`strict_json::check`] (one value, no
/// duplicate keys, at most `max_depth` levels), then into `T` naming the
/// field with a wrong type or an unknown name.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8], max_depth: usize) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the request body is empty; send a JSON object"));
    }
    strict_json::check(bytes, max_depth).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    // Tracking the path costs as much as the parse: a body that parses is
    // parsed without it, and one that does not is parsed again to name
    // where it is wrong.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            ApiError::bad_request(format!("invalid JSON body: {inner}"))
        } else {
            ApiError::bad_request(format!("invalid JSON body at `{path}`: {inner}"))
        }
    })?;
    Ok(value)
}

/// Path parameters, with errors in Herald's shape.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| Self(v))
            .map_err(|e| ApiError::bad_request(format!("invalid path: {}", e.body_text())))
    }
}

/// Query parameters, strict, with errors in Herald's shape.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))
    }
}
