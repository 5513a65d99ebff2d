//! Fault injection: a share of requests answered with a 429 or a 5xx, made
//! slow, cut off mid-answer (after the write happened) or answered with a
//! body that is not JSON. `--faults "429=0.05,5xx=0.02,slow=0.05,slow_ms=1500,drop=0.01,malformed=0.01"`.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::{correlation, reply, too_many};

/// Shares of requests (0.0–1.0) that meet each fault.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    pub rate_limited: f64,
    pub server_error: f64,
    pub slow: f64,
    pub slow_for: Duration,
    pub drop: f64,
    pub malformed: f64,
}

impl Faults {
    /// Parses `429=0.05,5xx=0.02,slow=0.1,slow_ms=2000,drop=0.01,malformed=0.01`.
    pub fn parse(spec: &str) -> Result<Faults, String> {
        let mut f = Faults {
            slow_for: Duration::from_millis(1500),
            ..Faults::default()
        };
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                format!("fault {part:?} has no value: write name=share, e.g. 429=0.05")
            })?;
            let share = || -> Result<f64, String> {
                let x: f64 = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("fault {k}: {v:?} is not a number"))?;
                if (0.0..=1.0).contains(&x) {
                    Ok(x)
                } else {
                    Err(format!("fault {k}: {x} is not a share between 0 and 1"))
                }
            };
            match k.trim() {
                "429" => f.rate_limited = share()?,
                "5xx" | "500" => f.server_error = share()?,
                "slow" => f.slow = share()?,
                "slow_ms" => {
                    f.slow_for = Duration::from_millis(v.trim().parse().map_err(|_| {
                        format!("slow_ms: {v:?} is not a whole number of milliseconds")
                    })?)
                }
                "drop" => f.drop = share()?,
                "malformed" => f.malformed = share()?,
                other => {
                    return Err(format!(
                        "unknown fault {other:?}: use 429, 5xx, slow, slow_ms, drop, malformed"
                    ))
                }
            }
        }
        Ok(f)
    }

    pub fn any(&self) -> bool {
        self.rate_limited + self.server_error + self.slow + self.drop + self.malformed > 0.0
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    RateLimited,
    ServerError(u16),
    Slow(Duration),
    Drop,
    Malformed,
}

pub struct Dice {
    faults: Faults,
    rng: StdRng,
}

impl Dice {
    pub fn new(faults: Faults, seed: u64) -> Dice {
        Dice {
            faults,
            rng: StdRng::seed_from_u64(seed ^ 0x5eed_f417),
        }
    }

    pub fn roll(&mut self) -> Option<Fault> {
        let f = &self.faults;
        if !f.any() {
            return None;
        }
        let x: f64 = self.rng.gen();
        let mut edge = f.rate_limited;
        if x < edge {
            return Some(Fault::RateLimited);
        }
        edge += f.server_error;
        if x < edge {
            let codes = [500, 502, 503, 504];
            return Some(Fault::ServerError(
                codes[self.rng.gen_range(0..codes.len())],
            ));
        }
        edge += f.slow;
        if x < edge {
            return Some(Fault::Slow(f.slow_for));
        }
        edge += f.drop;
        if x < edge {
            return Some(Fault::Drop);
        }
        edge += f.malformed;
        if x < edge {
            return Some(Fault::Malformed);
        }
        None
    }
}

impl Fault {
    pub fn is_429(&self) -> bool {
        matches!(self, Fault::RateLimited)
    }

    /// An answer given instead of serving the request.
    pub fn before(&self) -> Option<Response> {
        match self {
            Fault::RateLimited => Some(too_many(
                "You have reached your ten_secondly_rolling limit.",
                "TEN_SECONDLY_ROLLING",
                // An injected storm asks for a short wait, so trials run fast.
                &[
                    ("x-hubspot-ratelimit-remaining", "0".into()),
                    ("retry-after", "1".into()),
                ],
            )),
            Fault::ServerError(code) => Some(reply(
                *code,
                json!({"status": "error", "message": "internal error", "correlationId": correlation(), "category": "INTERNAL_ERROR"}),
            )),
            _ => None,
        }
    }

    pub fn delay(&self) -> Option<Duration> {
        match self {
            Fault::Slow(d) => Some(*d),
            _ => None,
        }
    }

    /// The served answer broken on its way out (the write did happen).
    pub async fn after(self, served: Response) -> Option<Response> {
        match self {
            Fault::Drop => {
                let (parts, _) = served.into_parts();
                let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
                    Ok(bytes::Bytes::from_static(b"{\"status\":\"COMPL")),
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "dropped by the sandbox",
                    )),
                ];
                let mut r =
                    Response::from_parts(parts, Body::from_stream(futures::stream::iter(chunks)));
                r.headers_mut().remove("content-length");
                Some(r)
            }
            Fault::Malformed => {
                let (mut parts, body) = served.into_parts();
                let bytes = axum::body::to_bytes(body, usize::MAX)
                    .await
                    .unwrap_or_default();
                let cut = bytes.len() / 2;
                let mut broken = bytes.slice(..cut).to_vec();
                broken.extend_from_slice(b"<html>");
                parts.headers.remove("content-length");
                Some(Response::from_parts(parts, Body::from(broken)))
            }
            _ => Some(served),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_spec_and_rejects_nonsense() {
        let f = Faults::parse("429=0.1, 5xx=0.05,slow=0.2,slow_ms=300,drop=0.01,malformed=0.02")
            .unwrap();
        assert_eq!(f.rate_limited, 0.1);
        assert_eq!(f.slow_for, Duration::from_millis(300));
        assert!(Faults::parse("429=2")
            .unwrap_err()
            .contains("between 0 and 1"));
        assert!(Faults::parse("lag=0.1")
            .unwrap_err()
            .contains("unknown fault"));
        assert!(Faults::parse("429").unwrap_err().contains("no value"));
    }

    #[test]
    fn shares_are_roughly_kept() {
        let mut d = Dice::new(Faults::parse("429=0.1,5xx=0.1").unwrap(), 1);
        let n = 10_000;
        let hits = (0..n).filter(|_| d.roll().is_some()).count();
        assert!((1700..2300).contains(&hits), "{hits}");
    }
}
