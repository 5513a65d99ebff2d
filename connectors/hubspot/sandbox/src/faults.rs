//! HubSpot's words for the kit's injected faults: a 429 as its
//! ten-secondly limit answers it (asking for a short wait, so trials run
//! fast), a 5xx with its error body.

use axum::http::StatusCode;
use axum::response::Response;
use puente_sandbox_kit::FaultAnswers;
use serde_json::json;

use super::{correlation, reply, too_many};

pub struct HubSpotFaults;

impl FaultAnswers for HubSpotFaults {
    fn rate_limited(&self) -> Response {
        too_many(
            "You have reached your ten_secondly_rolling limit.",
            "TEN_SECONDLY_ROLLING",
            &[
                ("x-hubspot-ratelimit-remaining", "0".into()),
                ("retry-after", "1".into()),
            ],
        )
    }

    fn server_error(&self, status: StatusCode) -> Response {
        reply(
            status.as_u16(),
            json!({"status": "error", "message": "internal error", "correlationId": correlation(), "category": "INTERNAL_ERROR"}),
        )
    }
}
