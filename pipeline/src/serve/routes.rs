//! The HTTP surface: which path answers what, and the headers every answer carries.
//!
//! ```text
//! GET  /                         the page (assets/index.html); /assets/<file>: its script and style
//! GET  /api/info                 the dataset: tables, counts, preset queries, limits
//! POST /api/query                {sql, offset, limit} -> one page of a read-only query
//! POST /api/cards                {ids} -> a card per clip id
//! GET  /api/clip/<id>            the clip page
//! GET  /api/stats                the kelp stats sections; /api/stats/<key>.svg their plots
//! GET  /media/<id>/<file>        thumbnail.jpg, animation.webp (previews), clip.mp4 (media)
//! GET  /api/object?uri=<uri>     an object inside the dataset (a preview_uri column, say)
//! ```
//!
//! Requests whose Host is not this loopback server are refused when it listens on loopback (a
//! web page elsewhere cannot reach it by DNS rebinding), and every response forbids the page to
//! load anything from outside this server (Content-Security-Policy).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;

use super::{assets, blobs, cards, clip, paths, query, stats, AppState, ServeError};

type Shared = State<Arc<AppState>>;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/assets/{file}", get(asset))
        .route("/api/info", get(info))
        .route("/api/query", post(run_query))
        .route("/api/cards", post(card_list))
        .route("/api/clip/{id}", get(clip_page))
        .route("/api/stats", get(stats_sections))
        .route("/api/stats/{file}", get(stats_plot))
        .route("/media/{id}/{file}", get(media))
        .route("/api/object", get(object))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; media-src 'self'; \
                   style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// Refuses foreign Host headers on a loopback server; adds the security headers.
async fn guard(State(state): Shared, req: Request, next: Next) -> Response {
    if !state.allowed_hosts.is_empty() {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !state.allowed_hosts.iter().any(|a| a == host) {
            return (
                StatusCode::FORBIDDEN,
                format!(
                    "kelp serve answers only requests addressed to it ({}), not to {host:?}",
                    state.allowed_hosts.join(", ")
                ),
            )
                .into_response();
        }
    }
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

async fn not_found(req: Request) -> ServeError {
    ServeError::NotFound(format!("nothing at {}", req.uri().path()))
}

async fn page() -> Response {
    asset_response("index.html")
}

async fn asset(Path(file): Path<String>) -> Response {
    asset_response(&file)
}

fn asset_response(name: &str) -> Response {
    match assets::get(name) {
        Some((body, content_type)) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
        None => ServeError::NotFound(format!("no asset {name:?}")).into_response(),
    }
}

fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Response, ServeError> {
    serde_json::to_string(value)
        .map(json_response)
        .map_err(|e| ServeError::Internal(e.to_string()))
}

/// Holds one of the query slots, waiting at most the query timeout for it.
async fn slot(state: &AppState) -> Result<tokio::sync::SemaphorePermit<'_>, ServeError> {
    match tokio::time::timeout(state.limits.timeout, state.queries.acquire()).await {
        Ok(Ok(p)) => Ok(p),
        _ => Err(ServeError::Timeout(
            "the server is busy with other queries; try again".into(),
        )),
    }
}

