//! A gradual exchange as the dashboard and the API show it: the window, the
//! budget and today's spend, and how far each side's backfill got.

use reqwest::Method;

use crate::setup::{Served, Setup};

#[tokio::test(flavor = "multi_thread")]
async fn the_backfill_of_a_gradual_exchange_is_shown() {
    let s = Served::start(Setup {
        sync_extra: "exchange = \"gradual\"\nbackfill_window = \"00:00-23:59\"\nbackfill_budget_share = 0.5",
        ..Setup::default()
    })
    .await;
    // Both sides were read in full in the first pass, then the held records
    // were created (Served::start waited for all 20 in sync).
    let (_, v) = s.api(Method::GET, "/api/syncs/contacts", None).await;
    let b = &v["backfill"];
    assert_eq!(b["window"], "00:00-23:59 UTC", "{v}");
    assert_eq!(b["budget_share"], 0.5);
    assert_eq!(
        (b["a_done"].as_bool(), b["b_done"].as_bool()),
        (Some(true), Some(true))
    );
    assert!(b["spent_today"].as_u64().unwrap() > 0, "{b}");
    let page = s.text("/syncs/contacts").await;
    assert!(
        page.contains(
            "Exchange: gradual · window 00:00-23:59 UTC · budget 50% of the daily API limit"
        ),
        "{page}"
    );
    assert!(page.contains("a: read in full · b: read in full"), "{page}");
    // The list of syncs carries the same view.
    let (_, list) = s.api(Method::GET, "/api/syncs", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["backfill"], v["backfill"]);
    s.stop().await;
}
