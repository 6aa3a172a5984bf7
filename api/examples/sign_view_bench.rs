//! What signing costs a cached `GET /v1/media/{id}` (BENCHMARKS.md, "signed URLs"): the
//! answer's JSON is copied out of the cache entry either way; with signing, one HMAC-SHA256
//! per URL is spliced in. Times both on the view of a ready media with the default variants
//! (4 names × JPEG and WebP = 8 URLs, plus 4 negotiated ones).
//!
//! `cargo run --release -p kiln-api --example sign_view_bench [iterations]`

use std::{hint::black_box, time::Instant};

use kiln_api::routes::media::sign::{UrlMode, sign_view};
use kiln_core::{
    db::media::{Media, Variant},
    media_urls::UrlSigner,
    views::MediaView,
};

fn main() {
    let iterations: u32 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    let config = kiln_core::Config::from_lookup(|_| None).expect("defaults");
    let signer = UrlSigner::new(&config.media_urls);
    let id = uuid::Uuid::now_v7();
    let media = Media {
        id,
        tenant: "tenant-a".into(),
        status: "ready".into(),
        content_type: "image/jpeg".into(),
        bytes: 2_409_621,
        sha256: "ab".repeat(32),
        width: 5120,
        height: 3200,
        original_key: format!("originals/{id}"),
        error: None,
        job_id: None,
        api_key_id: None,
        metadata: serde_json::json!({ "contact": "42" }),
        placeholder: Some(serde_json::json!({
            "thumbhash": "1QcSHQRnh493V4dIh4eXh1h4kJUI", "blurhash": "LEHV6nWB2yk8pyo0adR*.7kCMdnj",
            "dominant_color": "#6e6e73"
        })),
        video: None,
        progress: None,
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
    };
    let variants: Vec<Variant> = [
        ("large", 2048),
        ("medium", 1024),
        ("small", 480),
        ("thumb", 160),
    ]
    .into_iter()
    .flat_map(|(name, width)| {
        ["jpeg", "webp"].map(|format| Variant {
            name: name.into(),
            format: format.into(),
            width,
            height: width * 5 / 8,
            bytes: 100_000,
            storage_key: format!("variants/{id}/{name}.{format}"),
            sha256: Some("cd".repeat(32)),
        })
    })
    .collect();
    let view = serde_json::to_string(&MediaView::build(&media, &variants)).expect("json");
    let now = chrono::Utc::now().timestamp();
    let mode = UrlMode::Expiring(config.media_urls.ttl);

    let started = Instant::now();
    for _ in 0..iterations {
        black_box(String::from(black_box(view.as_str())));
    }
    let copy = started.elapsed().as_nanos() as f64 / f64::from(iterations);
    let started = Instant::now();
    for _ in 0..iterations {
        black_box(sign_view(black_box(&view), &signer, mode, now));
    }
    let signed = started.elapsed().as_nanos() as f64 / f64::from(iterations);
    println!(
        "view of {} bytes, 12 URLs: copy {copy:.0} ns, copy + signing {signed:.0} ns ({:.2} µs per answer for signing, {:.0} ns per URL)",
        view.len(),
        (signed - copy) / 1000.0,
        (signed - copy) / 12.0
    );
}
