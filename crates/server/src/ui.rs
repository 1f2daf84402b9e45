//! The browser UI: one self-contained page (no CDN), compiled into the binary.
use axum::http::header;
use axum::response::IntoResponse;

const INDEX: &str = include_str!("ui/index.html");
const IMPROVEMENT: &str = include_str!("ui/improve.html");

pub async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
}

/// The improvement page: runs, rounds, plots, the current self with its lineage, and rollback.
pub async fn improvement() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        IMPROVEMENT,
    )
}
