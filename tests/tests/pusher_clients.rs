//! Pusher Channels compatibility, end to end: the official, unmodified
//! Pusher libraries — pusher-js in Node and in headless Chromium, the
//! `pusher` server library for Node and for Python — against `herald dev`'s
//! Pusher endpoint. One test per script of `tests/pusher/`, each on a
//! `herald dev` of its own; the scripts hold the checks (see each one's
//! header), this file only runs them. `bash tests/pusher/install.sh`
//! installs the libraries; without it these tests fail saying so.

use std::time::Duration;

use anyhow::Result;
use herald_tests::pusher::{Script, run};

/// A script's own deadline is 60 s (90 s in the browser); this one is the
/// backstop should the script hang regardless.
const DEADLINE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_channel_delivers_what_the_server_library_triggers() -> Result<()> {
    run(Script::Node("public_channel"), DEADLINE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_channel_takes_the_server_librarys_signature_and_refuses_a_forged_one() -> Result<()> {
    run(Script::Node("private_channel"), DEADLINE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_counts_users_not_connections() -> Result<()> {
    run(Script::Node("presence_channel"), DEADLINE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_with_a_socket_id_skips_that_subscriber() -> Result<()> {
    run(Script::Node("exclusion"), DEADLINE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_and_multi_channel_triggers_deliver_once_per_channel() -> Result<()> {
    run(Script::Node("batch_triggers"), DEADLINE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_queries_answer_occupancy_and_users() -> Result<()> {
    run(Script::Node("channel_queries"), DEADLINE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_events_reach_the_others_and_not_the_sender() -> Result<()> {
    run(Script::Node("client_events"), DEADLINE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_js_resubscribes_after_a_reconnect() -> Result<()> {
    run(Script::Node("reconnect"), DEADLINE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_in_users_get_their_events_and_can_be_terminated() -> Result<()> {
    run(Script::Node("user_signin"), DEADLINE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_refuses_a_wrong_signature_with_401() -> Result<()> {
    run(Script::Node("bad_signature"), DEADLINE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_4xxx_and_other_clients_carry_on() -> Result<()> {
    run(Script::Node("raw_frames"), DEADLINE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_js_in_headless_chromium_receives_on_a_private_channel() -> Result<()> {
    run(Script::Node("browser"), DEADLINE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_server_library_drives_the_http_api() -> Result<()> {
    run(Script::Python("http_api"), DEADLINE).await
}
