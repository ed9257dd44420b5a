//! What the suites share: the router on an embedded backend in a temporary directory.

use backend::embedded::Embedded;
use command_api::{App, router};

/// The whole API on an embedded backend in `dir`; keep the `Embedded` alive meanwhile.
pub fn app(dir: &std::path::Path) -> (axum::Router, Embedded) {
    let routes = events_schema::route_table();
    let e = Embedded::open(dir, routes).expect("opens");
    let app = App::new(&e.ports(), routes);
    (router(app), e)
}
