//! `docs/api.md` lists every operation with its REST route and gRPC
//! method; this holds that table to the REST router's route list and to
//! the gRPC services of `herald.api.v1` (from the descriptor set).

use std::collections::BTreeSet;

use herald_control_plane::api::rest;
use prost::Message as _;

const INFRASTRUCTURE: &str = "HTTP infrastructure";

/// One row: (REST "METHOD /path" or None, gRPC "Service/Method" or None).
type Row = (Option<String>, Option<String>);

fn table() -> Vec<Row> {
    let doc = include_str!("../../docs/api.md");
    let section = doc.split("## Every operation, REST and gRPC").nth(1).expect("the operations section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let code = |cell: &str| cell.split('`').nth(1).map(str::to_owned);
    section
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| operation "))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 3, "a row has three cells: {line}");
            let grpc = if cells[2].starts_with(INFRASTRUCTURE) { None } else { code(cells[2]) };
            assert!(grpc.is_some() || cells[2].starts_with(INFRASTRUCTURE), "gRPC cell of {line}");
            (code(cells[1]), grpc)
        })
        .collect()
}

fn grpc_methods() -> BTreeSet<String> {
    let set = prost_types::FileDescriptorSet::decode(herald_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    set.file
        .iter()
        .filter(|f| f.package() == "herald.api.v1")
        .flat_map(|f| &f.service)
        .flat_map(|s| s.method.iter().map(move |m| format!("{}/{}", s.name(), m.name())))
        .collect()
}

#[test]
fn the_docs_table_is_the_router_and_the_grpc_services() {
    let rows = table();
    let documented: BTreeSet<Row> = rows.iter().cloned().collect();
    assert_eq!(documented.len(), rows.len(), "a row is listed twice");
    let routed: BTreeSet<Row> =
        rest::routes().iter().map(|r| (Some(format!("{} {}", r.method, r.path)), r.grpc.map(str::to_owned))).collect();
    let documented_rest: BTreeSet<Row> = documented.iter().filter(|(rest, _)| rest.is_some()).cloned().collect();
    assert_eq!(documented_rest, routed, "docs/api.md (left) and the REST routes (right) differ");

    let documented_grpc: BTreeSet<String> = documented.iter().filter_map(|(_, g)| g.clone()).collect();
    assert_eq!(documented_grpc, grpc_methods(), "docs/api.md (left) and api.proto (right) differ");
}

#[test]
fn every_rest_operation_has_a_grpc_method_unless_it_is_infrastructure() {
    let infrastructure = ["/healthz", "/readyz", "/metrics", "/.well-known/jwks.json", "/v1/openapi.json"];
    for r in rest::routes() {
        assert_eq!(r.grpc.is_none(), infrastructure.contains(&r.path), "{} {}", r.method, r.path);
    }
}
