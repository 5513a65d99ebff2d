//! The CSV reader on arbitrary bytes: rows or an error, never a panic; every
//! row has the header's columns.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for delimiter in [b',', b';'] {
        if let Ok((headers, rows)) = puente_file::parse(data, delimiter, "fuzz.csv") {
            for r in &rows {
                assert!(r.len() <= headers.len());
            }
        }
    }
});
