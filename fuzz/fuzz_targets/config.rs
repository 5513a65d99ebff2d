//! The config parser on arbitrary text: errors, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = puente_engine::config::parse(text, std::path::Path::new("fuzz/puente.toml"));
    }
});
