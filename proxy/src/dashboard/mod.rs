//! The dashboard at `http://portd.localhost:P/` and `http://localhost:P/`
//! (a placeholder until the dashboard lands: it answers 501).

use crate::{Body, State};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::sync::Arc;

/// Answers a request for one of the dashboard's host names.
pub async fn handle(req: Request<Incoming>, state: Arc<State>) -> Response<Body> {
    let _ = (req, &state);
    let mut r = Response::new(crate::full("the dashboard is not built yet\n"));
    *r.status_mut() = StatusCode::NOT_IMPLEMENTED;
    r
}
