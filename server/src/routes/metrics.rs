use actix_web::{get, web, HttpResponse};

use crate::startup::AppState;

/// Prometheus text format.
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.metrics.live_sockets.set(state.limits.open_sockets() as i64);
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.render())
}
