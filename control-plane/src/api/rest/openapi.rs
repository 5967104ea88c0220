//! The OpenAPI document of the REST API, generated from the handlers'
//! annotations, served at `GET /v1/openapi.json`.

use axum::Json;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

use super::{
    TAG_OPS, apps, channels, console_links, debug, keys, namespaces, ops, presence, publish, signing_keys, stats,
    tokens, users, webhooks,
};

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = TAG_OPS, responses((status = 200, description = "OpenAPI 3.1 document")))]
pub(super) async fn openapi() -> Response {
    Json(ApiDoc::openapi()).into_response()
}

/// The OpenAPI document of the REST API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Herald control plane", description = "Apps, API keys, tokens, namespaces, webhook endpoints, publishing, events to users, history and presence. Errors are `{\"error\": {\"code\", \"message\"}}`; `code` is a Herald error code name."),
    paths(ops::healthz, ops::readyz, ops::metrics, ops::jwks, openapi, apps::create_app, apps::list_apps,
          apps::get_app, apps::update_app, apps::delete_app, keys::create_key, keys::list_keys, keys::revoke_key,
          signing_keys::rotate, console_links::create_link, tokens::mint_token, publish::publish, publish::publish_batch,
          users::publish_to_user, users::terminate_user,
          namespaces::put_namespace, namespaces::list_namespaces, namespaces::get_namespace,
          namespaces::delete_namespace, webhooks::create_webhook, webhooks::list_webhooks, webhooks::get_webhook,
          webhooks::update_webhook, webhooks::delete_webhook, webhooks::rotate_secret, webhooks::test_webhook,
          webhooks::list_deliveries,
          channels::history, presence::presence, channels::channels, stats::stats, debug::debug_events),
    modifiers(&Security),
    tags((name = "admin", description = "Operators, with the admin token"),
         (name = "app", description = "Customers' backends, with an API key of the app"),
         (name = "operations", description = "Health, metrics, keys for edges")),
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("admin", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        components.add_security_scheme("api_key", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_lists_every_route() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("json");
        for path in [
            "/v1/apps",
            "/v1/apps/{app_id}",
            "/v1/apps/{app_id}/keys",
            "/v1/apps/{app_id}/keys/{key_id}",
            "/v1/apps/{app_id}/tokens",
            "/v1/apps/{app_id}/stats",
            "/v1/apps/{app_id}/channels/{channel}/messages",
            "/v1/apps/{app_id}/messages",
            "/v1/apps/{app_id}/users/{user_id}/messages",
            "/v1/apps/{app_id}/users/{user_id}/terminate",
            "/v1/apps/{app_id}/namespaces",
            "/v1/apps/{app_id}/namespaces/{name}",
            "/v1/apps/{app_id}/webhooks",
            "/v1/apps/{app_id}/webhooks/{webhook_id}",
            "/v1/apps/{app_id}/webhooks/{webhook_id}/rotate-secret",
            "/v1/apps/{app_id}/channels",
            "/v1/apps/{app_id}/channels/{channel}/history",
            "/v1/apps/{app_id}/channels/{channel}/presence",
            "/v1/apps/{app_id}/debug/events",
            "/v1/signing-keys/rotate",
            "/.well-known/jwks.json",
            "/healthz",
            "/readyz",
            "/metrics",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing from the OpenAPI document");
        }
    }
}