async fn info(State(state): Shared) -> Result<Response, ServeError> {
    let _slot = slot(&state).await?;
    to_json(&super::info::info(&state).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    sql: String,
    #[serde(default)]
    offset: usize,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

async fn run_query(
    State(state): Shared,
    Json(req): Json<QueryRequest>,
) -> Result<Response, ServeError> {
    let _slot = slot(&state).await?;
    let page = query::page(
        &state.query_runtime,
        &state.ctx,
        &req.sql,
        req.offset,
        req.limit,
        &state.limits,
    )
    .await?;
    Ok(json_response(page.to_json()?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CardsRequest {
    ids: Vec<String>,
}

async fn card_list(
    State(state): Shared,
    Json(req): Json<CardsRequest>,
) -> Result<Response, ServeError> {
    if req.ids.len() > state.limits.max_rows {
        return Err(ServeError::BadRequest(format!(
            "{} clip ids asked for; at most {} at once",
            req.ids.len(),
            state.limits.max_rows
        )));
    }
    let ids = req
        .ids
        .iter()
        .map(|i| paths::clip_id(i).map(str::to_string))
        .collect::<Result<Vec<_>, _>>()?;
    let _slot = slot(&state).await?;
    to_json(&cards::cards(&state.ctx, &ids).await?)
}

async fn clip_page(State(state): Shared, Path(id): Path<String>) -> Result<Response, ServeError> {
    let id = paths::clip_id(&id)?;
    let _slot = slot(&state).await?;
    to_json(&clip::page(&state, id).await?)
}

/// The stats, computed once on the query runtime; with no timeout, so a large dataset's report is
/// computed to its end once instead of stopped on every request.
async fn stats_view(state: &Arc<AppState>) -> Result<Arc<stats::StatsView>, ServeError> {
    let s = state.clone();
    let work = async move { stats::view(&s).await };
    state.query_runtime.run(None, "kelp stats", work).await
}

async fn stats_sections(State(state): Shared) -> Result<Response, ServeError> {
    let view = {
        let _slot = slot(&state).await?;
        stats_view(&state).await?
    };
    to_json(&stats::sections(&view)?)
}

async fn stats_plot(
    State(state): Shared,
    Path(file): Path<String>,
) -> Result<Response, ServeError> {
    let key = file
        .strip_suffix(".svg")
        .ok_or_else(|| ServeError::NotFound(format!("no plot {file:?}")))?;
    let view = {
        let _slot = slot(&state).await?;
        stats_view(&state).await?
    };
    let svg = view
        .svgs
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, svg)| svg.clone())
        .ok_or_else(|| ServeError::NotFound(format!("no plot {file:?}")))?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

async fn media(
    State(state): Shared,
    Path((id, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ServeError> {
    let id = paths::clip_id(&id)?;
    let (_, table, column, content_type) = blobs::FILES
        .iter()
        .find(|(name, ..)| *name == file)
        .ok_or_else(|| {
            ServeError::NotFound(format!(
                "no file {file:?} for a clip (thumbnail.jpg, animation.webp, clip.mp4)"
            ))
        })?;
    let t = if *table == "media" {
        &state.media
    } else {
        &state.previews
    };
    let bytes = t
        .get(&state.dataset, id, column)
        .await?
        .ok_or_else(|| ServeError::NotFound(format!("clip {id} has no {file} in {table}")))?;
    Ok(ranged(bytes, content_type, &headers))
}

/// The whole value, or the one byte range the request asks for (what a `<video>` seeks with).
fn ranged(bytes: Bytes, content_type: &'static str, headers: &HeaderMap) -> Response {
    let len = bytes.len();
    let range = headers
        .get(header::RANGE)
        .and_then(|r| r.to_str().ok())
        .and_then(|r| parse_range(r, len));
    let common = [
        (header::CONTENT_TYPE, content_type),
        (header::ACCEPT_RANGES, "bytes"),
        (header::CACHE_CONTROL, "private, max-age=3600"),
    ];
    match range {
        Some((a, b)) => (
            StatusCode::PARTIAL_CONTENT,
            common,
            [(header::CONTENT_RANGE, format!("bytes {a}-{b}/{len}"))],
            Body::from(bytes.slice(a..b + 1)),
        )
            .into_response(),
        None => (common, Body::from(bytes)).into_response(),
    }
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` within `len` bytes, as an inclusive range.
fn parse_range(r: &str, len: usize) -> Option<(usize, usize)> {
    let spec = r.strip_prefix("bytes=")?.trim();
    if spec.contains(',') || len == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = if a.is_empty() {
        let n: usize = b.parse().ok()?;
        (len.saturating_sub(n), len - 1)
    } else {
        let start: usize = a.parse().ok()?;
        let end = if b.is_empty() {
            len - 1
        } else {
            b.parse::<usize>().ok()?.min(len - 1)
        };
        (start, end)
    };
    (start <= end && start < len).then_some((start, end))
}

#[derive(Deserialize)]
struct ObjectQuery {
    uri: String,
}

async fn object(
    State(state): Shared,
    Query(q): Query<ObjectQuery>,
    headers: HeaderMap,
) -> Result<Response, ServeError> {
    let loc = &state.dataset.location;
    let path = paths::inside(loc, &q.uri)?;
    let bytes = object_store::ObjectStoreExt::get(loc.store.as_ref(), &path)
        .await
        .map_err(|e| match e {
            object_store::Error::NotFound { .. } => {
                ServeError::NotFound(format!("{}: no such object in the dataset", q.uri))
            }
            e => ServeError::Internal(format!("{}: {e}", q.uri)),
        })?
        .bytes()
        .await
        .map_err(|e| ServeError::Internal(format!("{}: {e}", q.uri)))?;
    Ok(ranged(bytes, content_type_of(path.as_ref()), &headers))
}

/// Media types the page may show inline; everything else is plain bytes.
fn content_type_of(path: &str) -> &'static str {
    let ext = path.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_are_parsed_within_the_value() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some((0, 99)));
        assert_eq!(parse_range("bytes=500-", 1000), Some((500, 999)));
        assert_eq!(parse_range("bytes=-100", 1000), Some((900, 999)));
        assert_eq!(parse_range("bytes=900-5000", 1000), Some((900, 999)));
        assert_eq!(parse_range("bytes=1000-", 1000), None);
        assert_eq!(parse_range("bytes=5-1", 1000), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), None);
        assert_eq!(parse_range("items=0-1", 1000), None);
    }
}
