//! `POST /api/anticipate` on the admin port: the operator announces a media event's audience
//! ([0033]) and the PNC activates, ahead of the crowd, what its first ΔT needs
//! (`Event::Anticipate`). Body (JSON): `{"stream": "s", "region": "r" (optional: every region
//! of the source's overlay), "viewers": 100000, "ramp_s": 60}`. `200` with the decisions, `404`
//! when no source publishes the stream, `400` (or axum's `422` for a body that is no such
//! object) with the reason for bad values.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use tracing::info;

use super::control::CoordinatorHandle;
use super::http::{unavailable, valid_stream_name};

/// More viewers than any event has had: a typo, not an audience.
const MAX_VIEWERS: u64 = 10_000_000_000;
/// A ramp longer than a day is no crowd to prepare for.
const MAX_RAMP_SECS: f64 = 86_400.0;

#[derive(Debug, Deserialize)]
pub struct Announcement {
    stream: String,
    #[serde(default)]
    region: Option<String>,
    viewers: u64,
    /// Seconds over which they arrive from now; 0: all at once.
    #[serde(default)]
    ramp_s: f64,
}

/// Why an announcement is refused before it reaches the coordinator.
fn check(a: &Announcement) -> Result<(), String> {
    if !valid_stream_name(&a.stream) {
        return Err("a stream name is 1-128 characters of A-Z a-z 0-9 . _ -".into());
    }
    if a.region.as_deref().is_some_and(str::is_empty) {
        return Err("an empty region: leave it out for every region".into());
    }
    if a.viewers == 0 || a.viewers > MAX_VIEWERS {
        return Err(format!("viewers must be 1 to {MAX_VIEWERS}"));
    }
    if !a.ramp_s.is_finite() || !(0.0..=MAX_RAMP_SECS).contains(&a.ramp_s) {
        return Err(format!("ramp_s must be 0 to {MAX_RAMP_SECS} seconds"));
    }
    Ok(())
}

/// The admin port's `POST /api/anticipate`, merged beside `http::admin_router`.
pub fn router(handle: CoordinatorHandle) -> Router {
    Router::new()
        .route("/api/anticipate", post(anticipate))
        .with_state(handle)
}

async fn anticipate(State(h): State<CoordinatorHandle>, Json(a): Json<Announcement>) -> Response {
    if let Err(why) = check(&a) {
        return (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response();
    }
    info!(stream = %a.stream, region = ?a.region, viewers = a.viewers, ramp_s = a.ramp_s, "event announced");
    let Some(answer) = h
        .anticipate(a.stream.clone(), a.region, a.viewers, a.ramp_s)
        .await
    else {
        return unavailable();
    };
    if !answer.stream_known {
        return (
            StatusCode::NOT_FOUND,
            format!("no such stream: {} (no source publishes it)\n", a.stream),
        )
            .into_response();
    }
    Json(serde_json::json!({ "decisions": answer.decisions })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(stream: &str, region: Option<&str>, viewers: u64, ramp_s: f64) -> Announcement {
        Announcement {
            stream: stream.into(),
            region: region.map(str::to_string),
            viewers,
            ramp_s,
        }
    }

    #[test]
    fn announcements_with_values_no_event_has_are_refused_with_the_reason() {
        assert!(check(&a("demo", None, 1000, 60.0)).is_ok());
        assert!(check(&a("demo", Some("eu"), 1, 0.0)).is_ok());
        for (bad, why) in [
            (a("", None, 1000, 60.0), "stream name"),
            (a("a b", None, 1000, 60.0), "stream name"),
            (a("demo", Some(""), 1000, 60.0), "empty region"),
            (a("demo", None, 0, 60.0), "viewers"),
            (a("demo", None, MAX_VIEWERS + 1, 60.0), "viewers"),
            (a("demo", None, 1000, -1.0), "ramp_s"),
            (a("demo", None, 1000, f64::NAN), "ramp_s"),
            (a("demo", None, 1000, 1e9), "ramp_s"),
        ] {
            let err = check(&bad).expect_err(why);
            assert!(err.contains(why), "{err}");
        }
    }
}
