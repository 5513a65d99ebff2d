//! Fault injection: a share of requests answered with a 429 or a 5xx, made
//! slow, cut off mid-answer (after the write happened: the client gets no
//! answer) or answered with a body that is not JSON. The spec is the
//! `--faults` flag's: `429=0.05,5xx=0.02,slow=0.05,slow_ms=1500,drop=0.01,malformed=0.01`.
//!
//! The dice are seeded, so a trial replays. The vendor words the 429 and
//! 5xx answers ([`FaultAnswers`]); [`inject`] is the middleware, and
//! [`FaultInjector`]'s steps are there for a vendor whose gate must place
//! them between its own (auth before, rate limits after).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::counters::{Counters, FAULTS, RATE_LIMITED};

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

/// A `--faults` spec that cannot be read.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FaultSpecError {
    #[error("fault {0:?} has no value: write name=share, e.g. 429=0.05")]
    NoValue(String),
    #[error("fault {name}: {value:?} is not a number")]
    NotANumber { name: String, value: String },
    #[error("fault {name}: {value} is not a share between 0 and 1")]
    OutOfRange { name: String, value: f64 },
    #[error("slow_ms: {0:?} is not a whole number of milliseconds")]
    NotMillis(String),
    #[error("unknown fault {0:?}: use 429, 5xx, slow, slow_ms, drop, malformed")]
    Unknown(String),
}

impl Faults {
    /// Parses `429=0.05,5xx=0.02,slow=0.1,slow_ms=2000,drop=0.01,malformed=0.01`
    /// (`500` is another name for `5xx`; `slow_ms` defaults to 1500).
    pub fn parse(spec: &str) -> Result<Faults, FaultSpecError> {
        let mut f = Faults {
            slow_for: Duration::from_millis(1500),
            ..Faults::default()
        };
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| FaultSpecError::NoValue(part.to_string()))?;
            let (k, v) = (k.trim(), v.trim());
            let share = || -> Result<f64, FaultSpecError> {
                let x: f64 = v.parse().map_err(|_| FaultSpecError::NotANumber {
                    name: k.to_string(),
                    value: v.to_string(),
                })?;
                if (0.0..=1.0).contains(&x) {
                    Ok(x)
                } else {
                    Err(FaultSpecError::OutOfRange {
                        name: k.to_string(),
                        value: x,
                    })
                }
            };
            match k {
                "429" => f.rate_limited = share()?,
                "5xx" | "500" => f.server_error = share()?,
                "slow" => f.slow = share()?,
                "slow_ms" => {
                    f.slow_for = Duration::from_millis(
                        v.parse()
                            .map_err(|_| FaultSpecError::NotMillis(v.to_string()))?,
                    )
                }
                "drop" => f.drop = share()?,
                "malformed" => f.malformed = share()?,
                other => return Err(FaultSpecError::Unknown(other.to_string())),
            }
        }
        Ok(f)
    }

    /// Whether any fault can happen.
    pub fn any(&self) -> bool {
        self.rate_limited + self.server_error + self.slow + self.drop + self.malformed > 0.0
    }
}

/// The fault one request meets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// Answered 429 instead of being served.
    RateLimited,
    /// Answered with this 5xx instead of being served.
    ServerError(StatusCode),
    /// Served after this wait.
    Slow(Duration),
    /// Served, then the answer is cut off mid-body.
    Drop,
    /// Served, then the answer's body is cut in half and ends in HTML.
    Malformed,
}

/// Seeded dice: the same seed and faults give the same sequence.
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

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The fault of the next request, if any.
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
            let codes = [
                StatusCode::INTERNAL_SERVER_ERROR,
                StatusCode::BAD_GATEWAY,
                StatusCode::SERVICE_UNAVAILABLE,
                StatusCode::GATEWAY_TIMEOUT,
            ];
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

/// How a vendor answers a request that meets an injected 429 or 5xx: the
/// body, and headers such as its rate-limit headers and `Retry-After`.
pub trait FaultAnswers: Send + Sync + 'static {
    fn rate_limited(&self) -> Response;
    fn server_error(&self, status: StatusCode) -> Response;
}

/// The faults of one sandbox: its dice, its vendor's answers, its counters.
pub struct FaultInjector {
    dice: Mutex<Dice>,
    seed: u64,
    answers: Box<dyn FaultAnswers>,
    counters: Arc<Counters>,
}

