//! The query API's lag figures count, for each projection, exactly the aggregate types the
//! projector reads for it: the two lists live in two crates, so this test keeps them equal.

use std::collections::BTreeMap;

#[test]
fn the_query_api_knows_what_every_projection_reads() {
    let projector: BTreeMap<&str, Vec<&str>> = projector::projections()
        .iter()
        .map(|projection| (projection.name(), projection.aggregate_types().to_vec()))
        .collect();
    let query_api: BTreeMap<&str, Vec<&str>> = query_api::routes::projections::PROJECTION_SOURCES
        .iter()
        .map(|(name, types)| (*name, types.to_vec()))
        .collect();
    assert_eq!(query_api, projector);
}