impl FaultInjector {
    pub fn new(
        faults: Faults,
        seed: u64,
        answers: impl FaultAnswers,
        counters: Arc<Counters>,
    ) -> FaultInjector {
        FaultInjector {
            dice: Mutex::new(Dice::new(faults, seed)),
            seed,
            answers: Box::new(answers),
            counters,
        }
    }

    /// Changes the faults injected from now on (the dice start again from
    /// the seed).
    pub fn set(&self, faults: Faults) {
        *self.dice.lock().expect("dice") = Dice::new(faults, self.seed);
    }

    pub fn faults(&self) -> Faults {
        self.dice.lock().expect("dice").faults().clone()
    }

    /// The fault of the next request, if any.
    pub fn roll(&self) -> Option<Fault> {
        self.dice.lock().expect("dice").roll()
    }

    /// The answer given instead of serving the request (a 429 or a 5xx),
    /// counted; `None` when the request is to be served.
    pub fn before(&self, fault: Fault) -> Option<Response> {
        let answer = match fault {
            Fault::RateLimited => {
                self.counters.incr(RATE_LIMITED);
                self.answers.rate_limited()
            }
            Fault::ServerError(status) => self.answers.server_error(status),
            Fault::Slow(_) | Fault::Drop | Fault::Malformed => return None,
        };
        self.counters.incr(FAULTS);
        Some(answer)
    }

    /// The wait before a slow request is served.
    pub fn delay(fault: Fault) -> Option<Duration> {
        match fault {
            Fault::Slow(d) => Some(d),
            _ => None,
        }
    }

    /// The served answer as the client gets it, counted: cut off (the write
    /// did happen), broken, or as it was for a slow request.
    pub async fn after(&self, fault: Fault, served: Response) -> Response {
        self.counters.incr(FAULTS);
        match fault {
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
                r
            }
            Fault::Malformed => {
                let (mut parts, body) = served.into_parts();
                let bytes = axum::body::to_bytes(body, usize::MAX)
                    .await
                    .unwrap_or_default();
                let mut broken = bytes.slice(..bytes.len() / 2).to_vec();
                broken.extend_from_slice(b"<html>");
                parts.headers.remove("content-length");
                Response::from_parts(parts, Body::from(broken))
            }
            Fault::RateLimited | Fault::ServerError(_) | Fault::Slow(_) => served,
        }
    }

    /// One request through the faults: answered instead of served, or
    /// served (after a wait) and then, perhaps, broken.
    pub async fn around(&self, serve: impl std::future::Future<Output = Response>) -> Response {
        let Some(fault) = self.roll() else {
            return serve.await;
        };
        if let Some(answer) = self.before(fault) {
            return answer;
        }
        if let Some(d) = FaultInjector::delay(fault) {
            tokio::time::sleep(d).await;
        }
        let served = serve.await;
        self.after(fault, served).await
    }
}

/// The middleware: `axum::middleware::from_fn_with_state(injector, inject)`.
pub async fn inject(
    State(injector): State<Arc<FaultInjector>>,
    req: Request,
    next: Next,
) -> Response {
    injector.around(next.run(req)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_spec_and_rejects_nonsense() {
        let f = Faults::parse("429=0.1, 5xx=0.05,slow=0.2,slow_ms=300,drop=0.01,malformed=0.02")
            .unwrap();
        assert_eq!(f.rate_limited, 0.1);
        assert_eq!(f.server_error, 0.05);
        assert_eq!(f.slow_for, Duration::from_millis(300));
        assert_eq!(f.malformed, 0.02);
        assert_eq!(
            Faults::parse("").unwrap().slow_for,
            Duration::from_millis(1500)
        );
        let e = |s: &str| Faults::parse(s).unwrap_err().to_string();
        assert!(e("429=2").contains("between 0 and 1"), "{}", e("429=2"));
        assert!(e("lag=0.1").contains("unknown fault"));
        assert!(e("429").contains("no value"));
        assert!(e("drop=x").contains("not a number"));
        assert!(e("slow_ms=1.5").contains("whole number"));
    }

    #[test]
    fn shares_are_roughly_kept_and_a_seed_replays() {
        let faults = Faults::parse("429=0.1,5xx=0.1").unwrap();
        let mut d = Dice::new(faults.clone(), 1);
        let n = 10_000;
        let rolls: Vec<_> = (0..n).map(|_| d.roll()).collect();
        let hits = rolls.iter().filter(|r| r.is_some()).count();
        assert!((1700..2300).contains(&hits), "{hits}");
        let mut again = Dice::new(faults, 1);
        assert!(rolls.iter().all(|r| *r == again.roll()));
        assert_eq!(Dice::new(Faults::default(), 1).roll(), None);
    }
}
